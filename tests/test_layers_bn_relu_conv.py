"""The BN-ReLU-Conv unit."""

import chainer
import chainer.functions as F
import numpy as np

from layers import BNReLUConv, ReferenceOrthonormal


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
