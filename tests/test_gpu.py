"""The GPU path (CuPy): skipped with the reason where CuPy or a CUDA GPU is missing."""

import json

import chainer
import chainer.links as L
import numpy as np
import pytest

import main
from squeeze_net import SqueezeNet

pytestmark = pytest.mark.gpu


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
        weights.append({name: p.array for name, p in model.namedparams()})
    for name, value in weights[0].items():
        np.testing.assert_allclose(value, weights[1][name], rtol=1e-3, atol=1e-4, err_msg=name)


def test_main_trains_on_gpu_0(tmp_path, cifar10_archive):
    out = tmp_path / 'run'
    argv = ['-g', '0', '-e', '2', '-b', '20', '--preset', '122', '--workers', '2']
    argv += ['-p', str(out), '--img-dir', str(out / 'img'), '--data', str(cifar10_archive)]
    assert main.main(argv) == 0
    log = json.loads((out / 'log.json').read_text())
    assert [entry['epoch'] for entry in log] == [1, 2]
    assert all(np.isfinite(entry['main/loss']) for entry in log)
