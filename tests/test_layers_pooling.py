"""The NumPy max pooling equals Chainer's exactly: values, gradients, ties and NaN."""

import chainer
import chainer.functions as F
import numpy as np
import pytest

from layers import max_pooling_2d
from squeeze_net import SqueezeNet

SHAPES = [(4, 96, 15, 15), (2, 8, 8, 8), (2, 3, 7, 6), (1, 2, 60, 61), (1, 1, 1, 1)]
WINDOWS = [(3, 2, 1), (2, 2, 0), (3, 1, 1), (3, 3, 0)]
CASES = [
    (shape, *window)
    for shape in SHAPES
    for window in WINDOWS
    if min(shape[2:]) + 2 * window[2] >= window[0]  # the window fits the padded input
]


def pair(x, ksize, stride, pad):
    a, b = chainer.Variable(x.copy()), chainer.Variable(x.copy())
    ya = F.max_pooling_2d(a, ksize, stride=stride, pad=pad)
    yb = max_pooling_2d(b, ksize, stride, pad)
    return a, b, ya, yb


@pytest.mark.parametrize('shape, ksize, stride, pad', CASES)
def test_forward_and_backward_equal_chainers(shape, ksize, stride, pad, rng):
    x = rng.integers(0, 3, shape).astype(np.float32)  # small integers: ties everywhere
    a, b, ya, yb = pair(x, ksize, stride, pad)
    np.testing.assert_array_equal(ya.array, yb.array)
    gy = rng.normal(size=ya.shape).astype(np.float32)
    ya.grad, yb.grad = gy, gy.copy()
    ya.backward()
    yb.backward()
    np.testing.assert_array_equal(a.grad, b.grad)


def test_nan_is_the_maximum_like_chainers(rng):
    x = rng.normal(size=(2, 3, 9, 9)).astype(np.float32)
    x[0, 0, 4, 4] = np.nan
    x[1, 2, 0, 0] = np.nan
    a, b, ya, yb = pair(x, 3, 2, 1)
    np.testing.assert_array_equal(ya.array, yb.array)  # NaN positions equal too
    ya.grad = yb.grad = np.ones(ya.shape, np.float32)
    ya.backward()
    yb.backward()
    np.testing.assert_array_equal(a.grad, b.grad)


def test_double_backward_equals_chainers(rng):
    x = rng.integers(0, 3, (2, 4, 9, 9)).astype(np.float32)
    grads = []
    for pool in (
        lambda v: F.max_pooling_2d(v, 3, stride=2, pad=1),
        lambda v: max_pooling_2d(v, 3, 2, 1),
    ):
        v = chainer.Variable(x.copy())
        y = pool(v)
        (gx,) = chainer.grad([F.sum(y * y)], [v], enable_double_backprop=True)
        (ggx,) = chainer.grad([F.sum(gx * gx)], [v])
        grads.append((gx.array, ggx.array))
    np.testing.assert_array_equal(grads[0][0], grads[1][0])
    np.testing.assert_array_equal(grads[0][1], grads[1][1])


def test_the_switch_selects_the_implementation():
    x = np.zeros((1, 1, 4, 4), np.float32)
    assert type(max_pooling_2d(x, 3, 2, 1).creator).__name__ == 'MaxPooling2D'
    assert type(max_pooling_2d(x, 3, 2, 1, fast=False).creator).__name__ == 'MaxPoolingND'
    model = SqueezeNet(10, fast=False)
    assert type(model.pool(np.zeros((1, 96, 9, 9), np.float32)).creator).__name__ == (
        'MaxPoolingND'
    )
