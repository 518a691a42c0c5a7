"""Layout-keeping functions between units: pooling, global average pooling, concat, dropout.

Each takes and returns (N, C, H, W) activations like Chainer's function of the same name
and gives the same numbers. A channels-last input (``layers.layout``) gives a channels-last
output, through the NHWC kernels where there is one (max pooling) and otherwise through
Chainer's function on the NHWC view, so the units after it stay on the fast path. Other
inputs run Chainer's function unchanged.
"""

from collections.abc import Sequence

import chainer
import chainer.functions as F

from layers import layout


def _pair(value) -> tuple:
    return tuple(value) if isinstance(value, tuple | list) else (value, value)


def max_pooling_2d(x, ksize, stride=None, pad=0, cover_all: bool = True) -> chainer.Variable:
    """``F.max_pooling_2d``; channels-last square windows (``cover_all``, the default, up to
    11x11) in one compiled pass, the first maximum in window order as Chainer's."""
    stride = ksize if stride is None else stride
    (k, k2), (s, s2), (p, p2) = _pair(ksize), _pair(stride), _pair(pad)
    if not layout.takes_fast_path(x):
        return F.max_pooling_2d(x, ksize, stride, pad, cover_all)
    if cover_all and k == k2 and s == s2 and p == p2 and k * k <= 127:
        fast = layout.ops()
        return layout.to_nchw(fast.max_pooling(layout.to_nhwc(x), k, s, p))
    return layout.channels_last(F.max_pooling_2d(x, ksize, stride, pad, cover_all))


def average_pooling_2d(x, ksize, stride=None, pad=0) -> chainer.Variable:
    """``F.average_pooling_2d`` (the padding counts in the mean, as Chainer's); channels-last
    non-overlapping unpadded windows as one mean over the NHWC view."""
    stride = ksize if stride is None else stride
    (kh, kw), (sh, sw), (ph, pw) = _pair(ksize), _pair(stride), _pair(pad)
    if not layout.takes_fast_path(x):
        return F.average_pooling_2d(x, ksize, stride, pad)
    n, c, h, w = x.shape
    if (kh, kw) == (sh, sw) and ph == pw == 0 and h % kh == 0 and w % kw == 0:
        windows = F.reshape(layout.to_nhwc(x), (n, h // kh, kh, w // kw, kw, c))
        return layout.to_nchw(F.mean(windows, axis=(2, 4)))
    return layout.channels_last(F.average_pooling_2d(x, ksize, stride, pad))


def global_average_pooling_2d(x) -> chainer.Variable:
    """The mean over height and width: (N, C, H, W) to (N, C)."""
    if layout.takes_fast_path(x):
        return F.mean(layout.to_nhwc(x), axis=(1, 2))
    return F.mean(x, axis=(2, 3))


def concat(xs: Sequence, axis: int = 1) -> chainer.Variable:
    """``F.concat``; channels-last inputs joined along the channels stay channels-last."""
    if axis == 1 and all(layout.takes_fast_path(x) for x in xs):
        return layout.to_nchw(F.concat([layout.to_nhwc(x) for x in xs], axis=3))
    return F.concat(xs, axis)


def dropout(x, ratio: float = 0.5) -> chainer.Variable:
    """``F.dropout`` with the same mask on either layout (drawn in NCHW order), active only
    when ``chainer.config.train``; a channels-last input stays channels-last."""
    y = F.dropout(x, ratio)
    return layout.channels_last(y) if layout.takes_fast_path(x) else y
