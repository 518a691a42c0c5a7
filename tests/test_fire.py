"""The BN-ReLU-Conv unit and the Fire module."""

import chainer
import chainer.functions as F
import numpy as np

from squeeze_net import BNReLUConv, Fire


def test_unit_is_bn_then_relu_then_conv(rng):
    unit = BNReLUConv(4, 6, 3, pad=1)
    x = rng.normal(size=(2, 4, 5, 5)).astype(np.float32)
    with chainer.using_config('train', False):
        expected = F.convolution_2d(F.relu(unit.bn(x)), unit.conv.W, unit.conv.b, pad=1).array
        np.testing.assert_allclose(unit(x).array, expected, rtol=1e-6)


def test_conv_init_is_he_normal_and_bias_zero():
    unit = BNReLUConv(64, 256, 3, pad=1)
    w = unit.conv.W.array
    assert np.all(unit.conv.b.array == 0)
    fan_in = 64 * 3 * 3
    assert abs(w.std() - np.sqrt(2.0 / fan_in)) / np.sqrt(2.0 / fan_in) < 0.02
    assert abs(w.mean()) < 0.002


def test_fire_concatenates_expand1_then_expand3(rng):
    fire = Fire(8, 3, 5, 7)
    x = rng.normal(size=(2, 8, 6, 6)).astype(np.float32)
    with chainer.using_config('train', False):
        y = fire(x).array
        h = fire.squeeze(x)
        np.testing.assert_allclose(y[:, :5], fire.expand1(h).array, rtol=1e-6)
        np.testing.assert_allclose(y[:, 5:], fire.expand3(h).array, rtol=1e-6)
    assert y.shape == (2, 12, 6, 6)
    assert fire.out_channels == 12
