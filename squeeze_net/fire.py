"""The pre-activation unit (BN-ReLU-Conv) and the Fire module built from it."""

import trainer.compat  # noqa: F401  (first: lets Chainer import on current stacks)

# isort: split
import chainer
import chainer.functions as F
import chainer.links as L
from chainer import initializers


def he_normal() -> initializers.HeNormal:
    """He et al. 2015 normal init for ReLU nets: std = sqrt(2 / fan_in), the paper's choice."""
    return initializers.HeNormal(scale=1.0)


class BNReLUConv(chainer.Chain):
    """BatchNormalization, ReLU, then a convolution with bias (He et al. 2016 pre-activation).

    Args:
        in_channels: channels of the input (and of the BatchNormalization).
        out_channels: filters of the convolution.
        ksize: square kernel size.
        stride: convolution stride.
        pad: zero padding on each side.
    """

    def __init__(
        self, in_channels: int, out_channels: int, ksize: int, stride: int = 1, pad: int = 0
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
                initialW=he_normal(),
                initial_bias=initializers.Zero(),
            )

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        return self.conv(F.relu(self.bn(x)))


class Fire(chainer.Chain):
    """SqueezeNet's Fire module: a 1x1 squeeze, then 1x1 and 3x3 expands concatenated.

    Every convolution is a BN-ReLU-Conv unit; the output has ``expand1 + expand3`` channels,
    the 1x1 expand first.

    Args:
        in_channels: channels of the input.
        squeeze: filters of the 1x1 squeeze convolution.
        expand1: filters of the 1x1 expand convolution.
        expand3: filters of the 3x3 expand convolution (pad 1, size kept).
    """

    def __init__(self, in_channels: int, squeeze: int, expand1: int, expand3: int) -> None:
        super().__init__()
        self.out_channels = expand1 + expand3
        with self.init_scope():
            self.squeeze = BNReLUConv(in_channels, squeeze, 1)
            self.expand1 = BNReLUConv(squeeze, expand1, 1)
            self.expand3 = BNReLUConv(squeeze, expand3, 3, pad=1)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        h = self.squeeze(x)
        return F.concat((self.expand1(h), self.expand3(h)), axis=1)
