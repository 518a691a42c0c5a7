"""SqueezeNet v1.0 with simple bypass (Iandola et al. 2016, arXiv 1602.07360)."""

import chainer
import chainer.functions as F
import chainer.links as L
from chainer import initializers

from layers import BNReLUConv, make_initializer, max_pooling_2d, nhwc
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
        fast: on NumPy arrays, run the CPU fast path (``layers.nhwc``: NHWC activations,
            GEMM convolutions, compiled pooling and fused BN + ReLU; same parameters and
            the same results within float32 rounding); False runs Chainer's plain
            composition. CuPy arrays always take the plain composition.
    """

    def __init__(
        self,
        n_classes: int = 10,
        dropout: float = 0.5,
        init: str = 'orthonormal',
        fast: bool = True,
    ) -> None:
        super().__init__()
        self.n_classes = n_classes
        self.dropout = dropout
        self.fast = fast
        initialW = make_initializer(init)
        with self.init_scope():
            self.conv1 = L.Convolution2D(
                3, 96, 7, stride=2, pad=2, initialW=initialW, initial_bias=initializers.Zero()
            )
            channels = 96
            for name, squeeze, expand1, expand3, _ in FIRES:
                setattr(self, name, Fire(channels, squeeze, expand1, expand3, initialW))
                channels = expand1 + expand3
            self.conv10 = BNReLUConv(channels, n_classes, 1, initialW=initialW)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        if nhwc.use_fast(x, self.fast):
            return self.forward_nhwc(x)
        h = self.conv1(x)
        for name, *fire in BODY:
            if not fire:
                h = self.pool(h)
            else:
                out = self[name](h)
                h = out + h if fire[-1] else out
        h = F.dropout(h, self.dropout)
        return F.mean(self.conv10(h), axis=(2, 3))

    def forward_nhwc(self, x: chainer.Variable) -> chainer.Variable:
        """The CPU fast path: NCHW images in, logits out, NHWC activations in between."""
        h = nhwc.convolution(self.conv1, nhwc.to_nhwc(x))
        for name, *fire in BODY:
            if not fire:
                h = nhwc.max_pooling(h, 3, 2, 1)
            else:
                h = self[name].forward_nhwc(h, bypass=fire[-1])
        # Dropout on the NCHW view draws its mask in the plain path's order (same seed, same mask).
        h = nhwc.to_nhwc(F.dropout(nhwc.to_nchw(h), self.dropout))
        return F.mean(self.conv10.forward_nhwc(h), axis=(1, 2))

    def pool(self, x: chainer.Variable) -> chainer.Variable:
        """3x3 max pooling, stride 2, pad 1, cover_all (PyTorch's ceil_mode=True), NCHW."""
        return max_pooling_2d(x, 3, stride=2, pad=1, fast=self.fast)

    def count_params(self) -> int:
        """Number of trainable scalars (BatchNormalization running statistics excluded)."""
        return sum(p.size for p in self.params())
