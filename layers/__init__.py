"""Generic layers any Chainer image net can use: convolution units, max pooling, the
reference's initializers, and the CPU fast path on NHWC activations (``layers.nhwc``,
compiled kernels in ``layers.kernels``). Nothing here knows a particular architecture."""

import chainer_compat  # noqa: F401  (first: lets Chainer import on current stacks)

# isort: split
from layers import nhwc
from layers.bn_relu_conv import BNReLUConv, ConvBNReLU
from layers.initializers import INITIALIZERS, ReferenceOrthonormal, make_initializer
from layers.pooling import max_pooling_2d

__all__ = [
    'BNReLUConv',
    'ConvBNReLU',
    'INITIALIZERS',
    'ReferenceOrthonormal',
    'make_initializer',
    'max_pooling_2d',
    'nhwc',
]
