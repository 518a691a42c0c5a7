"""Compiled CPU loops of the NHWC fast path (Numba, cached on disk after the first call).

Every array here is NHWC (channels innermost) and C-contiguous, so the inner loop of each
kernel runs over contiguous channels. Only what a BLAS GEMM cannot do is compiled: the
bias (and bypass) fills a GEMM accumulates onto, max pooling, and batch normalization fused
with the ReLU that follows it (the convolutions' im2col and col2im are in
``layers.conv_blocks``). Each kernel is one pass over its data, parallel over rows (``prange``).
The batch-norm reductions accumulate in float64, so the statistics and the gamma and beta
gradients are closer to exact than a float32 sum. No ``fastmath``: NaN and infinity
propagate as in NumPy.
"""

from layers import runtime

runtime.configure()  # before Numba starts its threads

# isort: split
import numba  # noqa: E402
import numpy as np  # noqa: E402
from numba import prange  # noqa: E402

_jit = numba.njit(cache=True, parallel=True, nogil=True)


@numba.njit(cache=True)
def _chunks(rows):
    """Row blocks of a parallel reduction: enough for the threads, few enough to sum fast."""
    return max(1, min(rows, 64))


# -- convolution: the fills a GEMM accumulates onto ----------------------------------------


@_jit
def fill_rows(y, b):
    """y[r, k] = b[k] for a C-contiguous 2-D y: the bias a GEMM then accumulates onto."""
    rows, cols = y.shape
    for r in prange(rows):
        for k in range(cols):
            y[r, k] = b[k]


@_jit
def fill_rows_add(y, b, z):
    """y[r, k] = z[r, k] + b[k]: the bias plus a bypass, for a GEMM to accumulate onto."""
    rows, cols = y.shape
    for r in prange(rows):
        for k in range(cols):
            y[r, k] = z[r, k] + b[k]


@_jit
def copy_columns(y, a, z):
    """y = a (+ z, when z has rows): a dense result into its columns of a wider output
    (strided rows), a bypass added on the way. One parallel pass; NumPy's strided copy runs
    on one thread and its strided add 3 to 4 times slower than the copy."""
    rows, cols = a.shape
    add = z.shape[0] > 0
    for r in prange(rows):
        if add:
            for k in range(cols):
                y[r, k] = a[r, k] + z[r, k]
        else:
            for k in range(cols):
                y[r, k] = a[r, k]


@_jit
def nchw_to_nhwc(x, y):
    """y[n, h, w, c] = x[n, c, h, w]: an image batch to channels-last memory, rows of y in
    parallel (NumPy's transposing copy runs on one thread: 2.9 against 0.5 ms for 64
    images of 3 x 128 x 128 here)."""
    n_img, c, h, w = x.shape
    for row in prange(n_img * h):
        n, yy = row // h, row % h
        for xx in range(w):
            for k in range(c):
                y[n, yy, xx, k] = x[n, k, yy, xx]


@_jit
def oihw_to_hwio(w, out):
    """out[i, j, c, o] = w[o, c, i, j]: Chainer's convolution weights in the order oneDNN's
    forward kernels read (rows of out in parallel: 75 -> 34 us for 256 x 64 x 3 x 3 here,
    against NumPy's transposing copy)."""
    o_n, c_n, kh, kw = w.shape
    for row in prange(kh * kw * c_n):
        i, rest = row // (kw * c_n), row % (kw * c_n)
        j, c = rest // c_n, rest % c_n
        for o in range(o_n):
            out[i, j, c, o] = w[o, c, i, j]


# -- max pooling: first maximum in window order, argmax as a small window offset ------------


@_jit
def max_pool(x, y, index, k, s, p):
    """y = the max of each k x k window (-inf padding); index = its offset i*k + j.

    Ties keep the first maximum in window order and a NaN wins (the first NaN), which is
    what ``argmax`` over Chainer's im2col gives, so gradients land where Chainer's do.
    """
    n_img, h, w, c = x.shape
    _, out_h, out_w, _ = y.shape
    for row in prange(n_img * out_h):
        n, oy = row // out_h, row % out_h
        for ox in range(out_w):
            for ch in range(c):
                y[n, oy, ox, ch] = -np.inf
                index[n, oy, ox, ch] = 0
            for i in range(k):
                yy = oy * s - p + i
                if yy < 0 or yy >= h:
                    continue
                for j in range(k):
                    xx = ox * s - p + j
                    if xx < 0 or xx >= w:
                        continue
                    offset = i * k + j
                    for ch in range(c):
                        v = x[n, yy, xx, ch]
                        best = y[n, oy, ox, ch]
                        if v > best or (v != v and best == best):
                            y[n, oy, ox, ch] = v
                            index[n, oy, ox, ch] = offset


@_jit
def max_pool_grad(gy, index, gx, k, s, p):
    """gx[pixel] = the sum of gy over the windows whose argmax is that pixel (a gather)."""
    n_img, h, w, c = gx.shape
    _, out_h, out_w, _ = gy.shape
    for row in prange(n_img * h):
        n, yy = row // h, row % h
        for xx in range(w):
            for ch in range(c):
                gx[n, yy, xx, ch] = 0.0
            for i in range(k):
                ty = yy + p - i
                if ty < 0 or ty % s != 0 or ty // s >= out_h:
                    continue
                oy = ty // s
                for j in range(k):
                    tx = xx + p - j
                    if tx < 0 or tx % s != 0 or tx // s >= out_w:
                        continue
                    ox = tx // s
                    offset = i * k + j
                    for ch in range(c):
                        if index[n, oy, ox, ch] == offset:
                            gx[n, yy, xx, ch] += gy[n, oy, ox, ch]


# -- batch normalization fused with the ReLU after it ---------------------------------------


@_jit
def moments(x):
    """Per-channel mean and (biased) variance of a 2-D (rows, channels) array, in float64."""
    rows, cols = x.shape
    blocks = _chunks(rows)
    s1 = np.zeros((blocks, cols), np.float64)
    s2 = np.zeros((blocks, cols), np.float64)
    for b in prange(blocks):
        start = b * rows // blocks
        stop = (b + 1) * rows // blocks
        shift = np.empty(cols, np.float64)  # the block's first row: sums of small numbers
        for k in range(cols):
            shift[k] = x[start, k] if stop > start else 0.0
        for r in range(start, stop):
            for k in range(cols):
                d = x[r, k] - shift[k]
                s1[b, k] += d
                s2[b, k] += d * d
        for k in range(cols):  # back to sums about 0 for the merge below
            n = stop - start
            s2[b, k] += shift[k] * (2.0 * s1[b, k] + n * shift[k])
            s1[b, k] += n * shift[k]
    mean = s1.sum(axis=0) / rows
    var = s2.sum(axis=0) / rows - mean * mean
    return mean, np.maximum(var, 0.0)


@numba.njit(cache=True, nogil=True)
def inference_affine(gamma, beta, mean, var, eps, scale, shift):
    """scale = gamma / sqrt(var + eps), shift = beta - mean * scale: a batch normalization
    in test mode as an affine map, computed in float64 exactly as ``BNReLUNHWC`` computes it
    (1 / sqrt first), stored in scale's and shift's dtype. One call: NumPy's ten small
    operations took 5 us a normalization, a tenth of a one-image Fire module's time."""
    for k in range(gamma.shape[0]):
        inv_std = 1.0 / np.sqrt(np.float64(var[k]) + eps)
        a = np.float64(gamma[k]) * inv_std
        scale[k] = a
        shift[k] = np.float64(beta[k]) - np.float64(mean[k]) * a


@_jit
def scale_shift_relu(x, scale, shift, y, floor):
    """y[j] = max(x * scale[j] + shift[j], floor) per channel, for every j, in one pass over
    x: ``floor`` 0 is the ReLU, -inf none (a batch normalization alone; a constant select,
    so the loop vectorizes as the ReLU's).

    NaN stays NaN (like ``np.maximum``). Several batch normalizations of the same x (a
    Fire module's two expands) share the read.
    """
    rows, cols = x.shape
    for r in prange(rows):
        for j in range(scale.shape[0]):
            for k in range(cols):
                z = x[r, k] * scale[j, k] + shift[j, k]
                y[j, r, k] = z if (z > floor or z != z) else floor


@_jit
def scale_shift_add_relu(x, scale, shift, r, y):
    """y = max(x * scale + shift + r, 0) per channel (a batch normalization, a residual add
    and the ReLU in one pass); NaN stays NaN."""
    rows, cols = x.shape
    for i in prange(rows):
        for k in range(cols):
            z = x[i, k] * scale[k] + shift[k] + r[i, k]
            y[i, k] = z if (z > 0 or z != z) else 0.0


@_jit
def add_relu_grad(g, x, scale, shift, r, out):
    """out = g where ``scale_shift_add_relu``'s ReLU passed (its mask recomputed with the
    same arithmetic), else 0."""
    rows, cols = x.shape
    for i in prange(rows):
        for k in range(cols):
            z = x[i, k] * scale[k] + shift[k] + r[i, k]
            out[i, k] = g[i, k] * (1.0 if z > 0 else 0.0)  # 0 * NaN stays NaN


@_jit
def bn_relu_grad_sums(gy, x, mean, scale, shift, floor):
    """Sums of g and g * (x - mean) per output j, g = gy[j] where its ReLU passed
    (``x * scale + shift > floor``: 0 for the ReLU, -inf for none), in float64.

    The ReLU's mask is recomputed from x (``x * scale + shift > 0``, the forward pass's
    float arithmetic), so the normalized outputs need not be read (nor kept).
    """
    rows, cols = x.shape
    outs = scale.shape[0]
    blocks = _chunks(rows)
    sg = np.zeros((blocks, outs, cols), np.float64)
    sgx = np.zeros((blocks, outs, cols), np.float64)
    for b in prange(blocks):
        for j in range(outs):
            g_j = gy[j]
            for r in range(b * rows // blocks, (b + 1) * rows // blocks):
                for k in range(cols):
                    v = x[r, k]
                    z = v * scale[j, k] + shift[j, k]
                    g = g_j[r, k] * (1.0 if z > floor else 0.0)  # 0 * NaN stays NaN
                    sg[b, j, k] += g
                    sgx[b, j, k] += g * (v - mean[k])
    return sg.sum(axis=0), sgx.sum(axis=0)


@_jit
def bn_relu_grad_x(gy, x, mean, scale, shift, a, b, d, gpass, gx, floor):
    """gx = sum_j a[j] * gy[j][mask j] + b * (x - mean) + d (+ gpass, when it has rows).

    The batch-norm input gradient of every output j at once (b and d summed over j), plus
    the gradient of the input's other use (a bypass) in the same pass.
    """
    rows, cols = x.shape
    passing = gpass.shape[0] == rows
    for r in prange(rows):
        if passing:
            for k in range(cols):
                gx[r, k] = b[k] * (x[r, k] - mean[k]) + d[k] + gpass[r, k]
        else:
            for k in range(cols):
                gx[r, k] = b[k] * (x[r, k] - mean[k]) + d[k]
        for j in range(scale.shape[0]):  # the row of gx stays in cache meanwhile
            g_j = gy[j]
            for k in range(cols):
                z = x[r, k] * scale[j, k] + shift[j, k]
                gx[r, k] += a[j, k] * (g_j[r, k] * (1.0 if z > floor else 0.0))


@_jit
def max_pool_select(gx, index, gy, k, s, p):
    """gy = gx at each window's argmax (0 in the padding): the adjoint of ``max_pool_grad``."""
    n_img, h, w, c = gx.shape
    _, out_h, out_w, _ = gy.shape
    for row in prange(n_img * out_h):
        n, oy = row // out_h, row % out_h
        for ox in range(out_w):
            for ch in range(c):
                offset = index[n, oy, ox, ch]
                yy = oy * s - p + offset // k
                xx = ox * s - p + offset % k
                inside = 0 <= yy < h and 0 <= xx < w
                gy[n, oy, ox, ch] = gx[n, yy, xx, ch] if inside else 0.0
