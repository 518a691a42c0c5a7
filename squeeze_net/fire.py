"""SqueezeNet's Fire module, every convolution a BN-ReLU-Conv unit."""

import chainer
import chainer.functions as F

from layers import BNReLUConv, layout


class Fire(chainer.Chain):
    """SqueezeNet's Fire module: a 1x1 squeeze, then 1x1 and 3x3 expands concatenated.

    Every convolution is a BN-ReLU-Conv unit; the output has ``expand1 + expand3`` channels,
    the 1x1 expand first, plus the input itself with ``bypass`` (the simple bypass).

    On a channels-last NumPy input (``layers.layout``) the module runs its fused CPU path:
    both expands write into one output buffer whose GEMMs start from the bias and the
    bypass (no concatenation, no add pass); the two expands' batch normalizations of the
    squeeze output run as one node, and the bypass's gradient joins the squeeze's
    batch-norm gradient in its pass; at inference each batch normalization runs inside
    its convolution.

    Args:
        in_channels: channels of the input.
        squeeze: filters of the 1x1 squeeze convolution.
        expand1: filters of the 1x1 expand convolution.
        expand3: filters of the 3x3 expand convolution (pad 1, size kept).
        initialW: initializer of the three convolutions' weights (default: the reference's).
        bypass: add the input to the output (needs ``in_channels == expand1 + expand3``).
    """

    def __init__(
        self,
        in_channels: int,
        squeeze: int,
        expand1: int,
        expand3: int,
        initialW: chainer.Initializer | None = None,
        bypass: bool = False,
    ) -> None:
        super().__init__()
        if bypass and in_channels != expand1 + expand3:
            raise ValueError(
                f'a bypass needs {expand1 + expand3} input channels, not {in_channels}'
            )
        self.out_channels = expand1 + expand3
        self.bypass = bypass
        with self.init_scope():
            self.squeeze = BNReLUConv(in_channels, squeeze, 1, initialW=initialW)
            self.expand1 = BNReLUConv(squeeze, expand1, 1, initialW=initialW)
            self.expand3 = BNReLUConv(squeeze, expand3, 3, pad=1, initialW=initialW)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        if layout.takes_fast_path(x):
            return layout.to_nchw(self._fused(layout.ops(), layout.to_nhwc(x)))
        h = self.squeeze(x)
        y = F.concat((self.expand1(h), self.expand3(h)), axis=1)
        return y + x if self.bypass else y

    def _fused(self, fast, x: chainer.Variable) -> chainer.Variable:
        """The module on NHWC activations (``layers.nhwc``), fused as the class says."""
        bypass = x if self.bypass else None
        expands = [self.expand1, self.expand3]
        if fast.inferring():
            h = fast.bn_relu_convolutions([self.squeeze], x)
            return fast.bn_relu_convolutions(expands, h, bypass=bypass)
        if self.bypass:
            h, bypass = fast.bn_relus((self.squeeze.bn,), x, passthrough=True)
        else:
            (h,) = fast.bn_relus((self.squeeze.bn,), x)
        h = fast.convolution(self.squeeze.conv, h)
        hs = fast.bn_relus([unit.bn for unit in expands], h)
        pairs = [(unit.conv, a) for unit, a in zip(expands, hs, strict=True)]
        return fast.concat_convolutions(pairs, bypass=bypass)
