"""Convolution units: BN-ReLU-Conv (pre-activation, He et al. 2016), Conv-BN-ReLU and Conv-BN.

Each is a chain of Chainer's own links (``bn``, ``conv``), so parameters and snapshots are
the same on either path, and has one ``forward``: on a channels-last NumPy activation
(``layers.layout``) it runs the fused NHWC kernels (the BN and its ReLU in one pass; at
inference the BN + ReLU inside the convolution), on anything else Chainer's functions.
"""

import chainer
import chainer.functions as F
import chainer.links as L
from chainer import initializers

from layers import layout
from layers.initializers import make_initializer
from layers.links import BatchNormalization, Convolution2D


def _fast(x, *convs):
    """The fast path's module when ``x`` is channels-last and it takes every conv, else None."""
    if not layout.takes_fast_path(x):
        return None
    fast = layout.ops()
    return fast if all(fast.supports(conv) for conv in convs) else None


class BNReLUConv(chainer.Chain):
    """BatchNormalization, ReLU, then a convolution with bias (He et al. 2016 pre-activation).

    Args:
        in_channels: channels of the input (and of the BatchNormalization).
        out_channels: filters of the convolution.
        ksize: square kernel size.
        stride: convolution stride.
        pad: zero padding on each side.
        initialW: initializer of the convolution's weight (default: the reference's
            orthonormal one); the bias starts at 0.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        ksize: int,
        stride: int = 1,
        pad: int = 0,
        initialW: chainer.Initializer | None = None,
    ) -> None:
        super().__init__()
        with self.init_scope():
            self.bn = L.BatchNormalization(in_channels)
            self.conv = L.Convolution2D(
                in_channels,
                out_channels,
                ksize,
                stride=stride,
                pad=pad,
                initialW=initialW or make_initializer('orthonormal'),
                initial_bias=initializers.Zero(),
            )

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        fast = _fast(x, self.conv)
        if fast is None:
            return self.conv(F.relu(self.bn(x)))
        h = layout.to_nhwc(x)
        if fast.inferring():  # the BN + ReLU applied as the convolution reads its input
            return layout.to_nchw(fast.bn_relu_convolutions([self], h))
        return layout.to_nchw(fast.convolution(self.conv, fast.bn_relu(self.bn, h)))


class ConvBN(chainer.Chain):
    """A convolution then BatchNormalization, no ReLU: a post-activation residual block's
    second unit and its projection shortcut, before the add.

    Args:
        in_channels: channels of the input.
        out_channels: filters of the convolution (and channels of the BatchNormalization).
        ksize: square kernel size.
        stride: convolution stride.
        pad: zero padding on each side.
        nobias: no convolution bias (the BatchNormalization's beta takes its place).
        initialW: initializer of the convolution's weight (default: Chainer's).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        ksize: int,
        stride: int = 1,
        pad: int = 0,
        nobias: bool = True,
        initialW: chainer.Initializer | None = None,
    ) -> None:
        super().__init__()
        with self.init_scope():
            self.conv = Convolution2D(
                in_channels, out_channels, ksize, stride, pad, nobias=nobias, initialW=initialW
            )
            self.bn = BatchNormalization(out_channels)

    def forward(self, x: chainer.Variable, residual=None) -> chainer.Variable:
        """bn(conv(x)); with ``residual`` (the shortcut, x's batch and the output's shape),
        relu(bn(conv(x)) + residual): a post-activation residual block's end, on the fast
        path one pass after the convolution."""
        if residual is None:
            return self.bn(self.conv(x))
        fast = _fast(x, self.conv)
        if fast is None or not layout.takes_fast_path(residual):
            return F.relu(self.bn(self.conv(x)) + residual)
        h = fast.convolution(self.conv, layout.to_nhwc(x))
        return layout.to_nchw(fast.bn_add_relu(self.bn, h, layout.to_nhwc(residual)))


class ConvBNReLU(ConvBN):
    """A convolution, BatchNormalization, then ReLU (the post-activation order of VGG nets
    and ResNets); on the fast path the BN and its ReLU are one pass.

    Args: as ``ConvBN``.
    """

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        fast = _fast(x, self.conv)
        if fast is None:
            return F.relu(self.bn(self.conv(x)))
        h = fast.convolution(self.conv, layout.to_nhwc(x))
        return layout.to_nchw(fast.bn_relu(self.bn, h))
