"""--clip-grad: Chainer's GradientClipping before weight decay (trainer.tricks)."""

import chainer
import chainer.links as L
import numpy as np
import pytest

from trainer.recipes import Tricks
from trainer.training import make_optimizer
from trainer.tricks import tune_optimizer


def grads_after_clipping(threshold, scale):
    model = L.Linear(3, 2)
    model.W.array[...] = 0
    model.b.array[...] = 0
    optimizer = make_optimizer(model, lr=1.0, epochs=10)
    tune_optimizer(optimizer, Tricks(clip_grad=threshold), 1.0, 10, 5, 0.0)
    model.cleargrads()
    model.W.grad = np.full((2, 3), scale, np.float32)
    model.b.grad = np.full((2,), scale, np.float32)
    optimizer.update()
    return np.concatenate([model.W.grad.ravel(), model.b.grad.ravel()])


def test_a_large_gradient_is_scaled_to_the_norm():
    grads = grads_after_clipping(1.0, 3.0)
    assert np.linalg.norm(grads) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(grads, grads[0])  # the direction is kept


def test_a_small_gradient_is_left_alone():
    grads = grads_after_clipping(100.0, 3.0)
    np.testing.assert_allclose(grads, 3.0)


def test_clipping_measures_the_loss_gradient_before_weight_decay():
    model = L.Linear(3, 2)
    model.W.array[...] = 1.0
    model.b.array[...] = 0
    optimizer = make_optimizer(model, lr=1.0, epochs=10)
    tune_optimizer(optimizer, Tricks(clip_grad=1.0), 1.0, 10, 5, weight_decay=0.5)
    model.cleargrads()
    model.W.grad = np.full((2, 3), 3.0, np.float32)
    model.b.grad = np.full((2,), 3.0, np.float32)
    optimizer.update()
    clipped = 3.0 / np.sqrt(8 * 9.0)  # each of the 8 gradients, scaled to norm 1
    np.testing.assert_allclose(model.W.grad, clipped + 0.5 * 1.0, rtol=1e-5)  # then decay
    np.testing.assert_allclose(model.b.grad, clipped, rtol=1e-5)


def test_every_trick_off_leaves_the_optimizer_as_it_was(rng):
    w = rng.normal(size=(2, 3)).astype(np.float32)
    results = []
    for tune in (False, True):
        model = L.Linear(3, 2, initialW=w)
        optimizer = make_optimizer(model, lr=0.1, epochs=10)
        if tune:
            tune_optimizer(optimizer, Tricks(), 0.1, 10, 5, 1e-4)
        for _ in range(3):
            model.cleargrads()
            model.W.grad, model.b.grad = w.copy(), np.ones(2, np.float32)
            optimizer.update()
        results.append((model.W.array.copy(), optimizer.lr))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    assert results[0][1] == results[1][1]
    assert chainer.optimizer_hooks.GradientClipping.name == 'GradientClipping'
