"""Winograd F(2x2, 3x3) on NHWC equals Chainer's 3x3 convolution and its gradients."""

import chainer
import chainer.functions as F
import numpy as np
import pytest

from layers import winograd


@pytest.mark.parametrize('shape', [(2, 5, 5, 3, 4), (2, 7, 6, 4, 5), (1, 1, 1, 2, 3)])
def test_convolution_and_gradients_equal_chainers(shape, rng):
    n, h, w, c, o = shape
    x = rng.normal(size=(n, h, w, c))
    weight = rng.normal(size=(o, c, 3, 3))
    bias = rng.normal(size=o)
    gy = rng.normal(size=(n, h, w, o))
    xv, wv = chainer.Variable(x.transpose(0, 3, 1, 2).copy()), chainer.Variable(weight.copy())
    y = F.convolution_2d(xv, wv, bias, pad=1)
    y.grad = gy.transpose(0, 3, 1, 2).copy()
    y.backward()
    out = np.empty(gy.shape)
    winograd.convolve(x, weight, out, bias)
    np.testing.assert_allclose(out, y.array.transpose(0, 2, 3, 1), atol=1e-12)
    gx = winograd.grad_input(gy, weight)
    np.testing.assert_allclose(gx, xv.grad.transpose(0, 2, 3, 1), atol=1e-12)
    np.testing.assert_allclose(winograd.grad_filter(x, gy), wv.grad, atol=1e-12)


def test_float32_stays_within_a_few_roundings(rng):
    x = rng.normal(size=(2, 9, 9, 8)).astype(np.float32)
    weight = rng.normal(size=(6, 8, 3, 3)).astype(np.float32)
    out = np.empty((2, 9, 9, 6), np.float32)
    winograd.convolve(x, weight, out, None)
    exact = F.convolution_2d(
        x.transpose(0, 3, 1, 2).astype(np.float64), weight.astype(np.float64), pad=1
    )
    exact = exact.array.transpose(0, 2, 3, 1)
    assert np.abs(out - exact).max() < 1e-5 * np.abs(exact).max() * 8
