"""Chainer's convolution and batch-normalization links with the CPU fast path inside.

Subclasses that keep every parameter, name and default of ``L.Convolution2D`` and
``L.BatchNormalization`` (snapshots load either way); on a channels-last NumPy activation
(``layers.layout``) they run the NHWC kernels and return channels-last activations, on
anything else Chainer's own function.
"""

import chainer
import chainer.links as L

from layers import layout


class Convolution2D(L.Convolution2D):
    """``L.Convolution2D`` (same arguments) whose channels-last input takes the GEMM kernels.

    Square strides and padding, no dilation or groups take the fast path; other geometries
    run Chainer's function on either layout.
    """

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        if self.W.array is None:
            self._initialize_params(x.shape[1])
        if layout.takes_fast_path(x):
            fast = layout.ops()
            if fast.supports(self):
                return layout.to_nchw(fast.convolution(self, layout.to_nhwc(x)))
        return super().forward(x)


class BatchNormalization(L.BatchNormalization):
    """``L.BatchNormalization`` (same arguments) whose channels-last input takes one compiled
    pass (statistics in float64, the running averages updated as Chainer does).

    For a normalization with no ReLU after it (a post-activation residual block's last one,
    before the add); where a ReLU follows, ``ConvBNReLU`` and ``BNReLUConv`` fuse the two.
    ``finetune``, a non-default ``axis`` and a missing gamma or beta run Chainer's function.
    """

    def forward(self, x: chainer.Variable, **kwargs) -> chainer.Variable:
        if (
            layout.takes_fast_path(x)
            and not kwargs.get('finetune', False)
            and self.axis is None
            and self.avg_mean is not None
            and self.gamma is not None
            and self.beta is not None
        ):
            return layout.to_nchw(layout.ops().bn(self, layout.to_nhwc(x)))
        return super().forward(x, **kwargs)
