"""Generic layers any Chainer image net can use: the pre-activation unit, max pooling and
the reference's initializers. Nothing here knows a particular architecture."""

import chainer_compat  # noqa: F401  (first: lets Chainer import on current stacks)

# isort: split
from layers.bn_relu_conv import BNReLUConv
from layers.initializers import INITIALIZERS, ReferenceOrthonormal, make_initializer
from layers.pooling import max_pooling_2d

__all__ = [
    'BNReLUConv',
    'INITIALIZERS',
    'ReferenceOrthonormal',
    'make_initializer',
    'max_pooling_2d',
]
