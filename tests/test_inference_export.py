"""inference.export: ONNX files that reproduce Chainer's logits, their metadata, the refusals."""

import sys

import chainer
import numpy as np
import pytest

from inference.export import CHECK_BATCHES, ExportError, export_onnx, sample_images
from squeeze_net import SqueezeNet
from trainer import registry
from trainer.errors import ModelFileError
from trainer.extras import MissingExtraError
from trainer.run_folder import RECORD_KEY, load_weights

EXTRA = 'needs the ONNX extras (make install-extras)'


def tiny_vgg(n_classes, fast=True):
    """A user's net whose factory takes ``fast`` (export passes fast=False)."""
    from examples.train_vgg import VGG

    return VGG(n_classes, channels=(8, 8, 16), fast=fast)


def fast_only(n_classes):
    """A factory without ``fast``, whose model takes the fast path onnx-chainer cannot read."""
    return SqueezeNet(n_classes, fast=True)


def _require_extras():
    pytest.importorskip('onnx_chainer', reason=EXTRA)
    pytest.importorskip('onnxruntime', reason=EXTRA)


@pytest.fixture(scope='module')
def run(tiny_run):
    """A 1-epoch run folder (preset 32): run.json, model.npz, snapshot_epoch_1."""
    return tiny_run


@pytest.fixture(scope='module')
def exported(run):
    _require_extras()
    return export_onnx(run / 'model.npz', run / 'model.onnx')


def chainer_logits(path, x, arch='squeezenet'):
    model = registry.build(arch, 10, **registry.accepted_options(arch, {'fast': False}))
    load_weights(model, path)
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        return model(x).array


def ort_logits(path, x):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    return session.run(None, {'images': x})[0]


def test_export_reproduces_chainer_within_the_tolerance(exported, run):
    assert exported.path.is_file()
    assert set(exported.errors) == set(CHECK_BATCHES) and max(CHECK_BATCHES) > 1
    assert all(error <= exported.allowed for error in exported.errors.values())
    assert exported.same_top1 == {n: 1.0 for n in CHECK_BATCHES}
    # the batch axis is dynamic: any batch size runs, and agrees with Chainer
    x = sample_images('32', 37, seed=5)
    expected = chainer_logits(run / 'model.npz', x)
    got = ort_logits(exported.path, x)
    assert got.shape == (37, 10)
    np.testing.assert_allclose(got, expected, rtol=0, atol=exported.allowed)
    assert (got.argmax(1) == expected.argmax(1)).all()


def test_metadata_holds_the_runs_record(exported, run):
    import onnx

    proto = onnx.load(str(exported.path))
    props = {p.key: p.value for p in proto.metadata_props}
    assert props['arch'] == 'squeezenet'
    assert props['dataset'] == 'cifar10'
    assert props['preset'] == '32'
    assert props['class_names'].startswith('["airplane", "automobile"')
    assert props['input_shape'] == '[3, 32, 32]'
    assert props['source'] == str((run / 'model.npz').resolve())
    assert props.get('git_commit') == exported.info.git_commit
    (image,) = [i for i in proto.graph.input]  # the weights are initializers, not inputs
    dims = image.type.tensor_type.shape.dim
    assert image.name == 'images' and dims[0].dim_param == 'batch'
    assert [d.dim_value for d in dims[1:]] == [3, 32, 32]
    assert proto.graph.output[0].type.tensor_type.shape.dim[0].dim_param == 'batch'


def test_a_snapshot_exports_the_same_weights(exported, run, tmp_path):
    _require_extras()
    result = export_onnx(run / 'snapshot_epoch_1', tmp_path / 'snapshot.onnx')
    assert result.info.preset == '32'  # run.json beside the snapshot
    x = sample_images('32', 4)
    np.testing.assert_array_equal(ort_logits(result.path, x), ort_logits(exported.path, x))


def test_a_user_net_without_a_fast_option_exports(tmp_path):
    _require_extras()
    chainer.serializers.save_npz(tmp_path / 'model.npz', tiny_vgg(10))
    arch = f'{__name__}:tiny_vgg'  # an import path, as --arch takes; no run.json beside it
    result = export_onnx(tmp_path / 'model.npz', tmp_path / 'vgg.onnx', arch, preset='32')
    assert result.info.arch == arch and result.info.preset == '32'
    assert max(result.errors.values()) <= result.allowed


def test_a_setting_contradicting_the_record_is_refused(run, tmp_path):
    _require_extras()
    with pytest.raises(ModelFileError, match='--preset 122: .*run.json says .*preset 32'):
        export_onnx(run / 'model.npz', tmp_path / 'x.onnx', preset='122')
    assert not (tmp_path / 'x.onnx').exists()


def test_a_model_onnx_chainer_cannot_convert_is_one_line(run, tmp_path):
    _require_extras()
    weights = tmp_path / 'model.npz'  # no record beside it nor inside it: --arch is free
    with np.load(run / 'model.npz') as arrays:
        np.savez(weights, **{k: v for k, v in arrays.items() if k != RECORD_KEY})
    with pytest.raises(ExportError, match='onnx-chainer cannot convert') as error:
        export_onnx(weights, tmp_path / 'x.onnx', f'{__name__}:fast_only')
    assert '\n' not in str(error.value)
    assert not (tmp_path / 'x.onnx').exists()


def test_a_failed_check_writes_nothing(run, tmp_path):
    _require_extras()
    with pytest.raises(ExportError, match='differs from Chainer by .* the export is not written'):
        export_onnx(run / 'model.npz', tmp_path / 'x.onnx', tolerance=-1.0)
    assert not list(tmp_path.iterdir())


def test_an_unwritable_output_is_one_line(run, tmp_path):
    _require_extras()
    with pytest.raises(ExportError, match='cannot write'):
        export_onnx(run / 'model.npz', tmp_path / 'missing' / 'x.onnx')


def test_a_missing_weights_file_is_one_line(tmp_path):
    _require_extras()
    with pytest.raises(ModelFileError, match='no such file'):
        export_onnx(tmp_path / 'model.npz', tmp_path / 'x.onnx')


def test_missing_extras_name_the_install_command(run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'onnx_chainer', None)  # import fails, as if absent
    monkeypatch.setitem(sys.modules, 'onnx', None)
    with pytest.raises(MissingExtraError, match='needs the onnx package.*make install-extras'):
        export_onnx(run / 'model.npz', tmp_path / 'x.onnx')


def test_an_onnx_without_mapping_names_the_pin(run, tmp_path, monkeypatch):
    onnx = pytest.importorskip('onnx', reason=EXTRA)
    pytest.importorskip('onnxruntime', reason=EXTRA)
    monkeypatch.delattr(onnx, 'mapping', raising=False)
    with pytest.raises(MissingExtraError, match='needs onnx 1.18.0 .*no onnx.mapping'):
        export_onnx(run / 'model.npz', tmp_path / 'x.onnx')
