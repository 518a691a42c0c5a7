"""The convolution units, plain and on the NHWC fast path."""

import chainer
import chainer.functions as F
import numpy as np
import pytest

from layers import BNReLUConv, ConvBNReLU, ReferenceOrthonormal, nhwc


def test_unit_is_bn_then_relu_then_conv(rng):
    unit = BNReLUConv(4, 6, 3, pad=1)
    x = rng.normal(size=(2, 4, 5, 5)).astype(np.float32)
    with chainer.using_config('train', False):
        expected = F.convolution_2d(F.relu(unit.bn(x)), unit.conv.W, unit.conv.b, pad=1).array
        np.testing.assert_allclose(unit(x).array, expected, rtol=1e-6)


def test_default_init_is_the_reference_and_bias_zero():
    np.random.seed(3)
    unit = BNReLUConv(16, 32, 3, pad=1)
    np.random.seed(3)
    expected = np.empty((32, 16, 3, 3), np.float32)
    ReferenceOrthonormal()(expected)
    np.testing.assert_array_equal(unit.conv.W.array, expected)
    assert np.all(unit.conv.b.array == 0)


def float64(link):
    for param in link.params():
        param.array = param.array.astype(np.float64)
    for child in link.links():
        if isinstance(child, chainer.links.BatchNormalization):
            child.avg_mean = child.avg_mean.astype(np.float64)
            child.avg_var = child.avg_var.astype(np.float64)
    return link


@pytest.mark.parametrize('unit_class', [BNReLUConv, ConvBNReLU])
@pytest.mark.parametrize('train', [True, False])
def test_forward_nhwc_equals_forward(unit_class, train, rng):
    unit = float64(unit_class(4, 6, 3, stride=2, pad=1))
    x = rng.normal(size=(2, 4, 7, 7))
    results = []
    for fast in (False, True):
        other = unit.copy(mode='copy')
        other.cleargrads()
        v = chainer.Variable(x.copy())
        with chainer.using_config('train', train):
            y = nhwc.to_nchw(other.forward_nhwc(nhwc.to_nhwc(v))) if fast else other(v)
            F.sum(y * y).backward()
        results.append([y.array, v.grad] + [p.grad for _, p in sorted(other.namedparams())])
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)
