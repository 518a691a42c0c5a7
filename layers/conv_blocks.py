"""Convolutions on NHWC activations in blocks of images, each thread its own im2col and GEMM.

``layers.conv_nhwc`` first wrote a k x k convolution's whole im2col matrix (up to 135 MB
for conv1 at 122 px, batch 64), then ran one GEMM over it on every core: the matrix went
out to memory and back. Here each of the kernel's threads takes a contiguous share of the
images and, a block of a few images at a time (about ``BLOCK_BYTES`` of columns), writes the
block's im2col into a buffer of its own and multiplies it at once, with BLAS held to that
thread (``blas.one_thread``): the columns stay in the core's cache. The backward pass does
the same per block: im2col again, the weight gradient accumulated into the thread's own
partial sum, the column gradient into the same buffer and the block's col2im; the bias
gradient is summed in float64 from the output gradient's rows while they are in cache.
Partial sums are added in thread order, so results depend on the thread count only.

A 1x1 stride-1 convolution needs no im2col: its blocks multiply the input rows as they are.
A stride-1 k x k convolution of few channels needs none either (``forward_shifted``,
``backward_shifted``): each kernel tap is one GEMM on the zero-padded image read at an
offset, the output rows computed as wide as the padded input; the GEMMs are k * k times
shorter, but nothing is copied k * k times, which is what im2col costs at 16 to 32
channels (``shifted_pays`` says where it wins).
The GEMMs are OpenBLAS's own ``cblas_?gemm`` (``blas.address``), registered under a fixed
symbol name when this module is imported, so the compiled kernels can be cached on disk like
the others. Call the kernels only where ``available`` says so: without the symbols they
cannot be linked.
"""

from layers import runtime

runtime.configure()  # before Numba starts its threads

# isort: split
import llvmlite.binding as llvm  # noqa: E402
import numba  # noqa: E402
import numpy as np  # noqa: E402
from numba import prange, types  # noqa: E402

from layers import blas  # noqa: E402

BLOCK_BYTES = 256 << 10
"""Target size of one block's im2col columns (at least one image per block). Measured on
SqueezeNet's convolutions at 122 px (forward and backward, best of 7): 361 to 368 ms at
256 KiB, 375 to 376 at 1 MiB, 393 at 4 MiB."""

FEW_CHANNELS = 8
"""Inputs with fewer channels (images) take the row-copy im2col."""

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
_SYMBOLS = {np.dtype(np.float32): 'layers_cblas_sgemm', np.dtype(np.float64): 'layers_cblas_dgemm'}


def _declare(name: str, real) -> types.ExternalFunction:
    i32, i64, ptr = types.int32, types.int64, types.intp
    return types.ExternalFunction(
        name, types.void(i32, i32, i32, i64, i64, i64, real, ptr, i64, ptr, i64, real, ptr, i64)
    )


_sgemm = _declare('layers_cblas_sgemm', types.float32)
_dgemm = _declare('layers_cblas_dgemm', types.float64)


_REGISTERED: bool | None = None


def available(dtype) -> bool:
    """Whether the blocked kernels can run for ``dtype``: float32 or float64, and both of
    BLAS's gemm functions found (the kernels refer to both) and registered."""
    global _REGISTERED
    if np.dtype(dtype) not in _SYMBOLS:
        return False
    if _REGISTERED is None:
        addresses = {dtype: blas.address(dtype) for dtype in _SYMBOLS}
        _REGISTERED = None not in addresses.values()
        for dtype, address in addresses.items():
            if address is not None:
                llvm.add_symbol(_SYMBOLS[dtype], address)
    return _REGISTERED


available(np.float32)  # the kernels link against the symbols: register them now


def threads() -> int:
    """How many blocks of work the kernels split into: Numba's thread count."""
    return numba.get_num_threads()


MIN_ROWS = 512
"""Rows an im2col block's GEMM gets at least, where images are small: at 8x8 one image is
64 rows, and a GEMM that short runs at two thirds of BLAS's speed. Measured forward +
backward, batch 64, best of 15 (``benchmarks.convs`` shapes, MIN_ROWS 0 against 512):
ResNet-20's 64 -> 64 at 8x8 9.09 -> 6.95 ms, the VGG example's 128 -> 256 and 256 -> 256 at
8x8 48.0 -> 40.5 and 95.1 -> 80.2 ms, SqueezeNet's 64 -> 256 at 9x9 28.6 -> 25.6 ms, its other
shapes unchanged. (Not for 1x1 convolutions: they have no columns to block.)"""


MAX_BLOCK_BYTES = 8 << 20
"""What ``MIN_ROWS`` may make a block's columns grow to (a thread's buffer): 512 rows of a
3x3 convolution of 512 channels are 9 MiB."""


def images_per_block(
    rows_per_image: int, width: int, itemsize: int, n: int, min_rows: int = 0
) -> int:
    """Images per block: about ``BLOCK_BYTES`` of columns, at least one, and at least
    ``min_rows`` rows where that takes more (up to ``MAX_BLOCK_BYTES`` of columns)."""
    per_image = max(rows_per_image * width * itemsize, 1)
    least = min(-(-min_rows // max(rows_per_image, 1)), MAX_BLOCK_BYTES // per_image)
    return int(min(max(BLOCK_BYTES // per_image, least, 1), max(n, 1)))


_inline = numba.njit(cache=True, nogil=True, inline='always')
_jit = numba.njit(cache=True, parallel=True, nogil=True)


@_inline
def _gemm(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc, itemsize):
    """C = op(A) @ op(B) + beta * C, row-major, on raw pointers (float32 or float64)."""
    if m == 0 or n == 0:
        return
    if itemsize == 4:
        _sgemm(
            _ROW_MAJOR, ta, tb, m, n, k, np.float32(1.0), a, lda, b, ldb, np.float32(beta), c, ldc
        )
    else:
        _dgemm(_ROW_MAJOR, ta, tb, m, n, k, 1.0, a, lda, b, ldb, beta, c, ldc)


@_inline
def _relu_affine(v, scale, shift):
    """max(v * scale + shift, 0), NaN kept (the fused batch normalization's arithmetic)."""
    z = v * scale + shift
    return z if (z > 0 or z != z) else 0.0


@_inline
def _im2col(x, col, m0, m1, kh, kw, sy, sx, py, px, out_h, out_w, scale, shift):
    """col[m - m0, (i, j, c)] = x[n, oy*sy - py + i, ox*sx - px + j, c] for the output rows
    m = (n, oy, ox) in m0..m1, 0 outside the image; with ``scale`` (non-empty),
    relu(x * scale + shift) instead of x (0 outside still). Rows, not images: a block may
    start or end inside an image, so one image's rows can be split between threads."""
    _, h, w, c = x.shape
    affine = scale.shape[0] > 0
    if c < FEW_CHANNELS and not affine:
        _im2col_rows(x, col, m0, m1, kh, kw, sy, sx, py, px, out_h, out_w)
        return
    per = out_h * out_w
    for m in range(m0, m1):
        n, r = m // per, m % per
        oy, ox = r // out_w, r % out_w
        row = m - m0
        for i in range(kh):
            y = oy * sy - py + i
            for j in range(kw):
                base = (i * kw + j) * c
                xx = ox * sx - px + j
                if 0 <= y < h and 0 <= xx < w:
                    if affine:
                        for k in range(c):
                            col[row, base + k] = _relu_affine(x[n, y, xx, k], scale[k], shift[k])
                    else:
                        for k in range(c):
                            col[row, base + k] = x[n, y, xx, k]
                else:
                    for k in range(c):
                        col[row, base + k] = 0.0


@_inline
def _im2col_rows(x, col, m0, m1, kh, kw, sy, sx, py, px, out_h, out_w):
    """``_im2col`` for few channels (an image's 3): where a window row lies inside the
    image, its kw * c values are contiguous in x and copied in one loop (2.3 times faster
    for conv1 than a loop of c per pixel)."""
    _, h, w, c = x.shape
    row = kw * c
    per = out_h * out_w
    for m in range(m0, m1):
        n, r = m // per, m % per
        oy, ox = r // out_w, r % out_w
        flat = x[n].reshape(h * w * c)
        out = m - m0
        x0 = ox * sx - px
        inside = 0 <= x0 and x0 + kw <= w
        for i in range(kh):
            y = oy * sy - py + i
            base = i * row
            if y < 0 or y >= h:
                for k in range(row):
                    col[out, base + k] = 0.0
            elif inside:
                start = (y * w + x0) * c
                for k in range(row):
                    col[out, base + k] = flat[start + k]
            else:
                for j in range(kw):
                    xx = x0 + j
                    for k in range(c):
                        inner = 0 <= xx < w
                        col[out, base + j * c + k] = x[n, y, xx, k] if inner else 0.0


@_inline
def _col2im(col, gx, n0, n1, kh, kw, sy, sx, py, px, out_h, out_w):
    """The adjoint of ``_im2col`` for images n0..n1, a gather: each pixel sums its columns."""
    if sy == 1 and sx == 1:
        _col2im_unit_stride(col, gx, n0, n1, kh, kw, py, px, out_h, out_w)
        return
    _, h, w, c = gx.shape
    for n in range(n0, n1):
        for y in range(h):
            for xx in range(w):
                for k in range(c):
                    gx[n, y, xx, k] = 0.0
                for i in range(kh):
                    ty = y + py - i
                    if ty < 0 or ty % sy != 0 or ty // sy >= out_h:
                        continue
                    oy = ty // sy
                    for j in range(kw):
                        tx = xx + px - j
                        if tx < 0 or tx % sx != 0 or tx // sx >= out_w:
                            continue
                        m = ((n - n0) * out_h + oy) * out_w + tx // sx
                        base = (i * kw + j) * c
                        for k in range(c):
                            gx[n, y, xx, k] += col[m, base + k]


@_inline
def _col2im_unit_stride(col, gx, n0, n1, kh, kw, py, px, out_h, out_w):
    """``_col2im`` for stride 1, with no integer division per tap (2 to 3 times faster)."""
    _, h, w, c = gx.shape
    for n in range(n0, n1):
        for y in range(h):
            for xx in range(w):
                for k in range(c):
                    gx[n, y, xx, k] = 0.0
                for i in range(kh):
                    oy = y + py - i
                    if oy < 0 or oy >= out_h:
                        continue
                    for j in range(kw):
                        ox = xx + px - j
                        if ox < 0 or ox >= out_w:
                            continue
                        m = ((n - n0) * out_h + oy) * out_w + ox
                        base = (i * kw + j) * c
                        for k in range(c):
                            gx[n, y, xx, k] += col[m, base + k]


@_jit
def im2col(x, col, kh, kw, sy, sx, py, px, out_h, out_w):
    """The whole batch's ``_im2col`` into col[(n, oy, ox), (i, j, c)], images in parallel
    (the path for when BLAS cannot be called from the kernels' threads)."""
    per = out_h * out_w
    for n in prange(x.shape[0]):
        none = x[n, 0, 0, :0]
        rows = col[n * per : (n + 1) * per]
        _im2col(x, rows, n * per, (n + 1) * per, kh, kw, sy, sx, py, px, out_h, out_w, none, none)


@_jit
def col2im(col, gx, kh, kw, sy, sx, py, px, out_h, out_w):
    """The whole batch's ``_col2im`` (the adjoint of ``im2col``), images in parallel."""
    per = out_h * out_w
    for n in prange(gx.shape[0]):
        _col2im(col[n * per : (n + 1) * per], gx, n, n + 1, kh, kw, sy, sx, py, px, out_h, out_w)


@_jit
def forward(
    x, scale, shift, wm, b, z, y, start, cols, imgs, kh, kw, sy, sx, py, px, out_h, out_w, direct
):
    """y[(n, oy, ox), start:start + o] = im2col(x) @ wm.T + b (+ the same columns of z, when
    z has rows: a bypass); y and z C-contiguous 2-D. Each block's rows get b (+ z) first,
    while in cache, and its GEMM accumulates onto them.

    With ``scale`` non-empty the convolution's input is relu(x * scale + shift) per channel
    (a batch normalization in test mode and its ReLU), applied as the block's columns are
    written: the normalized activations never go to memory.
    ``direct``: a 1x1 stride-1 convolution, whose columns are x's rows themselves (copied,
    normalized, into the block's buffer when there is a ``scale``).
    ``cols``: one (rows, k) buffer per thread, rows >= imgs * out_h * out_w: a block is
    at most that many rows. The rows (not the images) are shared out, so even a batch of
    one image runs on every thread (the input gradient's col2im, a gather per image, keeps
    whole images per thread in ``backward``).
    """
    n_img, _, _, c = x.shape
    o, k = wm.shape
    size = x.itemsize
    total = n_img * out_h * out_w
    block = imgs * out_h * out_w
    parts = cols.shape[0]
    ldy = y.shape[1]
    onto = z.shape[0] > 0
    for t in prange(parts):  # each part an even share of the rows (of one image, for one)
        col = cols[t]
        stop = (t + 1) * total // parts
        for m0 in range(t * total // parts, stop, block):
            m1 = min(m0 + block, stop)
            rows = m1 - m0
            for r in range(m0, m1):
                if onto:
                    for j in range(o):
                        y[r, start + j] = z[r, start + j] + b[j]
                else:
                    for j in range(o):
                        y[r, start + j] = b[j]
            if direct and scale.shape[0] > 0:
                x2 = x.reshape(total, c)
                for r in range(rows):
                    for j in range(c):
                        col[r, j] = _relu_affine(x2[m0 + r, j], scale[j], shift[j])
                a, lda = col.ctypes.data, k
            elif direct:
                a, lda = x.ctypes.data + m0 * c * size, c
            else:
                _im2col(x, col, m0, m1, kh, kw, sy, sx, py, px, out_h, out_w, scale, shift)
                a, lda = col.ctypes.data, k
            yp = y.ctypes.data + (m0 * ldy + start) * size
            _gemm(_NO_TRANS, _TRANS, rows, o, k, a, lda, wm.ctypes.data, k, 1.0, yp, ldy, size)


@_jit
def backward(x, wm, g, start, gw, gb, gx, cols, imgs, kh, kw, sy, sx, py, px, out_h, out_w, direct):
    """With g the columns start:start + o of a C-contiguous 2-D output gradient, per part
    t: gw[t] += g.T @ im2col(x), gb[t] += column sums of g (float64), and, when gx has
    images, gx = col2im(g @ wm) (direct: gx rows = g @ wm).

    gw (threads, o, k) and gb (threads, o) start at 0 and are summed over t by the caller;
    an empty gw or gb (0 threads) skips that gradient.
    """
    n_img, _, _, c = x.shape
    o, k = wm.shape
    size = x.itemsize
    per = out_h * out_w
    parts = cols.shape[0]
    ldg = g.shape[1]
    want_w, want_b, want_x = gw.shape[0] > 0, gb.shape[0] > 0, gx.shape[0] > 0
    for t in prange(parts):
        col = cols[t]
        for n0 in range(t * n_img // parts, (t + 1) * n_img // parts, imgs):
            n1 = min(n0 + imgs, (t + 1) * n_img // parts)
            rows = (n1 - n0) * per
            r0 = n0 * per
            gp = g.ctypes.data + (r0 * ldg + start) * size
            if want_b:
                for r in range(r0, r0 + rows):
                    for j in range(o):
                        gb[t, j] += g[r, start + j]
            if want_w:
                if direct:
                    a, lda = x.ctypes.data + r0 * c * size, c
                else:
                    none = x[0, 0, 0, :0]
                    _im2col(x, col, r0, r0 + rows, kh, kw, sy, sx, py, px, out_h, out_w, none, none)
                    a, lda = col.ctypes.data, k
                wp = gw.ctypes.data + t * o * k * size
                _gemm(_TRANS, _NO_TRANS, o, k, rows, gp, ldg, a, lda, 1.0, wp, k, size)
            if want_x:  # the input gradient, or the column gradient into the buffer
                out, ld = (gx.ctypes.data + r0 * c * size, c) if direct else (col.ctypes.data, k)
                _gemm(
                    _NO_TRANS, _NO_TRANS, rows, k, o, gp, ldg, wm.ctypes.data, k, 0.0, out, ld, size
                )
                if not direct:
                    _col2im(col, gx, n0, n1, kh, kw, sy, sx, py, px, out_h, out_w)


# --- shifted GEMMs: stride-1 convolutions without im2col ---------------------------------


def shifted_pays(c: int, o: int, h: int, w: int, kh: int, kw: int, stride: int) -> bool:
    """Whether a convolution of an (h, w, c) image into o channels runs as shifted GEMMs
    (``forward_shifted``, ``backward_shifted``) rather than im2col: stride 1, a kernel wider
    than a pixel, at most 64 channels in and no more out, at most 16384 input values an
    image, and rows of at least 8 (kw - 1) pixels (the extra columns at most an eighth).
    Measured one thread, forward + backward against the im2col kernels
    (``benchmarks.convs``): 16 -> 16 channels at 32x32 and 32 -> 32 at 16x16 1.8 times
    faster; slower where the GEMMs get short (64 -> 64 at 8x8: 0.55x, its rows of 8 pixels
    computed 10 wide) or large (64 -> 64 at 32x32: 0.9x), or where o > c (SqueezeNet's
    expands, 16 -> 64 at 31x31: 0.8x): there im2col's GEMMs on kh * kw * c columns use the
    cores better than kh * kw GEMMs on c."""
    small = 8 <= c <= 64 and o <= c and h * w * c <= 16384
    return stride == 1 and kh * kw > 1 and small and w >= 8 * (kw - 1)


@_inline
def _pad_rows(x, n, iy0, count, px, scale, shift, slab):
    """slab[r] = the zero-padded row iy0 + r of image n (zeros above and below the image),
    row width w + 2 px pixels of c channels; with ``scale`` and ``shift`` (tiled to a whole
    row, w * c values), relu(x * scale + shift) inside. Whole rows per loop: a loop of c
    alone would run in the vectorizer's scalar remainder for 16 or 32 channels."""
    _, h, w, c = x.shape
    wp = w + 2 * px
    affine = scale.shape[0] > 0
    flat = x.reshape(x.shape[0], h, w * c)
    for r in range(count):
        iy = iy0 + r
        base = r * wp * c
        if iy < 0 or iy >= h:
            slab[base : base + wp * c] = 0.0
            continue
        slab[base : base + px * c] = 0.0
        slab[base + (px + w) * c : base + wp * c] = 0.0
        row = flat[n, iy]
        inner = slab[base + px * c : base + (px + w) * c]
        if affine:
            for e in range(w * c):
                inner[e] = _relu_affine(row[e], scale[e], shift[e])
        else:
            inner[:] = row


@_jit
def forward_shifted(
    x, scale, shift, wt, b, z, y, start, slabs, wides, chunks, kh, kw, py, px, out_h, out_w
):
    """``forward`` for a stride-1 convolution without im2col: each image (or, with
    ``chunks`` > 1, each of its bands of output rows, so a batch smaller than the thread
    count still uses every thread) is copied zero-padded into the thread's ``slabs`` row,
    and each kernel tap (i, j) is one GEMM whose left operand is that padded image shifted
    by (i, j): read as rows of c values, pixel p of an output row and pixel p + j of input
    row + i are the same distance apart for every p, as long as the output rows are as wide
    as the padded input (kw - 1 extra columns each, computed and dropped). The taps
    accumulate into the thread's ``wides`` row; the kept columns get b (+ z) on the way
    out. GEMMs with k = c rather than kh * kw * c, and no im2col copy at all.

    ``wt``: the weights tap-major, (kh * kw * c, o) (``wm.T``): each tap's (c, o) block is
    the GEMM's right operand as it lies (1.3 to 1.4 times faster than ``wm`` transposed).
    """
    n_img, h, w, c = x.shape
    o = wt.shape[1]
    size = x.itemsize
    wp = w + 2 * px
    parts = slabs.shape[0]
    units = n_img * chunks
    onto = z.shape[0] > 0
    whole = y.shape[1] == o and (not onto or z.shape[1] == o)
    y_flat = y.reshape(y.size)
    z_flat = z.reshape(z.size)
    tiled = np.empty(out_w * o, y.dtype)  # b repeated along an output row, then scale and
    # shift along an input row: whole rows per loop (see _pad_rows)
    for e in range(out_w * o):
        tiled[e] = b[e % o]
    affine = scale.shape[0] > 0
    scales = np.empty(w * c if affine else 0, x.dtype)
    shifts = np.empty(w * c if affine else 0, x.dtype)
    for e in range(scales.shape[0]):
        scales[e], shifts[e] = scale[e % c], shift[e % c]
    for t in prange(parts):
        slab, wide = slabs[t], wides[t]
        for u in range(t * units // parts, (t + 1) * units // parts):
            n, q = u // chunks, u % chunks
            oy0, oy1 = q * out_h // chunks, (q + 1) * out_h // chunks
            rows = oy1 - oy0
            if rows == 0:
                continue
            _pad_rows(x, n, oy0 - py, rows + kh - 1, px, scales, shifts, slab)
            m = rows * wp - (kw - 1)
            for i in range(kh):
                for j in range(kw):
                    tap = i * kw + j
                    a = slab.ctypes.data + (i * wp + j) * c * size
                    bp = wt.ctypes.data + tap * c * o * size
                    beta = 0.0 if tap == 0 else 1.0
                    _gemm(
                        _NO_TRANS, _NO_TRANS, m, o, c, a, c, bp, o, beta, wide.ctypes.data, o, size
                    )
            for r in range(rows):
                d0 = (n * out_h + oy0 + r) * out_w
                if whole:  # the output row is out_w * o contiguous values
                    src = wide[r * wp * o : r * wp * o + out_w * o]
                    dst = y_flat[d0 * o : (d0 + out_w) * o]
                    if onto:
                        add = z_flat[d0 * o : (d0 + out_w) * o]
                        for e in range(out_w * o):
                            dst[e] = src[e] + tiled[e] + add[e]
                    else:
                        for e in range(out_w * o):
                            dst[e] = src[e] + tiled[e]
                    continue
                for ox in range(out_w):
                    src0, dst = (r * wp + ox) * o, d0 + ox
                    for j in range(o):
                        value = wide[src0 + j] + b[j]
                        y[dst, start + j] = value + z[dst, start + j] if onto else value


@_jit
def backward_shifted(x, wm, g, start, gw, gb, gx, slabs, wides, gxps, kh, kw, py, px, out_h, out_w):
    """``backward`` for a stride-1 convolution as shifted GEMMs (``forward_shifted``),
    whole images per thread: the image's output gradient is laid out as wide rows (zeros
    in the extra columns, so they add nothing), then per tap gw[t]'s block of that tap
    += gy_wide.T @ shifted padded x, and the padded input gradient's shifted rows
    += gy_wide @ W_tap, whose inside is gx: no col2im.
    """
    n_img, h, w, c = x.shape
    o, k = wm.shape
    size = x.itemsize
    wp = w + 2 * px
    hp = h + 2 * py
    parts = slabs.shape[0]
    want_w, want_b, want_x = gw.shape[0] > 0, gb.shape[0] > 0, gx.shape[0] > 0
    none = x[0, 0, 0, :0]
    m = out_h * wp - (kw - 1)
    nt, tr = _NO_TRANS, _TRANS
    whole = g.shape[1] == o
    g_flat = g.reshape(g.size)
    gx_flat = gx.reshape(gx.shape[0], h, w * c)
    for t in prange(parts):
        slab, wide, gxp = slabs[t], wides[t], gxps[t]
        for n in range(t * n_img // parts, (t + 1) * n_img // parts):
            r0 = n * out_h * out_w
            if want_b:
                for r in range(r0, r0 + out_h * out_w):
                    for j in range(o):
                        gb[t, j] += g[r, start + j]
            for oy in range(out_h):
                row = oy * wp * o
                if whole:
                    src = (r0 + oy * out_w) * o
                    wide[row : row + out_w * o] = g_flat[src : src + out_w * o]
                else:
                    for ox in range(out_w):
                        r = r0 + oy * out_w + ox
                        for j in range(o):
                            wide[row + ox * o + j] = g[r, start + j]
                wide[row + out_w * o : row + wp * o] = 0.0
            if want_w:
                _pad_rows(x, n, -py, hp, px, none, none, slab)
                for i in range(kh):
                    for j in range(kw):
                        tap = i * kw + j
                        a = slab.ctypes.data + (i * wp + j) * c * size
                        gw_t = gw.ctypes.data + (t * o * k + tap * c) * size
                        _gemm(tr, nt, o, c, m, wide.ctypes.data, o, a, c, 1.0, gw_t, k, size)
            if want_x:
                gxp[: hp * wp * c] = 0.0
                for i in range(kh):
                    for j in range(kw):
                        tap = i * kw + j
                        out = gxp.ctypes.data + (i * wp + j) * c * size
                        bp = wm.ctypes.data + tap * c * size
                        _gemm(nt, nt, m, c, o, wide.ctypes.data, o, bp, k, 1.0, out, c, size)
                for iy in range(h):
                    src = ((iy + py) * wp + px) * c
                    gx_flat[n, iy, :] = gxp[src : src + w * c]
