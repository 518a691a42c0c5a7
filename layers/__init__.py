"""Generic layers any Chainer image net can use, each with its CPU fast path inside.

A net is a composition of these units and functions with one ``forward``, written on
(N, C, H, W) activations. Converting the input with ``channels_last`` where it enters the
net makes every unit after it run NHWC kernels on the CPU (``layers.layout``); on CuPy
arrays, or within ``fast_path(False)``, the same units run Chainer's plain functions.
Parameters are Chainer's own links either way, so snapshots load on both paths.

Importing ``layers`` has no process-wide effect: Numba, its threads and the allocator
set-up (``layers.runtime``) start when a unit first takes the fast path.
"""

import chainer_compat  # noqa: F401  (first: lets Chainer import on current stacks)

# isort: split
from layers.bn_relu_conv import BNReLUConv, ConvBN, ConvBNReLU
from layers.frozen import FrozenWeights
from layers.functions import (
    average_pooling_2d,
    concat,
    dropout,
    global_average_pooling_2d,
    max_pooling_2d,
)
from layers.initializers import INITIALIZERS, ReferenceOrthonormal, make_initializer
from layers.layout import channels_last, fast_path, is_channels_last
from layers.links import BatchNormalization, Convolution2D

__all__ = [
    'BNReLUConv',
    'BatchNormalization',
    'ConvBN',
    'ConvBNReLU',
    'Convolution2D',
    'FrozenWeights',
    'INITIALIZERS',
    'ReferenceOrthonormal',
    'average_pooling_2d',
    'channels_last',
    'concat',
    'dropout',
    'fast_path',
    'global_average_pooling_2d',
    'is_channels_last',
    'make_initializer',
    'max_pooling_2d',
]
