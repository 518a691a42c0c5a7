"""Max pooling for NumPy arrays, bit-identical to Chainer's and several times faster.

Chainer's CPU max pooling builds an im2col copy of every window and reduces it along a
strided axis. Here the padded input is split once into its ``stride x stride`` phases
(contiguous copies), so each of the ``k * k`` window offsets becomes a unit-stride slice
of one phase, and the max is a running ``np.maximum`` over those slices. The results equal
``F.max_pooling_2d`` with ``cover_all=True`` exactly, the gradient included: ties go to
the first maximum in window order and NaN wins, as NumPy's argmax decides there. CuPy
arrays go to Chainer's own pooling (its CUDA kernel or cuDNN).
"""

import chainer
import chainer.functions as F
import numpy as np
from chainer import function_node
from chainer.utils import conv


def max_pooling_2d(x, ksize: int, stride: int, pad: int, fast: bool = True) -> chainer.Variable:
    """Square max pooling with Chainer's default ``cover_all=True``.

    Args:
        x: input (N, C, H, W).
        ksize: window side.
        stride: step between windows.
        pad: -inf padding at the top and left (and as much as cover_all needs after).
        fast: use the NumPy fast path for NumPy arrays; False always uses Chainer's.
    """
    array = x.array if isinstance(x, chainer.Variable) else x
    if fast and isinstance(array, np.ndarray):
        return MaxPooling2D(ksize, stride, pad).apply((x,))[0]
    return F.max_pooling_2d(x, ksize, stride=stride, pad=pad)


class _Geometry:
    """Output size, padding and the phase layout of one pooling call."""

    def __init__(self, in_shape: tuple, ksize: int, stride: int, pad: int) -> None:
        n, c, h, w = in_shape
        self.k, self.s, self.p = ksize, stride, pad
        self.in_shape = in_shape
        self.out_h = conv.get_conv_outsize(h, ksize, stride, pad, cover_all=True)
        self.out_w = conv.get_conv_outsize(w, ksize, stride, pad, cover_all=True)
        self.padded_shape = (
            n,
            c,
            stride * (self.out_h - 1) + ksize,
            stride * (self.out_w - 1) + ksize,
        )

    def inner(self, padded: np.ndarray) -> np.ndarray:
        """The input's region of a padded array."""
        _, _, h, w = self.in_shape
        return padded[:, :, self.p : self.p + h, self.p : self.p + w]

    def phases(self, padded: np.ndarray) -> dict:
        """Contiguous copies of ``padded[:, :, a::s, b::s]`` for every phase (a, b)."""
        s = self.s
        return {
            (a, b): np.ascontiguousarray(padded[:, :, a::s, b::s])
            for a in range(s)
            for b in range(s)
        }

    def zero_phases(self, dtype) -> dict:
        """Zero arrays shaped like ``phases`` returns."""
        _, _, ph, pw = self.padded_shape
        n, c = self.in_shape[:2]
        s = self.s
        return {
            (a, b): np.zeros((n, c, -(-(ph - a) // s), -(-(pw - b) // s)), dtype=dtype)
            for a in range(s)
            for b in range(s)
        }

    def offsets(self):
        """(window offset, phase, row start, column start) in window order."""
        for i in range(self.k):
            for j in range(self.k):
                yield i * self.k + j, (i % self.s, j % self.s), i // self.s, j // self.s

    def window(self, phase: np.ndarray, row: int, col: int) -> np.ndarray:
        return phase[:, :, row : row + self.out_h, col : col + self.out_w]

    def unphase(self, phases: dict, dtype) -> np.ndarray:
        """Interleave phase arrays back into one padded array."""
        padded = np.empty(self.padded_shape, dtype=dtype)
        for (a, b), phase in phases.items():
            padded[:, :, a :: self.s, b :: self.s] = phase
        return padded


class MaxPooling2D(function_node.FunctionNode):
    """Max pooling on NumPy arrays; keeps the argmax offsets for the backward pass."""

    def __init__(self, ksize: int, stride: int, pad: int) -> None:
        self.ksize, self.stride, self.pad = ksize, stride, pad

    def forward_cpu(self, inputs):
        (x,) = inputs
        g = self.geometry = _Geometry(x.shape, self.ksize, self.stride, self.pad)
        padded = np.full(g.padded_shape, -np.inf, dtype=x.dtype)
        g.inner(padded)[...] = x
        phases = g.phases(padded)
        windows = [(offset, g.window(phases[ph], r, c)) for offset, ph, r, c in g.offsets()]
        y = windows[0][1].copy()
        for _, view in windows[1:]:
            np.maximum(y, view, out=y)  # propagates NaN, like argmax picking it
        index = np.empty(y.shape, dtype=np.int16)
        nan = np.isnan(y)
        has_nan = bool(nan.any())
        for offset, view in reversed(windows):  # the first maximum in window order wins
            hit = view == y
            if has_nan:
                hit |= nan & np.isnan(view)
            np.copyto(index, offset, where=hit)
        self.index = index
        return (y,)

    def backward(self, indexes, grad_outputs):
        return MaxPooling2DGrad(self.geometry, self.index).apply(grad_outputs)


class MaxPooling2DGrad(function_node.FunctionNode):
    """Scatters the output gradient to each window's argmax (summed where windows overlap)."""

    def __init__(self, geometry: _Geometry, index: np.ndarray) -> None:
        self.geometry, self.index = geometry, index

    def forward_cpu(self, inputs):
        (gy,) = inputs
        g = self.geometry
        phases = g.zero_phases(gy.dtype)
        for offset, ph, r, c in g.offsets():
            g.window(phases[ph], r, c)[...] += np.where(self.index == offset, gy, 0)
        return (np.ascontiguousarray(g.inner(g.unphase(phases, gy.dtype))),)

    def backward(self, indexes, grad_outputs):
        return MaxPooling2DGather(self.geometry, self.index).apply(grad_outputs)


class MaxPooling2DGather(function_node.FunctionNode):
    """Picks each window's argmax value: the gradient of the scatter (double backprop)."""

    def __init__(self, geometry: _Geometry, index: np.ndarray) -> None:
        self.geometry, self.index = geometry, index

    def forward_cpu(self, inputs):
        (ggx,) = inputs
        g = self.geometry
        padded = np.zeros(g.padded_shape, dtype=ggx.dtype)
        g.inner(padded)[...] = ggx
        phases = g.phases(padded)
        out = np.zeros(self.index.shape, dtype=ggx.dtype)
        for offset, ph, r, c in g.offsets():
            np.copyto(out, g.window(phases[ph], r, c), where=self.index == offset)
        return (out,)

    def backward(self, indexes, grad_outputs):
        return MaxPooling2DGrad(self.geometry, self.index).apply(grad_outputs)
