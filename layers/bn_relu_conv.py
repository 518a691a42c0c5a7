"""Convolution units: BN-ReLU-Conv (pre-activation, He et al. 2016) and Conv-BN-ReLU.

Each is a chain of Chainer's own links (``bn``, ``conv``), so parameters and snapshots are
the same on either path. ``forward`` is the plain composition on NCHW; ``forward_nhwc`` is
the CPU fast path on NHWC activations (``layers.nhwc``), for nets that keep NHWC inside.
"""

import chainer
import chainer.functions as F
import chainer.links as L
from chainer import initializers

from layers import nhwc
from layers.initializers import make_initializer


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
        return self.conv(F.relu(self.bn(x)))

    def forward_nhwc(self, x: chainer.Variable) -> chainer.Variable:
        """The same on NHWC NumPy activations: fused BN + ReLU, then a GEMM convolution
        (for inference, the BN + ReLU inside the convolution)."""
        if nhwc.inferring():
            return nhwc.bn_relu_convolutions([self], x)
        return nhwc.convolution(self.conv, nhwc.bn_relu(self.bn, x))


class ConvBNReLU(chainer.Chain):
    """A convolution, BatchNormalization, then ReLU (the post-activation order of VGG nets).

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
            self.conv = L.Convolution2D(
                in_channels, out_channels, ksize, stride, pad, nobias=nobias, initialW=initialW
            )
            self.bn = L.BatchNormalization(out_channels)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        return F.relu(self.bn(self.conv(x)))

    def forward_nhwc(self, x: chainer.Variable) -> chainer.Variable:
        """The same on NHWC NumPy activations: a GEMM convolution, then fused BN + ReLU."""
        return nhwc.bn_relu(self.bn, nhwc.convolution(self.conv, x))
