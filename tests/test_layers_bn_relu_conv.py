"""The convolution units, on either path: one forward, the layout of the input choosing."""

import chainer
import chainer.functions as F
import numpy as np
import pytest
from fast_path_check import assert_paths_agree

from layers import BNReLUConv, ConvBN, ConvBNReLU, ReferenceOrthonormal


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


def test_conv_bn_has_no_relu(rng):
    unit = ConvBN(3, 4, 1)
    x = rng.normal(size=(2, 3, 4, 4)).astype(np.float32)
    with chainer.using_config('train', True):
        y = unit(x).array
    assert (y < 0).any()
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-5)


@pytest.mark.parametrize('unit_class', [BNReLUConv, ConvBNReLU, ConvBN])
@pytest.mark.parametrize(('ksize', 'stride', 'pad'), [(3, 2, 1), (1, 1, 0), (1, 2, 0)])
@pytest.mark.parametrize('train', [True, False])
def test_fast_path_equals_plain(unit_class, ksize, stride, pad, train, rng):
    unit = unit_class(4, 6, ksize, stride=stride, pad=pad)
    x = rng.normal(size=(2, 4, 7, 7))
    assert_paths_agree(lambda u, h: u(h), unit, [x], train=train)


@pytest.mark.parametrize('unit_class', [BNReLUConv, ConvBNReLU, ConvBN])
def test_inference_without_a_graph_equals_plain(unit_class, rng):
    """No graph in test mode: BNReLUConv normalizes inside its convolution's blocks."""
    unit = unit_class(4, 6, 3, pad=1)
    unit.bn.avg_mean[...] = rng.normal(size=unit.bn.avg_mean.shape)
    unit.bn.avg_var[...] = rng.uniform(0.5, 2, size=unit.bn.avg_var.shape)
    x = rng.normal(size=(3, 4, 6, 6))
    assert_paths_agree(lambda u, h: u(h), unit, [x], train=False, graph=False)


def test_unsupported_geometry_runs_chainers_function_on_either_layout(rng):
    """A rectangular stride has no NHWC kernel: Chainer's function, the same numbers."""
    unit = ConvBNReLU(3, 4, 3, stride=(1, 2), pad=1)
    x = rng.normal(size=(2, 3, 6, 6))
    assert_paths_agree(lambda u, h: u(h), unit, [x])
