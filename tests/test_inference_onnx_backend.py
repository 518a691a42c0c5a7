"""inference.onnx_backend: the ONNX Runtime backend answers as the Chainer backend does."""

import json
import sys
import threading

import numpy as np
import pytest
from PIL import Image

import inference
from inference.export import export_onnx, sample_images
from inference.onnx_backend import ModelInfo, OnnxForward, load_onnx_predictor, onnx_forward
from trainer.errors import ModelFileError
from trainer.extras import MissingExtraError

EXTRA = 'needs the ONNX extras (make install-extras)'
PROBABILITY_TOLERANCE = 1e-4


@pytest.fixture(scope='module')
def run(request):
    """A 1-epoch run (preset 32) and its export: (folder, model.onnx)."""
    pytest.importorskip('onnx_chainer', reason=EXTRA)
    pytest.importorskip('onnxruntime', reason=EXTRA)
    folder = request.getfixturevalue('tiny_run')  # trained only where the extras are
    return folder, export_onnx(folder / 'model.npz', folder / 'model.onnx').path


@pytest.fixture(scope='module')
def images():
    rng = np.random.default_rng(0)
    sizes = [(32, 32), (45, 61), (300, 200), (7, 9)] + [(32, 32)] * 36
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in sizes]


def test_predictions_equal_the_chainer_backends(run, images):
    folder, onnx_path = run
    chainer_predictor = inference.load_predictor(folder / 'model.npz')
    onnx_predictor = load_onnx_predictor(onnx_path)
    assert onnx_predictor.labels == chainer_predictor.labels
    assert (onnx_predictor.preset, onnx_predictor.name) == ('32', 'squeezenet')
    expected = chainer_predictor.probabilities(images)  # 40 images: two batches
    got = onnx_predictor.probabilities(images)
    np.testing.assert_allclose(got, expected, rtol=0, atol=PROBABILITY_TOLERANCE)
    assert (got.argmax(1) == expected.argmax(1)).all()
    answers = zip(onnx_predictor.predict(images), chainer_predictor.predict(images), strict=True)
    for ours, theirs in answers:
        assert [p.label for p in ours] == [p.label for p in theirs]


def test_classify_files_through_onnx(run, tmp_path, images):
    _, onnx_path = run
    images[1].save(tmp_path / 'a.png')
    (tmp_path / 'b.txt').write_text('not an image')
    results = load_onnx_predictor(onnx_path).classify_files(
        [tmp_path / 'a.png', tmp_path / 'b.txt']
    )
    assert len(results[0].predictions) == inference.DEFAULT_TOP and results[0].error is None
    assert results[1].predictions is None and results[1].error


def test_onnx_forward_gives_logits_and_metadata(run):
    folder, onnx_path = run
    forward, info = onnx_forward(onnx_path, threads=2)
    assert isinstance(info, ModelInfo)
    assert (info.arch, info.dataset, info.preset) == ('squeezenet', 'cifar10', '32')
    assert info.labels[:2] == ('airplane', 'automobile') and len(info.labels) == 10
    assert info.input_shape == (3, 32, 32)
    assert info.source == str((folder / 'model.npz').resolve())
    assert forward.threads == 2
    x = sample_images('32', 5)
    logits = forward(x)
    assert logits.shape == (5, 10) and logits.dtype == np.float32
    np.testing.assert_array_equal(forward(x.astype(np.float64)), logits)  # cast to float32


def test_concurrent_calls_give_the_serial_answers(run):
    _, onnx_path = run
    forward = OnnxForward(onnx_path)
    batches = [sample_images('32', n, seed=n) for n in (1, 3, 8, 2, 5, 1, 4, 6)]
    expected = [forward(x) for x in batches]
    got = [None] * len(batches)

    def work(i):
        for _ in range(3):
            got[i] = forward(batches[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for ours, theirs in zip(got, expected, strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_a_setting_contradicting_the_metadata_is_refused(run):
    _, onnx_path = run
    with pytest.raises(ModelFileError, match='--preset 122: .* with preset 32'):
        load_onnx_predictor(onnx_path, preset='122')
    assert load_onnx_predictor(onnx_path, arch='squeezenet', dataset='cifar10').preset == '32'


def test_the_metadata_and_run_json_are_checked_alike(run):
    folder, onnx_path = run  # one check (trainer.run_folder.check_record), two records
    refusals = []
    for path, backend in ((folder / 'model.npz', 'chainer'), (onnx_path, 'onnx')):
        with pytest.raises(ModelFileError) as error:
            inference.load_predictor(path, dataset='cifar100', backend=backend)
        refusals.append(str(error.value))
    npz, onnx = (message.split(' says ') for message in refusals)
    assert npz[0] == f'--dataset cifar100: {folder / "run.json"}'
    assert onnx[0] == f'--dataset cifar100: the metadata of {onnx_path}'
    expected = 'this model was trained with dataset cifar10; leave --dataset out to use it'
    assert npz[1] == onnx[1] == expected


def test_a_foreign_onnx_model_is_refused(tmp_path):
    onnx = pytest.importorskip('onnx', reason=EXTRA)
    pytest.importorskip('onnxruntime', reason=EXTRA)
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node('Identity', ['x'], ['y'])],
        'identity',
        [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 10])],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1, 10])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 11)])
    model.ir_version = 7
    onnx.save(model, str(tmp_path / 'foreign.onnx'))
    with pytest.raises(ModelFileError, match='without arch, dataset, preset, class_names .*export'):
        onnx_forward(tmp_path / 'foreign.onnx')


@pytest.mark.parametrize('content', [b'not an onnx file', b''])
def test_a_file_that_is_not_onnx_is_one_line(tmp_path, content):
    pytest.importorskip('onnxruntime', reason=EXTRA)
    path = tmp_path / 'model.onnx'
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match='not a usable ONNX model') as error:
        onnx_forward(path)
    assert '\n' not in str(error.value)


def test_a_missing_file_is_one_line(tmp_path):
    pytest.importorskip('onnxruntime', reason=EXTRA)
    with pytest.raises(ModelFileError, match='no such file'):
        onnx_forward(tmp_path / 'model.onnx')


def test_a_missing_onnxruntime_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)
    with pytest.raises(MissingExtraError, match='ONNX backend needs the onnxruntime package.*make'):
        onnx_forward(tmp_path / 'model.onnx')


def test_metadata_round_trip():
    info = ModelInfo('a:B', 'cifar100', '122', ('x', 'y'), (3, 128, 128), '/r/model.npz', 'abc')
    props = info.to_props()
    assert all(isinstance(value, str) for value in props.values())
    assert json.loads(props['class_names']) == ['x', 'y']
    assert ModelInfo.from_props(props) == info
    assert 'git_commit' not in ModelInfo('a', 'b', 'c', (), (3, 1, 1)).to_props()
    with pytest.raises(ModelFileError, match='unreadable ONNX metadata'):
        ModelInfo.from_props({**props, 'class_names': '[x'})
