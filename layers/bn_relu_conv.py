"""The pre-activation unit: BatchNormalization, ReLU, then a convolution (He et al. 2016)."""

import chainer
import chainer.functions as F
import chainer.links as L
from chainer import initializers

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
