"""trainer.finetune: --init-from loads the matching weights, a new head for another class count."""

import json
import logging
import pickle
import shutil
from pathlib import Path

import chainer
import chainer.links as L
import numpy as np
import pytest
from chainer.serializers import npz
from conftest import cifar_batch

import main
import trainer
from squeeze_net import SqueezeNet
from trainer import finetune, registry
from trainer.datasets import CIFAR100_NAMES, Cifar, Split, load_cifar
from trainer.errors import ModelFileError, RunFolderError

BODY = ['conv1', 'conv10/bn', *(f'fire{i}' for i in range(2, 10))]


def arrays(model):
    return {key: np.array(value) for key, value in npz.serialize(model).items()}


def test_a_new_head_for_another_class_count(tiny_run):
    model = SqueezeNet(5)
    fresh = arrays(model)
    loaded = finetune.init_from(model, tiny_run / 'model.npz', 5)
    assert (loaded.kind, loaded.loaded, loaded.new) == ('model', BODY, ['conv10/conv'])
    assert loaded.file_classes == 10
    source = dict(np.load(tiny_run / 'model.npz'))
    now = arrays(model)
    for key, value in now.items():
        if key.startswith('conv10/conv/'):
            np.testing.assert_array_equal(value, fresh[key])  # kept its initialization
        else:
            np.testing.assert_array_equal(value, source[key])
    assert now['conv10/conv/W'].shape == (5, 512, 1, 1)
    assert loaded.lines(5) == [
        f'--init-from {tiny_run / "model.npz"}: loaded 10 layers ({", ".join(BODY)})',
        f'--init-from {tiny_run / "model.npz"}: new (the file has 10 classes, this run 5): '
        '1 layer (conv10/conv)',
    ]


def test_a_snapshot_of_the_same_class_count_loads_every_layer(tiny_run):
    model = SqueezeNet(10)
    loaded = finetune.init_from(model, tiny_run / 'snapshot_epoch_1', 10)
    assert (loaded.kind, loaded.new, loaded.file_classes) == ('snapshot', [], None)
    assert loaded.loaded == ['conv1', 'conv10', *BODY[2:]]
    assert len(loaded.lines(10)) == 1
    source = dict(np.load(tiny_run / 'model.npz'))
    for key, value in arrays(model).items():
        np.testing.assert_array_equal(value, source[key])


class Net(chainer.Chain):
    def __init__(self, n_classes=10, width=8):
        super().__init__()
        with self.init_scope():
            self.conv = L.Convolution2D(3, width, 3, pad=1)
            self.head = L.Linear(width, n_classes)


def unchanged(model, path, n_classes, message):
    """init_from refuses ``path`` with ``message`` and leaves ``model`` as it was."""
    before = arrays(model)
    with pytest.raises(ModelFileError, match=message):
        finetune.init_from(model, path, n_classes)
    for key, value in arrays(model).items():
        np.testing.assert_array_equal(value, before[key])


def test_another_architecture_is_one_line_and_nothing_is_loaded(tmp_path, tiny_run):
    path = tmp_path / 'resnet.npz'
    chainer.serializers.save_npz(str(path), registry.build('resnet20', 10))
    unchanged(SqueezeNet(5), path, 5, "weights of another architecture: 177 of the model's 177")
    path = tmp_path / 'wide.npz'
    chainer.serializers.save_npz(str(path), Net(10, width=16))
    message = r'another architecture: conv/W is \(16, 3, 3, 3\), the model expects \(8, 3, 3, 3\)'
    unchanged(Net(5), path, 5, message)
    message = r'another architecture \(arch squeezenet, says its run.json\): 4 of'
    unchanged(Net(5), tiny_run / 'model.npz', 5, message)


def test_an_optimizer_state_or_diverged_weights_are_refused(tiny_run, tmp_path):
    with pytest.raises(ModelFileError, match='an optimizer state'):
        finetune.init_from(SqueezeNet(10), tiny_run / 'optimizer.npz', 10)
    weights = dict(np.load(tiny_run / 'model.npz'))
    weights['conv1/W'][0, 0, 0, 0] = np.nan
    np.savez(tmp_path / 'nan.npz', **weights)
    with pytest.raises(ModelFileError, match='conv1/W holds NaN'):
        finetune.init_from(SqueezeNet(5), tmp_path / 'nan.npz', 5)


def five_classes(path: Path) -> Cifar:
    """The tiny CIFAR-10 of ``path`` cut to its first 5 classes."""
    data = load_cifar('cifar10', path)

    def part(split):
        keep = split.labels < 5
        return Split(split.images[keep], split.labels[keep])

    return Cifar(part(data.train), part(data.test), data.label_names[:5])


def test_fine_tune_a_cifar10_model_on_5_classes_then_resume(tiny_run, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    data = five_classes(tiny_run / 'data' / 'cifar-10-python.tar.gz')
    options = dict(
        save_path=str(tmp_path / 'tuned'),
        img_dir=str(tmp_path / 'tuned' / 'img'),
        batch=10,
        preset='32',
        workers=0,
        lr=0.01,
        seed=0,
        init_from=str(tiny_run / 'model.npz'),
    )
    log = trainer.train(SqueezeNet(5), cifar=data, epoch=1, **options)
    assert len(log) == 1 and 'validation/main/accuracy/dog' not in log[0]
    assert 'loaded 10 layers (conv1, conv10/bn, fire2' in caplog.text
    assert 'new (the file has 10 classes, this run 5): 1 layer (conv10/conv)' in caplog.text
    settings = json.loads((tmp_path / 'tuned' / 'run.json').read_text())['settings']
    assert settings['n_classes'] == 5
    assert settings['init_from'] == finetune.file_record(tiny_run / 'model.npz')
    assert settings['init_from']['path'] == str((tiny_run / 'model.npz').resolve())
    caplog.clear()
    log = trainer.train(SqueezeNet(5), cifar=data, epoch=2, **options)  # resumed
    assert [entry['epoch'] for entry in log] == [1, 2]
    assert 'loaded' not in caplog.text  # the snapshot's weights, not the file's again
    without = {**options, 'init_from': None}
    with pytest.raises(RunFolderError, match='this run was made with init_from'):
        trainer.train(SqueezeNet(5), cifar=data, epoch=3, **without)


def write_cifar100(root: Path, n_train=200, n_test=100) -> Path:
    """A tiny CIFAR-100 in the official layout (the extracted folder)."""
    folder = root / 'cifar-100-python'
    folder.mkdir(parents=True)
    for name, n, seed in (('train', n_train, 0), ('test', n_test, 1)):
        data, labels = cifar_batch(n, n_classes=100, seed=seed)
        batch = {b'data': data, b'fine_labels': labels}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    names = [name.encode() for name in CIFAR100_NAMES]
    (folder / 'meta').write_bytes(pickle.dumps({b'fine_label_names': names}, protocol=2))
    return root


def argv(out: Path, data: Path, *extra: str) -> list[str]:
    return [
        '-p', str(out), '-b', '50', '--preset', '32', '--workers', '0', '--seed', '0',
        '--img-dir', str(out / 'img'), '--data', str(data), '--no-progress', '-e', '1', *extra,
    ]  # fmt: skip


def test_main_fine_tunes_cifar10_weights_on_cifar100(tiny_run, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    data = write_cifar100(tmp_path / 'data')
    out = tmp_path / 'run'
    weights = tiny_run / 'model.npz'
    assert main.main(argv(out, data, '--dataset', 'cifar100', '--init-from', str(weights))) == 0
    assert 'new (the file has 10 classes, this run 100): 1 layer (conv10/conv)' in caplog.text
    record = json.loads((out / 'run.json').read_text())
    assert record['settings']['init_from']['sha256'] == finetune.file_record(weights)['sha256']
    assert record['sessions'][0]['options']['init_from'] == str(weights)
    assert np.load(out / 'model.npz')['conv10/conv/W'].shape == (100, 512, 1, 1)


def test_init_from_and_load_model_together_are_refused(tiny_run, tmp_path, capsys):
    weights = str(tiny_run / 'model.npz')
    with pytest.raises(SystemExit) as exit_:
        main.main(argv(tmp_path / 'run', tiny_run, '--init-from', weights, '-m', weights))
    assert exit_.value.code == 2
    assert 'argument --init-from: give either --init-from' in capsys.readouterr().err


def test_init_from_a_missing_file_is_the_parsers_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main.main(argv(tmp_path / 'run', tmp_path, '--init-from', str(tmp_path / 'none.npz')))
    assert 'argument --init-from: no such file' in capsys.readouterr().err


def test_a_mismatched_file_through_main_is_one_line(tiny_run, tmp_path, capsys):
    path = tmp_path / 'resnet.npz'
    chainer.serializers.save_npz(str(path), registry.build('resnet20', 10))
    data = tiny_run / 'data' / 'cifar-10-python.tar.gz'
    shutil.rmtree(tmp_path / 'run', ignore_errors=True)
    assert main.main(argv(tmp_path / 'run', data, '--init-from', str(path))) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith('error: ') and 'weights of another architecture' in lines[-1]
    assert not (tmp_path / 'run' / 'run.json').exists()  # refused before the run was recorded


def test_cifar10_weights_fine_tuned_on_a_folder_of_5_classes_then_predict(
    tiny_run, tmp_path, caplog, capsys
):
    """Issue 25's path end to end: CIFAR-10 weights, a folder of 5 classes, predict names them."""
    from test_folders import write_tree

    caplog.set_level(logging.INFO)
    fruit = ('fig', 'kiwi', 'lime', 'pear', 'plum')
    root = write_tree(tmp_path / 'images', per_class=10, classes=fruit)
    out = tmp_path / 'run'
    extra = ('--dataset', 'folder', '--init-from', str(tiny_run / 'model.npz'))
    assert main.main(argv(out, root, *extra)) == 0
    assert 'new (the file has 10 classes, this run 5): 1 layer (conv10/conv)' in caplog.text
    image = root / 'test' / 'kiwi' / '0000.png'
    capsys.readouterr()
    assert main.main(['predict', '-m', str(out / 'model.npz'), str(image), '--json']) == 0
    [answer] = json.loads(capsys.readouterr().out)
    assert {p['label'] for p in answer['predictions']} <= set(fruit)
