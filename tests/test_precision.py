"""--mixed16 (trainer.precision): what the CPU can test; the GPU run is tools/gpu_check."""

import chainer
import chainer.functions as F
import chainer.links as L
import numpy as np
import pytest
from chainer.dataset import concat_examples

from trainer import precision
from trainer.updaters import AccumulatingUpdater


class Net(chainer.Chain):
    def __init__(self):
        super().__init__()
        with self.init_scope():
            self.fc = L.Linear(3, 2)
            self.bn = L.BatchNormalization(2)

    def forward(self, x):
        return self.bn(self.fc(x))


def test_to_mixed16_keeps_batch_norm_in_float32():
    model = precision.to_mixed16(Net())
    assert model.fc.W.dtype == np.float16 and model.fc.b.dtype == np.float16
    assert model.bn.gamma.dtype == np.float32 and model.bn.avg_mean.dtype == np.float32


def step(scale_grads=1.0, interval=2):
    """One update of a float32 linear model under dynamic loss scaling (the arithmetic
    is the same in float16); return the model, the optimizer and the gradient seen."""
    model = L.Linear(2, 1, initialW=np.ones((1, 2), np.float32), nobias=True)
    optimizer = chainer.optimizers.SGD(lr=1.0)
    optimizer.setup(model)
    precision.scale_dynamically(optimizer, interval=interval)
    x = np.array([[1.0, 2.0]], np.float32)
    scale = precision.loss_scale(optimizer)
    model.cleargrads()
    (F.sum(model(x)) * scale_grads).backward(loss_scale=scale)
    seen = model.W.grad.copy()
    optimizer.update()
    return model, optimizer, seen, scale


def test_the_update_unscales_the_gradient_and_the_scale_grows():
    model, optimizer, seen, scale = step()
    assert scale == 1.0
    np.testing.assert_allclose(model.W.array, [[0.0, -1.0]])  # 1 - lr * (x / scale) * scale
    assert precision.loss_scale(optimizer) == 2.0  # doubled while nothing overflowed
    x = np.array([[1.0, 2.0]], np.float32)
    model.cleargrads()
    F.sum(model(x)).backward(loss_scale=precision.loss_scale(optimizer))
    np.testing.assert_allclose(model.W.grad, [[2.0, 4.0]])  # scaled by 2 in backward...
    optimizer.update()
    np.testing.assert_allclose(model.W.array, [[-1.0, -3.0]])  # ... and unscaled in update


def test_a_non_finite_gradient_skips_the_update_and_halves_the_scale():
    model, optimizer, _, _ = step()
    before = model.W.array.copy()
    model.cleargrads()
    model.W.grad = np.array([[np.inf, 1.0]], np.float32)
    with pytest.warns(UserWarning, match='Non finite'):
        optimizer.update()
    np.testing.assert_array_equal(model.W.array, before)
    assert precision.loss_scale(optimizer) == 1.0  # 2, halved
    model.cleargrads()
    model.W.grad = np.ones((1, 2), np.float32)
    optimizer.update()
    assert precision.loss_scale(optimizer) == pytest.approx(2**0.5)  # then 2**(1/interval)


def test_the_updater_backpropagates_with_the_optimizers_scale():
    model = L.Classifier(L.Linear(3, 2, initialW=np.zeros((2, 3), np.float32)))
    optimizer = chainer.optimizers.SGD(lr=0.0)
    optimizer.setup(model)
    precision.scale_dynamically(optimizer)
    optimizer._loss_scale = 8.0  # noqa: SLF001 (as after three clean updates)
    seen = []
    optimizer.add_hook(lambda opt: seen.append(opt.target.predictor.W.grad.copy()), 'seen')
    data = [(np.ones(3, np.float32), 0), (np.ones(3, np.float32), 0)]
    iterator = chainer.iterators.SerialIterator(data, 2, shuffle=False)
    reporter = chainer.Reporter()
    reporter.add_observer('main', model)
    with reporter:
        AccumulatingUpdater(iterator, optimizer, converter=concat_examples).update()
    np.testing.assert_allclose(np.abs(seen[0]), 8 * 0.5)  # d(mean loss)/dW is 1/2, times 8


def test_float16_input_casts_the_images():
    x, t = precision.Float16Input(concat_examples)([(np.ones(3, np.float32), 1)])
    assert x.dtype == np.float16 and t.dtype.kind == 'i'
