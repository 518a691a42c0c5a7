"""SqueezeNet's Fire module, every convolution a BN-ReLU-Conv unit."""

import chainer
import chainer.functions as F

from layers import BNReLUConv, nhwc


class Fire(chainer.Chain):
    """SqueezeNet's Fire module: a 1x1 squeeze, then 1x1 and 3x3 expands concatenated.

    Every convolution is a BN-ReLU-Conv unit; the output has ``expand1 + expand3`` channels,
    the 1x1 expand first.

    Args:
        in_channels: channels of the input.
        squeeze: filters of the 1x1 squeeze convolution.
        expand1: filters of the 1x1 expand convolution.
        expand3: filters of the 3x3 expand convolution (pad 1, size kept).
        initialW: initializer of the three convolutions' weights (default: the reference's).
    """

    def __init__(
        self,
        in_channels: int,
        squeeze: int,
        expand1: int,
        expand3: int,
        initialW: chainer.Initializer | None = None,
    ) -> None:
        super().__init__()
        self.out_channels = expand1 + expand3
        with self.init_scope():
            self.squeeze = BNReLUConv(in_channels, squeeze, 1, initialW=initialW)
            self.expand1 = BNReLUConv(squeeze, expand1, 1, initialW=initialW)
            self.expand3 = BNReLUConv(squeeze, expand3, 3, pad=1, initialW=initialW)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        h = self.squeeze(x)
        return F.concat((self.expand1(h), self.expand3(h)), axis=1)

    def forward_nhwc(self, x: chainer.Variable, bypass: bool = False) -> chainer.Variable:
        """The same on NHWC NumPy activations; both expands write into one output array.

        ``bypass`` adds the input to the output (SqueezeNet's simple bypass) inside the
        expands' GEMMs, without a pass of its own. The two expands' batch normalizations of
        the squeeze output run as one node (statistics and gradient passes shared), and the
        bypass's gradient joins the squeeze's batch-norm gradient in its pass. For inference
        (``nhwc.inferring``) each batch normalization runs inside its convolution.
        """
        if nhwc.inferring():
            h = nhwc.bn_relu_convolutions([self.squeeze], x)
            expands = [self.expand1, self.expand3]
            return nhwc.bn_relu_convolutions(expands, h, bypass=x if bypass else None)
        if bypass:
            h, x = nhwc.bn_relus((self.squeeze.bn,), x, passthrough=True)
        else:
            (h,) = nhwc.bn_relus((self.squeeze.bn,), x)
        h = nhwc.convolution(self.squeeze.conv, h)
        expands = (self.expand1, self.expand3)
        hs = nhwc.bn_relus([unit.bn for unit in expands], h)
        pairs = [(unit.conv, a) for unit, a in zip(expands, hs, strict=True)]
        return nhwc.concat_convolutions(pairs, bypass=x if bypass else None)
