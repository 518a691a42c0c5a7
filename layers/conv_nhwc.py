"""Convolutions on NHWC activations as BLAS GEMMs, several written into one concat buffer.

Activations are (N, H, W, C), C-contiguous; weights stay in Chainer's (O, C, kh, kw) layout
so links, optimizers and snapshots see nothing new. With M = N * out_h * out_w pixels:

- a 1x1 stride-1 convolution is ``y[M, O] = x[M, C] @ W[O, C].T``: no copy at all, and its
  gradients are two more GEMMs (``gx = gy @ W``, ``gW = gy.T @ x``);
- a k x k convolution is ``im2col`` (compiled, zero padding included) into a matrix
  ``col[M, kh*kw*C]`` ordered (i, j, c) like the NHWC input, then a GEMM; its input
  gradient is ``gcol = gy @ W`` and a compiled gather ``col2im``.

Both run in blocks of a few images per thread (``layers.conv_blocks``: each block's columns
multiplied while in the thread's cache). A stride-1 k x k convolution of few channels (a
CIFAR ResNet's) skips im2col altogether: one GEMM per kernel tap on the zero-padded image,
shifted (``conv_blocks.forward_shifted``, where ``conv_blocks.shifted_pays``). Where BLAS
cannot be called from the kernels' threads (``conv_blocks.available``), the whole batch's
im2col goes into a reused scratch matrix and one multi-threaded GEMM runs over it instead:
same results.

Several convolutions with the same output size (a Fire module's two expands) write into
column slices of one output array, so the concatenation costs nothing.

Where oneDNN loads (``layers.onednn``), convolutions of ``onednn.MIN_FLOPS`` and more (every
one) run on its kernels instead, forward and backward: a 1x1 branch's slice as a matmul
written in place, any other branch's through a dense temporary.
"""

from dataclasses import dataclass

import chainer
import chainer.functions as F
import numpy as np
from chainer import function_node
from chainer.utils import conv, type_check

from layers import blas, conv_blocks, graph, kernels, onednn, workspace
from layers.fallback import plain_grads, wants_graph


@dataclass(frozen=True)
class Branch:
    """One convolution of a ``ConvolutionsNHWC``: stride, padding, and whether it has a bias."""

    stride: int = 1
    pad: int = 0
    bias: bool = True


class ConvolutionsNHWC(function_node.FunctionNode):
    """Convolutions of NHWC inputs, outputs concatenated along the channels (one array).

    Inputs: for each branch ``x, W`` and, when the branch has a bias, ``b``; then, with
    ``bypass``, an array of the output's shape added to it (a residual connection). All
    branches must give the same output height and width.

    The output is filled with the biases (plus the bypass) first and every GEMM adds its
    product onto it (``blas.gemm(..., accumulate=True)``), so neither the bias nor the
    bypass costs a pass over the output of its own.

    ``normalize``: per branch, None or a (scale, shift) pair of constants: that branch
    convolves relu(x * scale + shift) (a batch normalization in test mode and its ReLU),
    applied inside the blocked kernels as the columns are written (``conv_blocks``), so the
    normalized input never goes to memory. Its gradients come from Chainer's functions.
    """

    def __init__(self, branches: tuple, bypass: bool = False, normalize=None) -> None:
        self.branches = tuple(branches)
        self.bypass = bypass
        self.normalize = tuple(normalize) if normalize else (None,) * len(self.branches)

    def _split(self, inputs: tuple) -> list:
        """(x, W, b or None) per branch, from the flat input tuple."""
        return [
            (inputs[ix], inputs[iw], None if ib is None else inputs[ib])
            for ix, iw, ib in self.positions()
        ]

    def positions(self) -> list:
        """Index of (x, W, b) of each branch in the flat input tuple (b: None if absent)."""
        out, i = [], 0
        for branch in self.branches:
            out.append((i, i + 1, i + 2 if branch.bias else None))
            i += 3 if branch.bias else 2
        return out

    def _bypass_index(self) -> int:
        return sum(3 if branch.bias else 2 for branch in self.branches)

    def check_type_forward(self, in_types):
        n = self._bypass_index()
        type_check.expect(in_types.size() == n + int(self.bypass))
        for x_type, w_type, b_type in self._split(tuple(in_types)):
            type_check.expect(
                x_type.dtype.kind == 'f',
                w_type.dtype == x_type.dtype,
                x_type.ndim == 4,
                w_type.ndim == 4,
                x_type.shape[3] == w_type.shape[1],
            )
            if b_type is not None:
                type_check.expect(b_type.dtype == x_type.dtype, b_type.ndim == 1)
        if self.bypass:
            type_check.expect(in_types[n].dtype == in_types[0].dtype, in_types[n].ndim == 4)

    def _geometry(self, x: np.ndarray, w: np.ndarray, branch: Branch) -> tuple:
        n, h, width, _ = x.shape
        _, _, kh, kw = w.shape
        out_h = conv.get_conv_outsize(h, kh, branch.stride, branch.pad)
        out_w = conv.get_conv_outsize(width, kw, branch.stride, branch.pad)
        return n, out_h, out_w

    def _by_onednn(self, x: np.ndarray, w: np.ndarray, branch: Branch) -> bool:
        """Whether oneDNN runs this convolution (``onednn.available`` and ``onednn.pays``)."""
        n, out_h, out_w = self._geometry(x, w, branch)
        return onednn.available(x.dtype) and onednn.pays(2.0 * n * out_h * out_w * w.size)

    def forward_cpu(self, inputs):
        n_args = self._bypass_index()
        self.retain_inputs(tuple(range(n_args)))
        parts = self._split(inputs)
        branches = zip(parts, self.branches, strict=True)
        shapes = {self._geometry(x, w, br) for (x, w, _), br in branches}
        if len(shapes) != 1:
            raise ValueError(f'branches give different output sizes: {sorted(shapes)}')
        (n, out_h, out_w) = shapes.pop()
        channels = sum(w.shape[0] for _, w, _ in parts)
        dtype = parts[0][0].dtype
        y = workspace.array((n, out_h, out_w, channels), dtype)
        y2 = y.reshape(-1, channels)
        bypass = None
        if self.bypass:
            bypass = inputs[n_args]
            if bypass.shape != y.shape:
                raise ValueError(f'bypass of shape {bypass.shape} onto {y.shape}')
            bypass = np.ascontiguousarray(bypass).reshape(-1, channels)
        biases = [np.zeros(w.shape[0], dtype) if b is None else b for _, w, b in parts]
        if conv_blocks.available(dtype):
            start = 0
            for (x, w, _), branch, bias, norm in zip(
                parts, self.branches, biases, self.normalize, strict=True
            ):
                stop = start + w.shape[0]
                if self._by_onednn(x, w, branch):
                    self._forward_onednn(x, w, branch, y, start, bias, bypass, norm)
                else:
                    onto = np.empty((0, 0), dtype) if bypass is None else bypass
                    self._forward_blocks(x, w, branch, y2, start, bias, onto, norm)
                start = stop
            return (y,)
        parts = [
            (x if norm is None else _normalized(x, *norm), w, b)
            for (x, w, b), norm in zip(parts, self.normalize, strict=True)
        ]
        accumulate = self.bypass or any(b is not None for _, _, b in parts)
        if accumulate:
            bias = np.concatenate(biases)
            if bypass is not None:
                kernels.fill_rows_add(y2, bias, bypass)
            else:
                kernels.fill_rows(y2, bias)
        start = 0
        for (x, w, _), branch in zip(parts, self.branches, strict=True):
            stop = start + w.shape[0]
            cols = self._columns(x, w, branch)
            blas.gemm(cols, _weight_matrix(w).T, y2[:, start:stop], accumulate=accumulate)
            start = stop
        return (y,)

    def _block_args(self, x, w, branch: Branch, staged: bool = False) -> tuple:
        """(contiguous x, weight matrix, column buffers, images a block, geometry, direct)
        for the ``conv_blocks`` kernels; ``staged``: a 1x1 convolution's rows are copied
        into the buffers too (normalized)."""
        x = np.ascontiguousarray(x)
        n, out_h, out_w = self._geometry(x, w, branch)
        _, _, kh, kw = w.shape
        direct = _pointwise(w, branch)
        wm = np.ascontiguousarray(_weight_matrix(w))
        k = wm.shape[1]
        least = 0 if direct else conv_blocks.MIN_ROWS
        imgs = conv_blocks.images_per_block(out_h * out_w, k, x.itemsize, n, least)
        shape = (
            (conv_blocks.threads(), 1, 1)
            if direct and not staged
            else (conv_blocks.threads(), imgs * out_h * out_w, k)
        )
        cols = workspace.scratch('col', shape, x.dtype)
        s, p = branch.stride, branch.pad
        return x, wm, cols, imgs, (kh, kw, s, s, p, p, out_h, out_w), direct

    def _forward_onednn(self, x, w, branch: Branch, y, start, bias, bypass, norm) -> None:
        """The branch's channels of ``y`` (from ``start``) = conv(x) + bias (+ the same
        columns of the 2-D ``bypass``) by oneDNN; with ``norm``, conv(relu(x * scale +
        shift)), the normalized input written once.

        The kernel adds a bypass as it writes its result (a binary post-op reading the
        bypass where it lies), where the destination is all of ``y`` or a 1x1 branch's
        columns of it (a Fire module's expand, a matmul straight into them). oneDNN's
        convolutions write dense arrays only (and read a binary post-op's operand dense
        only), so any other branch of a wider output writes a dense temporary, then copied
        into its columns with the bypass added (``kernels.copy_columns``, one pass)."""
        x = np.ascontiguousarray(x)
        if norm is not None:
            x = _normalized(x, *norm, out=workspace.scratch('onednn_x', x.shape, x.dtype))
        o, c = w.shape[:2]
        channels = y.shape[3]
        columns = y.reshape(-1, channels)[:, start : start + o]
        added = None if bypass is None else bypass[:, start : start + o]
        w, bias = np.ascontiguousarray(w), np.ascontiguousarray(bias)
        if o < channels and _pointwise(w, branch):
            product = onednn.matmul(columns.shape[0], c, o, channels, added is not None)
            product.run_forward(x.reshape(-1, c), w.reshape(o, c), bias, columns, added)
            return
        whole = o == channels
        convolution = onednn.convolution(
            x.shape, w.shape, branch.stride, branch.pad, True, whole and added is not None
        )
        if whole:
            convolution.run_forward(x, w, bias, y, added)
            return
        out = workspace.scratch('onednn_dense', y.shape[:3] + (o,), y.dtype)
        convolution.run_forward(x, w, bias, out)
        _into_columns(columns, out.reshape(-1, o), added)

    def _forward_blocks(self, x, w, branch: Branch, out, start, bias, onto, norm) -> None:
        """The branch's columns of ``out`` (2-D, from ``start``) = conv(x) + bias (+ the
        same columns of ``onto``, when it has rows), image blocks per thread; with ``norm``
        (scale, shift), conv(relu(x * scale + shift))."""
        scale, shift = (np.empty(0, x.dtype),) * 2 if norm is None else norm
        if _shifted(x, w, branch):
            x, n, out_h, out_w = np.ascontiguousarray(x), *self._geometry(x, w, branch)
            threads = conv_blocks.threads()
            chunks = -(-threads // n)  # bands of rows an image: every thread has work
            rows = -(-out_h // chunks)
            (_, _, width, c), (o, _, kh, kw), p = x.shape, w.shape, branch.pad
            slabs = workspace.scratch(
                'slab', (threads, (rows + kh - 1) * (width + 2 * p) * c), x.dtype
            )
            wides = workspace.scratch('wide', (threads, rows * (width + 2 * p) * o), x.dtype)
            wt = np.ascontiguousarray(_weight_matrix(w).T)
            with blas.one_thread():
                conv_blocks.forward_shifted(
                    x, scale, shift, wt, bias, onto, out, start, slabs, wides, chunks,
                    kh, kw, p, p, out_h, out_w,
                )  # fmt: skip
            return
        x, wm, cols, imgs, geometry, direct = self._block_args(x, w, branch, norm is not None)
        with blas.one_thread():
            conv_blocks.forward(
                x, scale, shift, wm, bias, onto, out, start, cols, imgs, *geometry, direct
            )

    def _columns(self, x: np.ndarray, w: np.ndarray, branch: Branch) -> np.ndarray:
        """The GEMM's left operand: x itself for a 1x1 stride-1 conv, else im2col (scratch)."""
        x = np.ascontiguousarray(x)
        _, c, kh, kw = w.shape
        if _pointwise(w, branch):
            return x.reshape(-1, c)
        n, out_h, out_w = self._geometry(x, w, branch)
        col = workspace.scratch('col', (n * out_h * out_w, kh * kw * c), x.dtype)
        s, p = branch.stride, branch.pad
        conv_blocks.im2col(x, col, kh, kw, s, s, p, p, out_h, out_w)
        return col

    def backward(self, indexes, grad_outputs):
        inputs = self.get_retained_inputs()
        (gy,) = grad_outputs
        wanted, grads = tuple(indexes), {}
        if self.bypass and self._bypass_index() in indexes:
            grads[self._bypass_index()] = gy  # the bypass's gradient is gy itself
            indexes = tuple(i for i in indexes if i != self._bypass_index())
        if wants_graph() or any(norm is not None for norm in self.normalize):
            if indexes:
                plain = plain_grads(self.plain, inputs, indexes, grad_outputs)
                grads.update(zip(indexes, plain, strict=True))
            return _ordered(grads, wanted)
        gy2 = np.ascontiguousarray(gy.array).reshape(-1, gy.shape[3])
        start = 0
        parts = self._split(tuple(v.array for v in inputs))
        for (x, w, _), branch, (ix, iw, ib) in zip(
            parts, self.branches, self.positions(), strict=True
        ):
            stop = start + w.shape[0]
            g = gy2[:, start:stop]
            by_onednn = self._by_onednn(x, w, branch)
            if by_onednn or conv_blocks.available(g.dtype):
                wanted_here = {i: i in indexes for i in (ix, iw, ib) if i is not None}
                backward = self._backward_onednn if by_onednn else self._backward_blocks
                grads.update(backward(x, w, gy2, start, branch, (ix, iw, ib), wanted_here))
                start = stop
                continue
            start = stop
            if ib is not None and ib in indexes:
                grads[ib] = _ones(g.shape[0], g.dtype) @ g  # a GEMV: the column sums
            wm = _weight_matrix(w)
            if iw in indexes:
                gw = np.matmul(g.T, self._columns(x, w, branch))
                grads[iw] = _weight_from_matrix(gw, w.shape)
            if ix in indexes:
                grads[ix] = self._grad_x(g, x, w, wm, branch)
        return _ordered(grads, wanted)

    def _backward_onednn(self, x, w, gy2, start, branch, index: tuple, wanted: dict) -> dict:
        """The gradients of one branch that ``wanted`` asks for, by oneDNN; the branch's
        output gradient is ``gy2``'s columns from ``start`` (copied out where it has others)."""
        ix, iw, ib = index
        x, w = np.ascontiguousarray(x), np.ascontiguousarray(w)
        o = w.shape[0]
        whole = o == gy2.shape[1]
        convolution = onednn.convolution(
            x.shape, w.shape, branch.stride, branch.pad, True, self.bypass and whole
        )
        g = gy2
        if not whole:
            g = workspace.scratch('onednn_dense', (gy2.shape[0], o), gy2.dtype)
            np.copyto(g, gy2[:, start : start + o])
        gy = g.reshape(convolution.y_shape)
        want_w = wanted[iw] or (ib is not None and wanted[ib])
        gx, gw, gb = convolution.run_backward(x, w, gy, wanted[ix], want_w)
        grads = {ix: gx} if wanted[ix] else {}
        if wanted[iw]:
            grads[iw] = gw
        if ib is not None and wanted[ib]:
            grads[ib] = gb
        return grads

    def _backward_blocks(self, x, w, gy2, start, branch, index: tuple, wanted: dict) -> dict:
        """The gradients of one branch that ``wanted`` asks for, image blocks per thread;
        the branch's output gradient is ``gy2``'s columns from ``start``."""
        ix, iw, ib = index
        dtype = gy2.dtype
        shifted = _shifted(x, w, branch)
        if shifted:
            x, wm = np.ascontiguousarray(x), np.ascontiguousarray(_weight_matrix(w))
            parts = conv_blocks.threads()
        else:
            x, wm, cols, imgs, geometry, direct = self._block_args(x, w, branch)
            parts = cols.shape[0]
        o, k = wm.shape
        gw = np.zeros((parts if wanted[iw] else 0, o, k), dtype)
        gb = np.zeros((parts if ib is not None and wanted[ib] else 0, o), np.float64)
        gx = workspace.array(x.shape, dtype) if wanted[ix] else np.empty((0, 1, 1, 1), dtype)
        if shifted:
            _, out_h, out_w = self._geometry(x, w, branch)
            (_, h, width, c), (_, _, kh, kw), p = x.shape, w.shape, branch.pad
            padded = (h + 2 * p) * (width + 2 * p) * c
            slabs = workspace.scratch('slab', (parts, padded), dtype)
            wides = workspace.scratch('wide', (parts, out_h * (width + 2 * p) * o), dtype)
            gxps = workspace.scratch('gxp', (parts, padded), dtype)
            with blas.one_thread():
                conv_blocks.backward_shifted(
                    x, wm, gy2, start, gw, gb, gx, slabs, wides, gxps, kh, kw, p, p, out_h, out_w
                )
        else:
            with blas.one_thread():
                conv_blocks.backward(x, wm, gy2, start, gw, gb, gx, cols, imgs, *geometry, direct)
        grads = {}
        if wanted[iw]:
            grads[iw] = _weight_from_matrix(gw.sum(axis=0), w.shape)
        if ib is not None and wanted[ib]:
            grads[ib] = gb.sum(axis=0).astype(dtype)
        if wanted[ix]:
            grads[ix] = gx
        return grads

    def _grad_x(self, g, x, w, wm, branch: Branch) -> np.ndarray:
        _, c, kh, kw = w.shape
        if _pointwise(w, branch):
            gx = workspace.array(x.shape, g.dtype)
            np.matmul(g, wm, out=gx.reshape(g.shape[0], wm.shape[1]))
            return gx
        n, out_h, out_w = self._geometry(x, w, branch)
        gcol = workspace.scratch('gcol', (g.shape[0], wm.shape[1]), x.dtype)
        np.matmul(g, wm, out=gcol)
        gx = workspace.array(x.shape, x.dtype)
        s, p = branch.stride, branch.pad
        conv_blocks.col2im(gcol, gx, kh, kw, s, s, p, p, out_h, out_w)
        return gx

    def plain(self, *inputs):
        """The same function from Chainer's differentiable functions (for double backprop).

        Written as ``F.im2col`` and ``F.matmul`` rather than ``F.convolution_2d``: Chainer
        7.8.1's CPU deconvolution cannot be differentiated for its weight alone (its
        ``backward`` passes Variables where shapes are expected), and that is the second
        derivative a convolution's gradient needs when its output gradient is constant.
        """
        ys = []
        parts = self._split(tuple(inputs))
        for (x, w, b), branch, norm in zip(parts, self.branches, self.normalize, strict=True):
            if norm is not None:
                scale, shift = (F.broadcast_to(a, x.shape) for a in norm)
                x = F.relu(x * scale + shift)
            n, _, _, c = x.shape
            o, _, kh, kw = w.shape
            col = F.im2col(F.transpose(x, (0, 3, 1, 2)), (kh, kw), branch.stride, branch.pad)
            _, k, out_h, out_w = col.shape
            col = F.reshape(F.transpose(col, (0, 2, 3, 1)), (-1, k))
            y = F.matmul(col, F.reshape(w, (o, k)), transb=True)
            if b is not None:
                y = F.bias(y, b)
            ys.append(F.reshape(y, (n, out_h, out_w, o)))
        return (F.concat(ys, axis=3) if len(ys) > 1 else ys[0],)


PARALLEL_COPY = 1 << 20
"""Values from which a dense result is copied into its columns by the parallel kernel
(``kernels.copy_columns``); below it NumPy's one-thread copy is as fast (1 to 7 us less
at one image's sizes, measured here). A bypass is always added by the kernel: NumPy's
strided add is 2 to 3 times slower from 50 000 values on."""


def _into_columns(columns: np.ndarray, dense: np.ndarray, added) -> None:
    """columns = dense (+ added, a bypass's columns, when given)."""
    if added is None and dense.size < PARALLEL_COPY:
        np.copyto(columns, dense)
        return
    kernels.copy_columns(columns, dense, np.empty((0, 0), dense.dtype) if added is None else added)


def _pointwise(w: np.ndarray, branch: Branch) -> bool:
    """A 1x1 stride-1 convolution without padding: a GEMM on x's rows as they are."""
    return w.shape[2] == w.shape[3] == 1 and branch.stride == 1 and branch.pad == 0


def _shifted(x: np.ndarray, w: np.ndarray, branch: Branch) -> bool:
    """Whether this convolution runs as shifted GEMMs (``conv_blocks.shifted_pays``)."""
    _, h, width, c = x.shape
    o, _, kh, kw = w.shape
    return conv_blocks.shifted_pays(c, o, h, width, kh, kw, branch.stride)


def _normalized(x: np.ndarray, scale: np.ndarray, shift: np.ndarray, out=None) -> np.ndarray:
    """relu(x * scale + shift) over the last axis of an NHWC x (into ``out``, else a new
    array)."""
    c = x.shape[-1]
    out = np.empty(x.shape, x.dtype) if out is None else out
    x2 = np.ascontiguousarray(x).reshape(-1, c)
    kernels.scale_shift_relu(x2, scale[None], shift[None], out.reshape(1, -1, c), 0.0)
    return out


def _ordered(grads: dict, wanted: tuple) -> tuple:
    """The gradients Chainer asked for, in its order, arrays wrapped as Variables."""
    return tuple(
        g if g is None or isinstance(g, chainer.Variable) else chainer.Variable(g)
        for g in (grads.get(i) for i in wanted)
    )


def _ones(n: int, dtype) -> np.ndarray:
    """A read-only vector of ``n`` ones (kept: the bias gradients' GEMV needs one per size)."""
    ones = _ONES.get((n, np.dtype(dtype).str))
    if ones is None:
        ones = _ONES[n, np.dtype(dtype).str] = np.ones(n, dtype)
        ones.flags.writeable = False
    return ones


_ONES: dict = {}


def _weight_matrix(w: np.ndarray) -> np.ndarray:
    """W (O, C, kh, kw) as the GEMM's (O, kh*kw*C) matrix, columns in im2col's order."""
    o = w.shape[0]
    if w.shape[2] == w.shape[3] == 1:
        return w.reshape(o, -1)
    return np.ascontiguousarray(w.transpose(0, 2, 3, 1)).reshape(o, -1)


def _weight_from_matrix(gw: np.ndarray, shape: tuple) -> np.ndarray:
    """The inverse of ``_weight_matrix``: an (O, kh*kw*C) gradient back to (O, C, kh, kw)."""
    o, c, kh, kw = shape
    return np.ascontiguousarray(gw.reshape(o, kh, kw, c).transpose(0, 3, 1, 2))


def convolutions_nhwc(branches, args, bypass=None, normalize=None) -> chainer.Variable:
    """Apply ``ConvolutionsNHWC(branches)`` to the flat ``args`` (x, W[, b] per branch),
    plus ``bypass`` (added to the output) when given; ``normalize`` as the node takes it."""
    node = ConvolutionsNHWC(tuple(branches), bypass=bypass is not None, normalize=normalize)
    return graph.apply(node, tuple(args) if bypass is None else (*args, bypass))[0]
