"""The GPU path (CuPy): skipped with the reason where CuPy or a CUDA GPU is missing.

What the CPU suite cannot show: training, evaluation, resuming and prediction on GPU 0,
agreeing with the CPU; cuDNN used when it is installed; the NaN guard; seeds.
"""

import importlib.util
import json

import chainer
import chainer.links as L
import numpy as np
import pytest
from conftest import write_cifar10

import main
from squeeze_net import SqueezeNet
from trainer import run_folder

pytestmark = pytest.mark.gpu


def argv(out, data, *extra):
    return [
        '-g', '0', '-b', '20', '--preset', '32', '--workers', '2', '--no-progress', '--seed', '0',
        '-p', str(out), '--img-dir', str(out / 'img'), '--data', str(data), *extra,
    ]  # fmt: skip


def epochs(out):
    return [entry['epoch'] for entry in json.loads((out / 'log.json').read_text())]


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return write_cifar10(tmp_path_factory.mktemp('data'), learnable=True)


def weights_of(model):
    return {name: chainer.backend.CpuDevice().send(p.array) for name, p in model.namedparams()}


def test_training_steps_match_the_cpu(tmp_path, rng):
    x = rng.normal(size=(8, 3, 32, 32)).astype(np.float32)
    t = np.arange(8, dtype=np.int32) % 10
    chainer.serializers.save_npz(tmp_path / 'w.npz', SqueezeNet(10))
    weights = []
    for device in ('@numpy', '@cupy:0'):
        model = L.Classifier(SqueezeNet(10, dropout=0.0))
        chainer.serializers.load_npz(tmp_path / 'w.npz', model.predictor)
        model.to_device(device)
        optimizer = chainer.optimizers.MomentumSGD(lr=0.05)
        optimizer.setup(model)
        optimizer.add_hook(chainer.optimizer_hooks.WeightDecay(1e-4))
        device_x, device_t = chainer.get_device(device).send((x, t))
        for _ in range(3):
            optimizer.update(model, device_x, device_t)
        model.to_device('@numpy')
        weights.append(weights_of(model))
    for name, value in weights[0].items():
        np.testing.assert_allclose(value, weights[1][name], rtol=1e-3, atol=1e-4, err_msg=name)


def test_test_mode_outputs_match_the_cpu(rng):
    model = SqueezeNet(10)
    x = rng.normal(size=(4, 3, 128, 128)).astype(np.float32)
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        cpu = model(x).array
        model.to_device('@cupy:0')
        gpu = chainer.backend.CpuDevice().send(model(chainer.get_device('@cupy:0').send(x)).array)
    np.testing.assert_allclose(gpu, cpu, rtol=1e-4, atol=1e-4)


def test_cudnn_is_used_when_it_is_installed():
    from chainer.backends import cuda

    loadable = importlib.util.find_spec('cupy_backends.cuda.libs.cudnn') is not None
    if loadable:
        try:
            import cupy_backends.cuda.libs.cudnn  # noqa: F401
        except ImportError:
            loadable = False
    assert cuda.cudnn_enabled == loadable
    if loadable:
        assert chainer.should_use_cudnn('>=auto')


def test_main_trains_resumes_across_devices_and_predicts(tmp_path, data, capsys):
    out = tmp_path / 'run'
    extra = ['-trb', '2', '-teb', '2']
    assert main.main(argv(out, data, '-e', '2', *extra)) == 0  # GPU
    cpu = argv(out, data, '-e', '3', *extra)
    cpu[cpu.index('-g') + 1] = '-1'
    assert main.main(cpu) == 0  # CPU continues the GPU's run
    assert main.main(argv(out, data, '-e', '4', *extra)) == 0  # and the GPU the CPU's
    assert epochs(out) == [1, 2, 3, 4]
    log = json.loads((out / 'log.json').read_text())
    assert all(np.isfinite(entry['main/loss']) for entry in log)
    assert sum(map(sum, log[-1]['validation/confusion'])) == 40
    newest = run_folder.RunFolder(out).newest_snapshot()
    assert newest[0] == 4
    from PIL import Image

    Image.new('RGB', (40, 30), (250, 20, 20)).save(tmp_path / 'red.png')
    answers = []
    for gpu in ('0', '-1'):
        argv_ = ['predict', '-m', str(out / 'model.npz'), '-g', gpu, '--json', '--top', '10']
        assert main.main([*argv_, str(tmp_path / 'red.png')]) == 0
        answers.append(json.loads(capsys.readouterr().out)[0]['predictions'])
    gpu, cpu = ({p['label']: p['probability'] for p in a} for a in answers)
    for label in cpu:
        assert gpu[label] == pytest.approx(cpu[label], abs=1e-3)


def test_the_non_finite_guard_fires_on_the_gpu(tmp_path, data, capsys, monkeypatch):
    from trainer.schedules import StepSchedule

    monkeypatch.setattr(StepSchedule, '__call__', lambda s, o: setattr(o, 'lr', 1e30))
    assert main.main(argv(tmp_path / 'run', data, '-e', '2')) == 1
    assert 'NaN or infinite' in capsys.readouterr().err


def test_seeded_runs_repeat_on_the_gpu(tmp_path, data):
    logs = []
    for name in ('a', 'b'):
        out = tmp_path / name
        assert main.main(argv(out, data, '-e', '1', '--workers', '0')) == 0
        logs.append(json.loads((out / 'log.json').read_text())[0])
        first = np.load(out / 'snapshot_epoch_1')
        logs[-1]['conv1'] = first[run_folder.MODEL_PREFIX + 'conv1/W']
    # same initial weights, shuffling, augmentation and dropout masks; cuDNN's backward
    # may sum in another order, so the losses agree closely rather than bit for bit
    assert logs[0]['main/loss'] == pytest.approx(logs[1]['main/loss'], rel=1e-3)
    np.testing.assert_allclose(logs[0]['conv1'], logs[1]['conv1'], rtol=1e-3, atol=1e-5)


def test_serve_on_the_gpu(tmp_path, data):
    import io
    import threading
    import urllib.request

    from PIL import Image

    import inference
    import serving

    out = tmp_path / 'run'
    assert main.main(argv(out, data, '-e', '1')) == 0
    predictor = inference.load_predictor(out / 'model.npz', gpu=0)
    server = serving.make_server(predictor, '127.0.0.1', 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        buffer = io.BytesIO()
        Image.new('RGB', (32, 32), (10, 200, 10)).save(buffer, 'PNG')
        request = urllib.request.Request(server.url + '/predict', data=buffer.getvalue())
        with urllib.request.urlopen(request, timeout=60) as reply:
            answer = json.loads(reply.read())
        assert len(answer['predictions']) == 3
    finally:
        server.shutdown()
        server.server_close()
