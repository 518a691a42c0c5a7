"""The CPU fast path's building blocks, on NHWC activations and Chainer's own links.

The units of ``layers`` call these on the (N, H, W, C) view of a channels-last activation
(``layers.layout``) with their own links, so parameters keep their names, shapes and
layouts. Channels are innermost, so 1x1 convolutions are plain GEMMs and the compiled loops
read contiguous channels. A net never calls them: its units do.

Importing this module imports Numba (``layers.kernels`` configures its threads first), so
``layers.layout.fast_path`` imports it when a unit first takes the fast path. The nodes
implement ``forward_cpu`` only, so a GPU version can later fill the same boundaries with
``forward_gpu``.
"""

from collections.abc import Sequence

import chainer
import chainer.links as L
import numpy as np

from layers import frozen, kernels, workspace
from layers.bn_relu_nhwc import (
    bn_add_relu_nhwc,
    bn_nhwc,
    bn_relu_nhwc,
    bn_relus_nhwc,
    inference_affine,
)
from layers.conv_nhwc import Branch, convolutions_nhwc
from layers.pool_nhwc import max_pooling_nhwc


def bn_relu(bn: L.BatchNormalization, x) -> chainer.Variable:
    """relu(bn(x)) on NHWC, fused; the link's statistics and mode as ``bn(x)`` would use."""
    return bn_relu_nhwc(bn, x)


def bn(bn: L.BatchNormalization, x) -> chainer.Variable:
    """bn(x) on NHWC, without a ReLU; the link's statistics and mode as ``bn(x)`` would use."""
    return bn_nhwc(bn, x)


def bn_add_relu(bn: L.BatchNormalization, x, r) -> chainer.Variable:
    """relu(bn(x) + r) on NHWC, fused: a post-activation residual block's end."""
    return bn_add_relu_nhwc(bn, x, r)


def bn_relus(bns: Sequence[L.BatchNormalization], x, passthrough: bool = False) -> tuple:
    """``relu(bn(x))`` for each of ``bns`` from one pass over x (one input gradient);
    with ``passthrough`` also x itself, last, whose gradient joins in the same pass.

    For an activation that several units normalize (a Fire module's two expands), or that
    a bypass also carries: the gradient sums Chainer would add afterwards cost nothing.
    """
    return bn_relus_nhwc(bns, x, passthrough)


def nhwc_copy(x: np.ndarray) -> np.ndarray:
    """An (N, C, H, W) array's values in a new C-contiguous (N, H, W, C) array: one
    parallel pass for float32 and float64 (``kernels.nchw_to_nhwc``), NumPy's copy else."""
    if x.dtype not in (np.float32, np.float64):
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    n, c, h, w = x.shape
    y = workspace.array((n, h, w, c), x.dtype)
    kernels.nchw_to_nhwc(x, y)
    return y


def supports(conv: L.Convolution2D) -> bool:
    """Whether ``convolution`` takes this link: initialized, square stride and padding, no
    dilation, no groups (others run Chainer's function)."""
    (sy, sx), (py, px) = conv.stride, conv.pad
    return (
        conv.W.array is not None
        and sy == sx
        and py == px
        and tuple(conv.dilate) == (1, 1)
        and conv.groups == 1
    )


def _branch(conv: L.Convolution2D) -> Branch:
    (sy, sx), (py, px) = conv.stride, conv.pad
    if sy != sx or py != px or conv.dilate != (1, 1) or conv.groups != 1:
        raise ValueError('the NHWC convolution takes square strides and pads only')
    return Branch(stride=sy, pad=py, bias=conv.b is not None)


def convolution(conv: L.Convolution2D, x) -> chainer.Variable:
    """``conv(x)`` on NHWC activations (a GEMM, or im2col and a GEMM)."""
    return concat_convolutions([(conv, x)])


def concat_convolutions(
    pairs: Sequence[tuple[L.Convolution2D, object]], bypass=None
) -> chainer.Variable:
    """``concat([conv(x) for conv, x in pairs], channels)`` with no concatenation copy,
    plus ``bypass`` (NHWC, the output's shape) when given: a residual connection.

    Every convolution writes its channels straight into its slice of one output array,
    accumulating onto the biases and the bypass (no pass of their own).
    """
    branches, args = [], []
    for conv, x in pairs:
        branch = _branch(conv)
        branches.append(branch)
        args += [x, conv.W] + ([conv.b] if branch.bias else [])
    return convolutions_nhwc(branches, args, bypass)


def inferring() -> bool:
    """Test mode with no graph being built (evaluation, prediction, serving): where the
    batch normalizations before convolutions can run inside them
    (``bn_relu_convolutions``)."""
    return not chainer.config.train and not chainer.config.enable_backprop


def bn_relu_convolutions(units: Sequence, x, bypass=None) -> chainer.Variable:
    """``concat([u.conv(relu(u.bn(x))) for u in units], channels)`` (+ ``bypass``) in test
    mode, each BN (running statistics) and its ReLU applied as the convolution writes its
    im2col blocks: no normalized copy of x goes to memory. ``units`` have ``bn`` and
    ``conv`` links (``BNReLUConv``). Differentiable in x, W and b only: for inference
    (``inferring``); training uses ``bn_relus`` and ``concat_convolutions``.
    """
    branches, args, normalize = [], [], []
    dtype = x.dtype
    for unit in units:
        branch = _branch(unit.conv)
        branches.append(branch)
        args += [x, unit.conv.W] + ([unit.conv.b] if branch.bias else [])
        normalize.append(_affine(unit.bn, dtype))
    return convolutions_nhwc(branches, args, bypass, normalize)


def _affine(bn: L.BatchNormalization, dtype) -> tuple:
    """``inference_affine(bn, dtype)``, kept between calls where the weights hold still
    (``layers.frozen``)."""
    arrays = (bn.gamma.array, bn.beta.array, bn.avg_mean, bn.avg_var)
    return frozen.derived(('affine', dtype, bn.eps), arrays, lambda: inference_affine(bn, dtype))


def max_pooling(x, ksize: int, stride: int, pad: int) -> chainer.Variable:
    """Square max pooling of NHWC activations, ``cover_all=True`` like Chainer's default."""
    return max_pooling_nhwc(x, ksize, stride, pad)
