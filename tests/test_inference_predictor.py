"""inference.predictor and `main.py predict`: weights of both file kinds, preprocessing, errors."""

import json

import chainer
import chainer.links as L
import numpy as np
import pytest
from PIL import Image

import inference
import main
from squeeze_net import SqueezeNet
from trainer.datasets import CIFAR10_NAMES, CIFAR100_NAMES
from trainer.errors import ModelFileError
from trainer.images import open_image, to_cifar
from trainer.run_folder import load_weights
from trainer.transforms import make_transforms


@pytest.fixture(scope='module')
def run(tiny_run):
    """A folder with model.npz, optimizer.npz and snapshot_epoch_1 of a 1-epoch run."""
    return tiny_run


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """Image files of many kinds, odd sizes, plus a text file and a missing path."""
    tmp = tmp_path_factory.mktemp('images')
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (45, 61, 3), dtype=np.uint8)
    images = {
        'rgb.png': Image.fromarray(rgb),
        'photo.jpg': Image.fromarray(rng.integers(0, 256, (300, 200, 3), dtype=np.uint8)),
        'grey.png': Image.fromarray(rgb[:, :, 0]),
        'grey.jpg': Image.fromarray(rgb[:, :, 1]),
        'rgba.png': Image.fromarray(rng.integers(0, 256, (33, 17, 4), dtype=np.uint8)),
        'grey_alpha.png': Image.fromarray(rgb[:, :, :2].copy(), 'LA'),
        'palette.png': Image.fromarray(rgb).convert('P'),
        'bits16.png': Image.fromarray(rgb[:, :, 0].astype(np.uint16) * 257),
        'cmyk.jpg': Image.fromarray(rgb).convert('CMYK'),
        'tiny.png': Image.fromarray(rgb[:1, :1]),
    }
    paths = {}
    for name, image in images.items():
        paths[name] = tmp / name
        image.save(paths[name])
    paths['text.txt'] = tmp / 'text.txt'
    paths['text.txt'].write_text('not an image\n')
    paths['truncated.png'] = tmp / 'truncated.png'
    paths['truncated.png'].write_bytes(paths['rgb.png'].read_bytes()[:200])
    paths['missing.png'] = tmp / 'missing.png'
    return paths


@pytest.fixture(scope='module')
def predictor(run):
    return inference.load_predictor(run / 'model.npz', preset='32')


def cli(capsys, *argv):
    """Run `main.py predict` in-process; return (exit status, stdout, stderr lines)."""
    status = main.main(['predict', *map(str, argv)])
    out, err = capsys.readouterr()
    return status, out, err.splitlines()


def test_probabilities_sum_to_one_and_are_sorted(predictor, files):
    image = open_image(files['rgb.png'])
    p = predictor.probabilities([image, image])
    assert p.shape == (2, 10)
    np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-12)
    top = predictor.predict([image], top=10)[0]
    assert [x.probability for x in top] == sorted((x.probability for x in top), reverse=True)
    assert sorted(x.label for x in top) == sorted(CIFAR10_NAMES)
    assert top[0].probability == pytest.approx(p[0].max(), rel=1e-4)  # batch of 1 vs 2


def test_predictions_are_deterministic(predictor, files):
    """Test mode: no dropout, BN running statistics, so the same image gets the same answer."""
    image = open_image(files['photo.jpg'])
    np.testing.assert_array_equal(
        predictor.probabilities([image]), predictor.probabilities([image])
    )


def test_model_file_and_snapshot_give_the_same_answer(run, files):
    models = [SqueezeNet(10), SqueezeNet(10)]
    assert load_weights(models[0], run / 'model.npz') == 'model'
    assert load_weights(models[1], run / 'snapshot_epoch_1') == 'snapshot'
    image = open_image(files['photo.jpg'])
    p = [inference.Predictor(m, CIFAR10_NAMES).probabilities([image]) for m in models]
    np.testing.assert_array_equal(p[0], p[1])


def test_loading_replaces_the_initial_weights(run):
    model = SqueezeNet(10)
    before = model.conv1.W.array.copy()
    load_weights(model, run / 'model.npz')
    saved = np.load(run / 'model.npz')['conv1/W']
    np.testing.assert_array_equal(model.conv1.W.array, saved)
    assert not np.array_equal(before, saved)


@pytest.mark.parametrize('preset', ['122', '32'])
def test_preprocessing_is_the_test_transform_of_the_32x32_image(files, preset):
    image = Image.open(files['photo.jpg'])
    cifar = np.asarray(image.resize((32, 32), Image.BILINEAR)).transpose(2, 0, 1)
    expected = make_transforms(preset)[1]((cifar, 0))[0]
    x = inference.preprocess(image, preset)
    assert x.dtype == np.float32
    assert x.shape == {'122': (3, 128, 128), '32': (3, 32, 32)}[preset]
    np.testing.assert_array_equal(x, expected)


def test_a_cifar_image_saved_as_png_is_preprocessed_like_the_test_set(tmp_path, rng):
    cifar = rng.integers(0, 256, (3, 32, 32), dtype=np.uint8)
    Image.fromarray(cifar.transpose(1, 2, 0)).save(tmp_path / 'cifar.png')
    x = inference.preprocess(open_image(tmp_path / 'cifar.png'), '122')
    np.testing.assert_array_equal(x, make_transforms('122')[1]((cifar, 0))[0])


def test_to_cifar_handles_colour_modes(files):
    for name in ['grey.png', 'rgba.png', 'palette.png', 'bits16.png', 'cmyk.jpg', 'tiny.png']:
        x = to_cifar(open_image(files[name]))
        assert x.shape == (3, 32, 32) and x.dtype == np.uint8, name
    grey = to_cifar(open_image(files['grey.png']))
    np.testing.assert_array_equal(grey[0], grey[1])
    bits16 = to_cifar(open_image(files['bits16.png']))
    np.testing.assert_array_equal(bits16, grey)  # 16-bit grey scaled to 8 bits, not saturated


def test_transparent_pixels_become_white(tmp_path):
    Image.new('RGBA', (40, 40), (0, 0, 0, 0)).save(tmp_path / 'clear.png')
    x = to_cifar(open_image(tmp_path / 'clear.png'))
    assert (x == 255).all()


def test_every_image_kind_is_classified(predictor, files):
    names = [n for n in files if n.endswith(('.png', '.jpg')) and n != 'missing.png']
    names.remove('truncated.png')
    results = predictor.classify_files([files[n] for n in names], top=2)
    for name, result in zip(names, results, strict=True):
        assert result.error is None, name
        assert len(result.predictions) == 2


def test_long_file_lists_are_batched(predictor, files):
    paths = [files['rgb.png'], files['grey.png']] * (inference.BATCH // 2 + 3)
    results = predictor.classify_files(paths, top=10)
    assert len(results) == len(paths) > inference.BATCH
    for i, result in enumerate(results):  # the same answers in the first and the last batch
        first = results[i % 2].predictions
        assert [p.label for p in result.predictions] == [p.label for p in first]
        np.testing.assert_allclose(
            [p.probability for p in result.predictions], [p.probability for p in first], rtol=1e-4
        )


def test_cli_prints_one_line_per_image(run, files, capsys):
    status, out, err = cli(capsys, '-m', run / 'model.npz', files['rgb.png'], files['photo.jpg'])
    assert status == 0 and err == []
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f'{files["rgb.png"]}: ')
    assert len(lines[0].split(', ')) == inference.DEFAULT_TOP


def test_cli_bad_inputs_get_an_error_line_and_the_rest_are_classified(run, files, capsys):
    inputs = ['rgb.png', 'missing.png', 'text.txt', 'truncated.png', 'photo.jpg']
    status, out, err = cli(capsys, '-m', run / 'model.npz', *(files[n] for n in inputs))
    assert status == 1
    assert [line.split(': ')[0] for line in out.splitlines()] == [
        str(files['rgb.png']),
        str(files['photo.jpg']),
    ]
    assert len(err) == 3
    assert err[0] == f'error: {files["missing.png"]}: no such file or directory'
    assert (
        err[1]
        == f'error: {files["text.txt"]}: not an image (PNG, JPEG or another format Pillow reads)'
    )
    assert err[2].startswith(f'error: {files["truncated.png"]}: damaged image (')


def test_cli_json(run, files, capsys):
    status, out, err = cli(
        capsys,
        '-m',
        run / 'snapshot_epoch_1',
        '--json',
        '--top',
        '20',
        files['rgb.png'],
        files['text.txt'],
    )
    assert status == 1 and len(err) == 1
    items = json.loads(out)
    assert [item['file'] for item in items] == [str(files['rgb.png']), str(files['text.txt'])]
    assert len(items[0]['predictions']) == 10  # --top beyond the classes gives all of them
    assert sum(p['probability'] for p in items[0]['predictions']) == pytest.approx(1)
    assert set(items[0]['predictions'][0]) == {'label', 'probability'}
    assert 'not an image' in items[1]['error'] and 'predictions' not in items[1]


def test_cli_json_matches_the_snapshot_and_model_file(run, files, capsys):
    answers = []
    for model in ['model.npz', 'snapshot_epoch_1']:
        _, out, _ = cli(capsys, '-m', run / model, '--json', '--preset', '32', files['grey.jpg'])
        answers.append(json.loads(out))
    assert answers[0] == answers[1]


@pytest.fixture(scope='module')
def wrong_models(run, tmp_path_factory):
    tmp = tmp_path_factory.mktemp('wrong')
    chainer.serializers.save_npz(tmp / 'squeeze100.npz', SqueezeNet(100))
    chainer.serializers.save_npz(tmp / 'linear.npz', L.Linear(3, 4))
    (tmp / 'text.npz').write_text('hello\n')
    np.save(tmp / 'array.npy', np.zeros(3))
    return {
        'optimizer': (run / 'optimizer.npz', 'an optimizer state (optimizer.npz)'),
        'log': (run / 'log.json', 'not an npz file'),
        'text': (tmp / 'text.npz', 'not an npz file'),
        'npy': (tmp / 'array.npy', 'not an npz file'),
        'classes': (tmp / 'squeeze100.npz', 'weights of a 100-class model, expected 10 classes'),
        'architecture': (tmp / 'linear.npz', 'model weights of another architecture'),
        'missing': (tmp / 'nothing.npz', 'no such file'),
        'folder': (tmp, 'not a file'),
    }


@pytest.mark.parametrize(
    'kind', ['optimizer', 'log', 'text', 'npy', 'classes', 'architecture', 'missing', 'folder']
)
def test_wrong_model_file_gives_one_clear_line(wrong_models, files, capsys, kind):
    path, message = wrong_models[kind]
    status, out, err = cli(capsys, '-m', path, files['rgb.png'])
    assert status == 1 and out == ''
    assert len(err) == 1
    assert err[0].startswith(f'error: {path}: {message}')


def test_wrong_model_file_is_refused_before_loading(wrong_models):
    model = SqueezeNet(10)
    before = model.conv10.conv.W.array.copy()
    with pytest.raises(ModelFileError):
        load_weights(model, wrong_models['classes'][0], n_classes=10)
    np.testing.assert_array_equal(model.conv10.conv.W.array, before)


def test_cifar100_names(wrong_models, files, capsys):
    names = CIFAR100_NAMES
    assert len(names) == 100 and list(names) == sorted(set(names))
    assert names[0] == 'apple' and names[-1] == 'worm'
    path = wrong_models['classes'][0]
    status, out, _ = cli(capsys, '-m', path, '--dataset', 'cifar100', '--json', files['rgb.png'])
    assert status == 0
    labels = [p['label'] for p in json.loads(out)[0]['predictions']]
    assert len(labels) == 3 and set(labels) <= set(names)


def test_cli_rejects_bad_flags(run, files, capsys):
    for flags in (['--top', '0'], ['-g', '-2'], ['--preset', '64']):
        with pytest.raises(SystemExit) as exit_:
            main.main(['predict', '-m', str(run / 'model.npz'), *flags, str(files['rgb.png'])])
        assert exit_.value.code == 2
    assert 'main.py predict: error:' in capsys.readouterr().err


def test_top_k_is_stable_and_clamped():
    p = np.array([0.1, 0.4, 0.1, 0.4])
    top = inference.top_k(p, 'abcd', 10)
    assert [x.label for x in top] == ['b', 'd', 'a', 'c']
    np.testing.assert_allclose(inference.softmax(np.array([[0.0, 1000.0]])), [[0, 1]])


def test_training_command_line_is_unchanged(capsys):
    """Anything but predict/serve as the first word still goes to the training flags."""
    with pytest.raises(SystemExit) as exit_:
        main.main(['-e', '0', '-b', '64'])
    assert exit_.value.code == 2
    assert 'argument -e/--epoch: must be a positive integer' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main.main(['predict', '--help'])
    assert capsys.readouterr().out.startswith('usage: main.py predict')
