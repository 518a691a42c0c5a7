"""Max pooling of NHWC activations in one compiled pass, with Chainer's exact results.

The forward pass keeps, per output, the argmax as its window offset ``i * k + j`` in an
int8 array (a quarter of an int32 index) and not the input; the backward pass is a gather
(each input pixel sums the outputs whose argmax it is), so it needs no atomics and no
zero-filled scatter target. Output size, -inf padding and tie-breaking follow
``F.max_pooling_2d`` with ``cover_all=True``: the first maximum in window order, NaN winning
(tested). The gradient is itself differentiable (double backprop), as Chainer's is.
"""

import chainer
import numpy as np
from chainer import function_node
from chainer.utils import conv

from layers import graph, kernels, workspace


class _Window:
    """Window size, stride, padding, input shape and argmax offsets of one pooling call."""

    def __init__(self, ksize: int, stride: int, pad: int) -> None:
        if ksize * ksize > 127:
            raise ValueError(f'window {ksize}x{ksize} is too large for int8 offsets')
        self.k, self.s, self.p = ksize, stride, pad
        self.in_shape: tuple = ()
        self.index: np.ndarray | None = None


class MaxPoolingNHWC(function_node.FunctionNode):
    """Square max pooling of an NHWC input (``cover_all=True``)."""

    def __init__(self, ksize: int, stride: int, pad: int) -> None:
        self.window = _Window(ksize, stride, pad)

    def forward_cpu(self, inputs):
        (x,) = inputs
        x = np.ascontiguousarray(x)
        n, h, w, c = x.shape
        win = self.window
        out_h = conv.get_conv_outsize(h, win.k, win.s, win.p, cover_all=True)
        out_w = conv.get_conv_outsize(w, win.k, win.s, win.p, cover_all=True)
        y = workspace.array((n, out_h, out_w, c), x.dtype)
        win.index, win.in_shape = np.empty(y.shape, np.int8), x.shape
        kernels.max_pool(x, y, win.index, win.k, win.s, win.p)
        return (y,)

    def backward(self, indexes, grad_outputs):
        return MaxPoolingNHWCGrad(self.window).apply(grad_outputs)


class MaxPoolingNHWCGrad(function_node.FunctionNode):
    """The gradient of max pooling: gather the output gradient at each argmax."""

    def __init__(self, window: _Window) -> None:
        self.window = window

    def forward_cpu(self, inputs):
        (gy,) = inputs
        win = self.window
        gx = workspace.array(win.in_shape, gy.dtype)
        kernels.max_pool_grad(np.ascontiguousarray(gy), win.index, gx, win.k, win.s, win.p)
        return (gx,)

    def backward(self, indexes, grad_outputs):
        return MaxPoolingNHWCSelect(self.window).apply(grad_outputs)


class MaxPoolingNHWCSelect(function_node.FunctionNode):
    """Each window's argmax value: the gradient of ``MaxPoolingNHWCGrad`` (double backprop)."""

    def __init__(self, window: _Window) -> None:
        self.window = window

    def forward_cpu(self, inputs):
        (ggx,) = inputs
        win = self.window
        out = np.empty(win.index.shape, ggx.dtype)
        kernels.max_pool_select(np.ascontiguousarray(ggx), win.index, out, win.k, win.s, win.p)
        return (out,)

    def backward(self, indexes, grad_outputs):
        return MaxPoolingNHWCGrad(self.window).apply(grad_outputs)


def max_pooling_nhwc(x, ksize: int, stride: int, pad: int) -> chainer.Variable:
    """Square max pooling of an NHWC ``x`` with Chainer's ``cover_all=True`` semantics."""
    return graph.apply(MaxPoolingNHWC(ksize, stride, pad), (x,))[0]
