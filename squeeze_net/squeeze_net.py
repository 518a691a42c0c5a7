"""SqueezeNet v1.0 with simple bypass (Iandola et al. 2016, arXiv 1602.07360)."""

from typing import Literal

import chainer
from chainer import initializers

import layers
from layers import BNReLUConv, make_initializer
from squeeze_net.fire import Fire

# The paper's Table 1 for v1.0 after conv1 (7x7/2, 96 filters), in order. A fire row is
# (name, squeeze, expand1x1, expand3x3, simple bypass); a maxpool row is 3x3, stride 2, pad 1.
BODY = (
    ('maxpool1',),
    ('fire2', 16, 64, 64, False),
    ('fire3', 16, 64, 64, True),
    ('fire4', 32, 128, 128, False),
    ('maxpool4',),
    ('fire5', 32, 128, 128, True),
    ('fire6', 48, 192, 192, False),
    ('fire7', 48, 192, 192, True),
    ('fire8', 64, 256, 256, False),
    ('maxpool8',),
    ('fire9', 64, 256, 256, True),
)
FIRES = tuple(row for row in BODY if len(row) == 5)


class SqueezeNet(chainer.Chain):
    """SqueezeNet v1.0 with simple bypass, fire convolutions in BN-ReLU-Conv order.

    conv1 (7x7/2, 96, pad 2, plain conv with bias) and max pooling, fire2..fire9 with
    bypasses around fire3, 5, 7 and 9 and pooling after fire4 and fire8, dropout 0.5,
    then conv10 (BN-ReLU-Conv 1x1 to ``n_classes``) and global average pooling.
    Inputs of 32x32 pixels and up work; the output is logits of shape (N, n_classes).

    Args:
        n_classes: number of classes (10 for CIFAR-10, 100 for CIFAR-100).
        dropout: dropout ratio before conv10, active only when ``chainer.config.train``.
        init: 'orthonormal' (the reference trainer's, default) or 'he' (He-normal), for
            every convolution's weight; biases start at 0 (see ``layers.initializers``).
        fast: on NumPy arrays, take the input channels-last so that every unit runs its
            CPU fast path (``layers.layout``: NHWC kernels, GEMM convolutions, compiled
            pooling, fused BN + ReLU; the same parameters and the same results within
            float32 rounding); False runs Chainer's plain functions. CuPy arrays always
            take the plain functions. The forward is written once either way.
    """

    def __init__(
        self,
        n_classes: int = 10,
        dropout: float = 0.5,
        init: Literal['orthonormal', 'he'] = 'orthonormal',
        fast: bool = True,
    ) -> None:
        super().__init__()
        self.n_classes = n_classes
        self.dropout = dropout
        self.fast = fast
        initialW = make_initializer(init)
        with self.init_scope():
            self.conv1 = layers.Convolution2D(
                3, 96, 7, stride=2, pad=2, initialW=initialW, initial_bias=initializers.Zero()
            )
            channels = 96
            for name, squeeze, expand1, expand3, bypass in FIRES:
                fire = Fire(channels, squeeze, expand1, expand3, initialW, bypass=bypass)
                setattr(self, name, fire)
                channels = expand1 + expand3
            self.conv10 = BNReLUConv(channels, n_classes, 1, initialW=initialW)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        with layers.fast_path(self.fast):
            h = self.conv1(layers.channels_last(x))
            for name, *fire in BODY:
                h = self[name](h) if fire else layers.max_pooling_2d(h, 3, stride=2, pad=1)
            h = layers.dropout(h, self.dropout)
            return layers.global_average_pooling_2d(self.conv10(h))

    def count_params(self) -> int:
        """Number of trainable scalars (BatchNormalization running statistics excluded)."""
        return sum(p.size for p in self.params())
