"""Gradient accumulation (-trb) gives the full-batch update."""

import chainer
import chainer.functions as F
import chainer.links as L
import numpy as np
from chainer import iterators

from trainer.updaters import AccumulatingUpdater


class TinyNet(chainer.Chain):
    """BN-free: the sub-batch split cannot change its statistics."""

    def __init__(self):
        super().__init__()
        with self.init_scope():
            self.conv = L.Convolution2D(3, 4, 3, pad=1)
            self.fc = L.Linear(4 * 8 * 8, 5)

    def forward(self, x):
        return self.fc(F.relu(self.conv(x)))


def step(divide, data, weights):
    model = L.Classifier(TinyNet())
    chainer.serializers.load_npz(weights, model)
    optimizer = chainer.optimizers.MomentumSGD(lr=0.1, momentum=0.9)
    optimizer.setup(model)
    optimizer.add_hook(chainer.optimizer_hooks.WeightDecay(1e-4))
    iterator = iterators.SerialIterator(data, 8, shuffle=False)
    updater = AccumulatingUpdater(iterator, optimizer, divide=divide)
    reporter = chainer.Reporter()
    reporter.add_observer('main', model)
    observations = []
    for _ in range(3):
        observation = {}
        with reporter.scope(observation):
            updater.update()
        observations.append(observation)
    return model, observations


def test_divided_batch_gives_the_same_update(tmp_path, rng):
    x = rng.normal(size=(24, 3, 8, 8)).astype(np.float32)
    t = rng.integers(0, 5, 24).astype(np.int32)
    data = list(zip(x, t, strict=True))
    weights = tmp_path / 'w.npz'
    chainer.serializers.save_npz(weights, L.Classifier(TinyNet()))
    full, full_obs = step(1, data, weights)
    split, split_obs = step(4, data, weights)
    for (name, a), (_, b) in zip(
        sorted(full.namedparams()), sorted(split.namedparams()), strict=True
    ):
        np.testing.assert_allclose(a.array, b.array, rtol=1e-5, atol=1e-6, err_msg=name)
    for a, b in zip(full_obs, split_obs, strict=True):
        np.testing.assert_allclose(float(a['main/loss']), float(b['main/loss']), rtol=1e-5)
    # 24 images, 8 a step: the third step ends the epoch and reports its rate
    assert [('train/images_per_sec' in o) for o in full_obs] == [False, False, True]
    assert full_obs[2]['train/images_per_sec'] > 0


def test_optimizer_epoch_follows_the_iterator(rng):
    data = [(rng.normal(size=(3, 8, 8)).astype(np.float32), np.int32(0)) for _ in range(10)]
    model = L.Classifier(TinyNet())
    optimizer = chainer.optimizers.SGD()
    optimizer.setup(model)
    updater = AccumulatingUpdater(iterators.SerialIterator(data, 5), optimizer, divide=1)
    reporter = chainer.Reporter()
    reporter.add_observer('main', model)
    for _ in range(4):
        with reporter.scope({}):
            updater.update()
    assert optimizer.epoch == updater.epoch == 2


def test_loss_func_and_input_device_are_honoured(rng):
    """StandardUpdater's contract: a loss_func replaces the target; input_device is used."""
    data = [(rng.normal(size=(3, 8, 8)).astype(np.float32), np.int32(1)) for _ in range(8)]
    model = L.Classifier(TinyNet())
    optimizer = chainer.optimizers.SGD(lr=0.0)
    optimizer.setup(model)
    calls = []

    def loss_func(x, t):
        calls.append((type(x), len(x)))
        return F.sum(model.predictor(x)) * 0

    def converter(batch, device):
        calls.append(('device', str(device)))
        return chainer.dataset.concat_examples(batch, device)

    updater = AccumulatingUpdater(
        iterators.SerialIterator(data, 4),
        optimizer,
        divide=2,
        loss_func=loss_func,
        converter=converter,
        input_device='@numpy',
    )
    with chainer.Reporter().scope({}):
        updater.update()
    assert calls == [('device', '@numpy'), (np.ndarray, 2)] * 2
