"""A CIFAR ResNet (He et al. 2016, arXiv 1512.03385, section 4.2) written once with the
units of ``layers``, so it trains on the CPU fast path with no second forward.

    python main.py --arch resnet20 --preset 32 -e 160 -p runs/resnet20

``resnet20`` (n = 3), ``resnet32`` (5) and ``resnet56`` (9): a 3x3 convolution of 16
filters, three stages of n basic blocks with 16, 32 and 64 filters (the first block of the
second and third stage strided), global average pooling and a dense head. Blocks are
post-activation, as in the paper: conv-BN-ReLU, conv-BN, add the shortcut, ReLU. Where the
shape changes the shortcut is a projection (a strided 1x1 convolution and BN, the paper's
option B); elsewhere the identity. Convolutions start He-normal, as the paper's.
"""

import chainer
import chainer.links as L
from chainer import initializers

import layers


class BasicBlock(chainer.Chain):
    """Two 3x3 Conv-BN units and a shortcut, added, then a ReLU.

    Args:
        in_channels: channels of the input.
        out_channels: channels of both convolutions and of the output.
        stride: stride of the first convolution (and of the projection).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        he = initializers.HeNormal()
        with self.init_scope():
            self.unit1 = layers.ConvBNReLU(in_channels, out_channels, 3, stride, 1, initialW=he)
            self.unit2 = layers.ConvBN(out_channels, out_channels, 3, 1, 1, initialW=he)
            if stride != 1 or in_channels != out_channels:
                self.projection = layers.ConvBN(in_channels, out_channels, 1, stride, initialW=he)
        self.project = stride != 1 or in_channels != out_channels

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        shortcut = self.projection(x) if self.project else x
        return self.unit2(self.unit1(x), residual=shortcut)  # relu(bn(conv(.)) + shortcut)


class ResNet(chainer.Chain):
    """A CIFAR ResNet of 6n + 2 layers.

    Args:
        n_classes: number of classes.
        n: basic blocks per stage (3: ResNet-20).
        widths: channels of the three stages.
        fast: take the CPU fast path on NumPy arrays (False: Chainer's plain functions).
    """

    def __init__(
        self, n_classes: int = 10, n: int = 3, widths: tuple = (16, 32, 64), fast: bool = True
    ) -> None:
        super().__init__()
        self.fast = fast
        blocks, channels = [], widths[0]
        for stage, width in enumerate(widths):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(channels, width, stride))
                channels = width
        with self.init_scope():
            self.stem = layers.ConvBNReLU(3, widths[0], 3, 1, 1, initialW=initializers.HeNormal())
            self.blocks = chainer.ChainList(*blocks)
            self.head = L.Linear(channels, n_classes)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        with layers.fast_path(self.fast):
            h = self.stem(layers.channels_last(x))
            for block in self.blocks:
                h = block(h)
            return self.head(layers.global_average_pooling_2d(h))


def resnet20(n_classes: int = 10, fast: bool = True) -> ResNet:
    """ResNet-20: three basic blocks per stage."""
    return ResNet(n_classes, 3, fast=fast)


def resnet32(n_classes: int = 10, fast: bool = True) -> ResNet:
    """ResNet-32: five basic blocks per stage."""
    return ResNet(n_classes, 5, fast=fast)


def resnet56(n_classes: int = 10, fast: bool = True) -> ResNet:
    """ResNet-56: nine basic blocks per stage."""
    return ResNet(n_classes, 9, fast=fast)
