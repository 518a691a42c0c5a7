"""3x3 stride-1 pad-1 convolutions on NHWC activations by Winograd's F(2x2, 3x3).

Each 2x2 output tile is ``A^T [(G g G^T) * (B^T d B)] A`` for the 4x4 input tile ``d`` and
the 3x3 filter ``g`` (Lavin and Gray 2016, arXiv 1509.09308): the 9 * 4 multiplications per
tile and channel pair of a direct (im2col) convolution become 16, so the GEMMs, which are
most of a 3x3 layer's time, do 2.25 times less work. The transforms only add, subtract and
halve, so the results stay within a few float32 roundings of im2col's (tested).

The 16 transformed positions are 16 independent GEMMs over (tiles x channels), run as one
stacked ``np.matmul``; the transforms are compiled passes. The input gradient is the same
convolution of the output gradient with the flipped, transposed filter, and the weight
gradient is ``G^T [sum over tiles of (B^T d B) * (A gy A^T)] G``.

Not used by the model: measured on the 2-core AVX-512 machine this project is built on
(``benchmarks/conv3x3.py``, SqueezeNet's eight 3x3 layers at 122 px, batch 64), forward
and both gradients take about twice im2col's time. im2col's single GEMM already runs at
the cores' peak, while here the transformed inputs and products (4x the input, 4x the
output per layer) make three extra passes through memory and the 16 GEMMs have K = C, as
small as 16. It is kept, tested, as the measured alternative; fusing the transforms with
tile-blocked GEMMs (so the 16 products stay in cache) is what could still make it pay.
"""

import numpy as np

from layers import runtime, workspace

runtime.configure()

# isort: split
import numba  # noqa: E402
from numba import prange  # noqa: E402

_jit = numba.njit(cache=True, parallel=True, nogil=True)

G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])


def tiles(h: int, w: int) -> tuple[int, int]:
    """2x2 output tiles along each axis of an h x w output (the last may stick out)."""
    return (h + 1) // 2, (w + 1) // 2


@_jit
def input_transform(x, v, th, tw):
    """v[4*a + b, tile, c] = (B^T d B)[a, b] for each 4x4 input tile d (zero padding 1)."""
    n_img, h, w, c = x.shape
    for row in prange(n_img * th):
        d = np.empty((4, 4, c), x.dtype)  # the tile, channels innermost
        t = np.empty((4, 4, c), x.dtype)
        n, ty = row // th, row % th
        for tx in range(tw):
            tile = row * tw + tx
            for i in range(4):
                yy = 2 * ty - 1 + i
                for j in range(4):
                    xx = 2 * tx - 1 + j
                    if 0 <= yy < h and 0 <= xx < w:
                        d[i, j, :] = x[n, yy, xx, :]
                    else:
                        d[i, j, :] = 0.0
            for j in range(4):  # B^T d
                for k in range(c):
                    t[0, j, k] = d[0, j, k] - d[2, j, k]
                    t[1, j, k] = d[1, j, k] + d[2, j, k]
                    t[2, j, k] = d[2, j, k] - d[1, j, k]
                    t[3, j, k] = d[1, j, k] - d[3, j, k]
            for i in range(4):  # (B^T d) B
                for k in range(c):
                    v[4 * i + 0, tile, k] = t[i, 0, k] - t[i, 2, k]
                    v[4 * i + 1, tile, k] = t[i, 1, k] + t[i, 2, k]
                    v[4 * i + 2, tile, k] = t[i, 2, k] - t[i, 1, k]
                    v[4 * i + 3, tile, k] = t[i, 1, k] - t[i, 3, k]


@_jit
def output_transform(m, y, bias, th, tw):
    """y[2x2 tile] = A^T m A (+ bias) for each tile; outputs past the edge are dropped."""
    n_img, h, w, c = y.shape
    for row in prange(n_img * th):
        n, ty = row // th, row % th
        for tx in range(tw):
            tile = row * tw + tx
            for k in range(c):
                r00 = m[0, tile, k] + m[1, tile, k] + m[2, tile, k]
                r01 = m[1, tile, k] - m[2, tile, k] - m[3, tile, k]
                r10 = m[4, tile, k] + m[5, tile, k] + m[6, tile, k]
                r11 = m[5, tile, k] - m[6, tile, k] - m[7, tile, k]
                r20 = m[8, tile, k] + m[9, tile, k] + m[10, tile, k]
                r21 = m[9, tile, k] - m[10, tile, k] - m[11, tile, k]
                r30 = m[12, tile, k] + m[13, tile, k] + m[14, tile, k]
                r31 = m[13, tile, k] - m[14, tile, k] - m[15, tile, k]
                b = bias[k]
                y0, x0 = 2 * ty, 2 * tx
                y[n, y0, x0, k] = r00 + r10 + r20 + b
                if x0 + 1 < w:
                    y[n, y0, x0 + 1, k] = r01 + r11 + r21 + b
                if y0 + 1 < h:
                    y[n, y0 + 1, x0, k] = r10 - r20 - r30 + b
                    if x0 + 1 < w:
                        y[n, y0 + 1, x0 + 1, k] = r11 - r21 - r31 + b


@_jit
def output_adjoint(gy, z, th, tw):
    """z[4*a + b, tile, c] = (A g A^T)[a, b] for each 2x2 tile g of gy (zero past the edge)."""
    n_img, h, w, c = gy.shape
    zero = gy.dtype.type(0)
    for row in prange(n_img * th):
        n, ty = row // th, row % th
        for tx in range(tw):
            tile = row * tw + tx
            y0, x0 = 2 * ty, 2 * tx
            right, down = x0 + 1 < w, y0 + 1 < h
            for k in range(c):
                g00 = gy[n, y0, x0, k]
                g01 = gy[n, y0, x0 + 1, k] if right else zero
                g10 = gy[n, y0 + 1, x0, k] if down else zero
                g11 = gy[n, y0 + 1, x0 + 1, k] if (right and down) else zero
                # rows of A g: (g0, g0 + g1, g0 - g1, -g1), g0 and g1 the tile's rows
                _adjoint_row(z, 0, tile, k, g00, g01)
                _adjoint_row(z, 1, tile, k, g00 + g10, g01 + g11)
                _adjoint_row(z, 2, tile, k, g00 - g10, g01 - g11)
                _adjoint_row(z, 3, tile, k, -g10, -g11)


@numba.njit(cache=True, inline='always')
def _adjoint_row(z, i, tile, k, p, q):
    """Row i of A g A^T from row i of A g, (p, q): (p, p + q, p - q, -q)."""
    z[4 * i + 0, tile, k] = p
    z[4 * i + 1, tile, k] = p + q
    z[4 * i + 2, tile, k] = p - q
    z[4 * i + 3, tile, k] = -q


def filter_transform(w: np.ndarray) -> np.ndarray:
    """U[4*a + b, c, o] = (G g G^T)[a, b] for each filter g = w[o, c] (float64 inside)."""
    u = np.einsum('ai,ocij,bj->abco', G, w.astype(np.float64), G)
    return np.ascontiguousarray(u.reshape(16, w.shape[1], w.shape[0]), dtype=w.dtype)


def convolve(x: np.ndarray, w: np.ndarray, out: np.ndarray, bias: np.ndarray | None) -> None:
    """out (N, H, W, O), possibly a channel slice, = conv3x3(x, w) + bias, pad 1."""
    n, h, width, c = x.shape
    th, tw = tiles(h, width)
    count = n * th * tw
    v = workspace.scratch('winograd_in', (16, count, c), x.dtype)
    input_transform(x, v, th, tw)
    m = workspace.scratch('winograd_out', (16, count, w.shape[0]), x.dtype)
    np.matmul(v, filter_transform(w), out=m)
    if bias is None:
        bias = np.zeros(w.shape[0], x.dtype)
    output_transform(m, out, bias, th, tw)


def grad_input(gy: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The gradient for x: gy convolved with the flipped filter, in and out swapped."""
    flipped = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    gx = np.empty(gy.shape[:3] + (w.shape[1],), gy.dtype)
    convolve(np.ascontiguousarray(gy), flipped, gx, None)
    return gx


def grad_filter(x: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """The gradient for w (O, C, 3, 3): G^T [sum over tiles of V * Z] G per (o, c)."""
    n, h, width, c = x.shape
    o = gy.shape[3]
    th, tw = tiles(h, width)
    count = n * th * tw
    v = workspace.scratch('winograd_in', (16, count, c), x.dtype)
    input_transform(x, v, th, tw)
    z = workspace.scratch('winograd_out', (16, count, o), x.dtype)
    output_adjoint(gy, z, th, tw)
    gu = np.matmul(v.transpose(0, 2, 1), z).reshape(4, 4, c, o)  # 16 GEMMs (C, T) x (T, O)
    gw = np.einsum('ai,abco,bj->ocij', G, gu.astype(np.float64), G)
    return np.ascontiguousarray(gw, dtype=x.dtype)
