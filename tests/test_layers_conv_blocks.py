"""``layers.conv_blocks``: convolutions in image blocks per thread, against a float64 im2col.

The kernels split the images over ``cols.shape[0]`` parts whatever Numba's thread count, so
the tests try more parts than images, blocks of one image and of several, 1x1 (direct) and
k x k strided and padded convolutions, a column slice as the output, and each gradient alone.
"""

import numpy as np
import pytest

from layers import blas, conv_blocks

pytestmark = pytest.mark.skipif(
    not conv_blocks.available(np.float32), reason='no OpenBLAS with thread control loaded'
)

# (images, side, in channels, out channels, ksize, stride, pad)
CASES = [
    (3, 7, 4, 5, 3, 1, 1),
    (2, 13, 3, 8, 7, 2, 2),
    (4, 9, 3, 4, 3, 2, 0),
    (3, 5, 6, 7, 1, 1, 0),
]


NONE = (np.empty(0, np.float32),) * 2  # no normalization of the input


def reference(x, w, gy, k, s, p):
    """Forward, weight, bias and input gradients in float64 through a whole-batch im2col
    written with NumPy slices of the zero-padded input (independent of the kernels)."""
    x, w, gy = (a.astype(np.float64) for a in (x, w, gy))
    n, h, _, c = x.shape
    o = w.shape[0]
    out = (h + 2 * p - k) // s + 1
    padded = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    span = s * (out - 1) + 1
    windows = [(i, j) for i in range(k) for j in range(k)]
    taps = [padded[:, i : i + span : s, j : j + span : s] for i, j in windows]
    col = np.stack(taps, axis=3).reshape(n * out * out, k * k * c)
    g = gy.reshape(-1, o)
    gcol = (g @ w).reshape(n, out, out, k * k, c)
    gpadded = np.zeros_like(padded)
    for t, (i, j) in enumerate(windows):
        gpadded[:, i : i + span : s, j : j + span : s] += gcol[:, :, :, t]
    gx = gpadded[:, p : p + h, p : p + h]
    return col @ w.T, g.T @ col, g.sum(axis=0), gx


def setup(case, rng, dtype=np.float32):
    n, side, c, o, k, s, p = case
    out = (side + 2 * p - k) // s + 1
    x = rng.normal(size=(n, side, side, c)).astype(dtype)
    w = rng.normal(size=(o, k * k * c)).astype(dtype)
    gy = rng.normal(size=(n, out, out, o)).astype(dtype)
    return x, w, gy, out


def run(case, x, w, gy, out, parts, imgs, want=('w', 'b', 'x'), extra=0):
    """The kernels' results; the output and gradient live in column slices of wider arrays."""
    n, _, c, o, k, s, p = case
    direct = k == 1 and s == 1 and p == 0
    dtype = x.dtype
    cols = np.full((parts, 1, 1) if direct else (parts, imgs * out * out, k * k * c), np.nan, dtype)
    wide = np.full((n * out * out, o + extra), 7.0, dtype)
    y = wide[:, extra:]
    y[...] = np.nan  # every element written
    geometry = (k, k, s, s, p, p, out, out)
    bias, onto = np.zeros(o, dtype), np.empty((0, 0), dtype)
    with blas.one_thread():
        conv_blocks.forward(x, *NONE, w, bias, onto, wide, extra, cols, imgs, *geometry, direct)
    gwide = np.full((n * out * out, o + extra), np.inf, dtype)
    gwide[:, extra:] = gy.reshape(-1, o)
    gw = np.zeros((parts if 'w' in want else 0, o, w.shape[1]), dtype)
    gb = np.zeros((parts if 'b' in want else 0, o))
    gx = np.full(x.shape, np.nan, dtype) if 'x' in want else np.empty((0, 1, 1, 1), dtype)
    with blas.one_thread():
        conv_blocks.backward(x, w, gwide, extra, gw, gb, gx, cols, imgs, *geometry, direct)
    if extra:
        assert (wide[:, :extra] == 7.0).all()  # the columns beside the output slice untouched
    return y, gw.sum(axis=0), gb.sum(axis=0), gx


@pytest.mark.parametrize('case', CASES)
@pytest.mark.parametrize('parts, imgs', [(1, 1), (2, 1), (2, 2), (5, 1), (1, 64)])
def test_forward_and_gradients_equal_a_float64_im2col(case, parts, imgs, rng):
    x, w, gy, out = setup(case, rng)
    ref = reference(x, w, gy, *case[4:])
    got = run(case, x, w, gy, out, parts, imgs, extra=3)
    for a, b in zip(got, ref, strict=True):
        assert a.shape == b.reshape(a.shape).shape
        np.testing.assert_allclose(a, b.reshape(a.shape), rtol=1e-4, atol=1e-4 * np.abs(b).max())


@pytest.mark.parametrize('want', [('w',), ('b',), ('x',), ('w', 'x')])
def test_each_gradient_alone(want, rng):
    case = CASES[0]
    x, w, gy, out = setup(case, rng)
    ref = reference(x, w, gy, *case[4:])
    _, gw, gb, gx = run(case, x, w, gy, out, 2, 1, want=want)
    for name, got, expected in (('w', gw, ref[1]), ('b', gb, ref[2]), ('x', gx, ref[3])):
        if name in want:
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_bias_and_bypass_are_the_starting_value(rng):
    case = CASES[1]
    n, _, _, o, k, s, p = case
    x, w, _, out = setup(case, rng)
    bias = rng.normal(size=o).astype(np.float32)
    onto = rng.normal(size=(n * out * out, o + 2)).astype(np.float32)
    y = np.full((n * out * out, o + 2), np.nan, np.float32)
    cols = np.empty((2, out * out, k * k * x.shape[3]), np.float32)
    geometry = (k, k, s, s, p, p, out, out)
    with blas.one_thread():
        conv_blocks.forward(x, *NONE, w, bias, onto, y, 2, cols, 1, *geometry, False)
    expected = reference(x, w, np.zeros((n, out, out, o), np.float32), k, s, p)[0]
    np.testing.assert_allclose(y[:, 2:], expected + bias + onto[:, 2:], rtol=1e-4, atol=1e-4)
    assert np.isnan(y[:, :2]).all()


@pytest.mark.parametrize('case', [CASES[0], CASES[3]])
def test_test_mode_normalization_inside_the_blocks(case, rng):
    """With (scale, shift) the kernel convolves relu(x * scale + shift); padding stays 0."""
    n, _, c, o, k, s, p = case
    x, w, _, out = setup(case, rng)
    x[0, 0, 0, 0] = np.nan
    scale = rng.normal(size=c).astype(np.float32)
    shift = rng.normal(size=c).astype(np.float32)
    h = np.maximum(x * scale + shift, 0)  # NaN stays NaN, as np.maximum keeps it
    expected = reference(h, w, np.zeros((n, out, out, o), np.float32), k, s, p)[0]
    y = np.full((n * out * out, o), np.nan, np.float32)
    cols = np.full((2, out * out, k * k * c), np.nan, np.float32)
    zero, onto = np.zeros(o, np.float32), np.empty((0, 0), np.float32)
    with blas.one_thread():
        conv_blocks.forward(
            x, scale, shift, w, zero, onto, y, 0, cols, 1, k, k, s, s, p, p, out, out, k == 1
        )
    finite = np.isfinite(expected)
    assert (np.isnan(y) == ~finite).all()
    np.testing.assert_allclose(y[finite], expected[finite], rtol=1e-4, atol=1e-4)


def test_float64_agrees_to_rounding(rng):
    case = CASES[1]
    x, w, gy, out = setup(case, rng, np.float64)
    ref = reference(x, w, gy, *case[4:])
    for a, b in zip(run(case, x, w, gy, out, 3, 1), ref, strict=True):
        np.testing.assert_allclose(a, b.reshape(a.shape), rtol=1e-12, atol=1e-12)


def test_deterministic_for_a_part_count(rng):
    case = CASES[0]
    x, w, gy, out = setup(case, rng)
    first = run(case, x, w, gy, out, 2, 1)
    second = run(case, x, w, gy, out, 2, 1)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_nan_reaches_the_output_and_the_gradients(rng):
    case = CASES[0]
    x, w, gy, out = setup(case, rng)
    x[1, 2, 3, 0] = np.nan
    y, gw, _, gx = run(case, x, w, gy, out, 2, 1)
    assert np.isnan(y.reshape(3, 7, 7, 5)[1, 1:4, 2:5]).all()  # the 3x3 windows that read it
    assert np.isfinite(y.reshape(3, 7, 7, 5)[0]).all()
    assert np.isnan(gw).any() and np.isfinite(gx).all()  # gx does not read x


def test_one_thread_restores_openblas_threads():
    get = blas._THREADS[0]
    before = get()
    with blas.one_thread():
        assert get() == 1
        with blas.one_thread():  # nested (or another thread's) use
            assert get() == 1
        assert get() == 1
    assert get() == before
    with pytest.raises(RuntimeError), blas.one_thread():
        raise RuntimeError
    assert get() == before


def test_images_per_block():
    assert conv_blocks.images_per_block(3600, 147, 4, 64) == 1  # conv1 at 122 px: 2 MB an image
    assert conv_blocks.images_per_block(81, 576, 4, 64) == conv_blocks.BLOCK_BYTES // 186624
    assert conv_blocks.images_per_block(1, 1, 4, 3) == 3  # never more than the images
    # small images: enough of them for a GEMM of min_rows rows, beyond BLOCK_BYTES
    assert conv_blocks.images_per_block(64, 576, 4, 64, min_rows=512) == 8
    assert conv_blocks.images_per_block(64, 576, 4, 5, min_rows=512) == 5
    assert conv_blocks.images_per_block(3600, 147, 4, 64, min_rows=512) == 1
    # but a thread's buffer stays within MAX_BLOCK_BYTES: 4 rows of 4608 values an image
    most = conv_blocks.MAX_BLOCK_BYTES // (4 * 4608 * 4)
    assert conv_blocks.images_per_block(4, 4608, 4, 256, min_rows=512) == most < 128


@pytest.mark.parametrize('case', [(1, 9, 5, 4, 3, 1, 1), (1, 13, 3, 8, 7, 2, 2)])
def test_one_image_is_shared_out_by_rows(case, rng):
    """A batch of one runs on every part: each writes its share of the image's rows."""
    x, w, gy, out = setup(case, rng)
    n, _, c, o, k, s, p = case
    cols = np.full((2, out * out, k * k * c), np.nan, np.float32)
    y = np.full((out * out, o), np.nan, np.float32)
    geometry = (k, k, s, s, p, p, out, out)
    with blas.one_thread():
        conv_blocks.forward(
            x,
            *NONE,
            w,
            np.zeros(o, np.float32),
            np.empty((0, 0), np.float32),
            y,
            0,
            cols,
            1,
            *geometry,
            False,
        )
    half = out * out // 2
    assert np.isfinite(cols[0, :half]).all() and np.isfinite(cols[1, : out * out - half]).all()
    expected = reference(x, w, gy, k, s, p)[0]
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


# --- shifted GEMMs (stride 1, no im2col) --------------------------------------------------

# (images, side, in channels, out channels, ksize, stride 1, pad)
SHIFTED = [
    (3, 7, 4, 5, 3, 1, 1),
    (2, 6, 8, 3, 5, 1, 2),
    (4, 5, 3, 6, 3, 1, 0),
    (1, 9, 16, 16, 3, 1, 1),
]


def run_shifted(case, x, w, gy, out, parts, chunks, extra=0, scale=NONE, bias=None, onto=None):
    """forward_shifted and backward_shifted, output and gradient in column slices of wider
    arrays (beside columns checked untouched), scratch full of NaN (every value used is
    written first)."""
    n, side, c, o, k, _, p = case
    dtype = x.dtype
    wp = side + 2 * p
    rows = -(-out // chunks)
    slabs = np.full((parts, max(rows + k - 1, side + 2 * p) * wp * c), np.nan, dtype)
    wides = np.full((parts, out * wp * o), np.nan, dtype)
    gxps = np.full((parts, (side + 2 * p) * wp * c), np.nan, dtype)
    wide = np.full((n * out * out, o + extra), 7.0, dtype)
    wide[:, extra:] = np.nan
    bias = np.zeros(o, dtype) if bias is None else bias
    onto = np.empty((0, 0), dtype) if onto is None else onto
    with blas.one_thread():
        conv_blocks.forward_shifted(
            x, *scale, np.ascontiguousarray(w.T), bias, onto, wide, extra, slabs, wides, chunks,
            k, k, p, p, out, out,
        )  # fmt: skip
    gwide = np.full((n * out * out, o + extra), np.inf, dtype)
    gwide[:, extra:] = gy.reshape(-1, o)
    gw = np.zeros((parts, o, w.shape[1]), dtype)
    gb = np.zeros((parts, o))
    gx = np.full(x.shape, np.nan, dtype)
    with blas.one_thread():
        conv_blocks.backward_shifted(
            x, w, gwide, extra, gw, gb, gx, slabs, wides, gxps, k, k, p, p, out, out
        )
    assert (wide[:, :extra] == 7.0).all()
    return wide[:, extra:], gw.sum(axis=0), gb.sum(axis=0), gx


@pytest.mark.parametrize('case', SHIFTED)
@pytest.mark.parametrize('parts, chunks, extra', [(1, 1, 0), (2, 1, 3), (2, 2, 0), (5, 3, 2)])
def test_shifted_gemms_equal_a_float64_im2col(case, parts, chunks, extra, rng):
    """Any kernel size and padding, images (and bands of rows) over any part count, the
    output a whole array or a column slice of one."""
    x, w, gy, out = setup(case, rng)
    ref = reference(x, w, gy, case[4], 1, case[6])
    got = run_shifted(case, x, w, gy, out, parts, chunks, extra)
    for a, b in zip(got, ref, strict=True):
        np.testing.assert_allclose(a, b.reshape(a.shape), rtol=1e-4, atol=1e-4 * np.abs(b).max())


def test_shifted_gemms_add_bias_bypass_and_normalize_the_input(rng):
    case = SHIFTED[0]
    n, _, c, o, k, _, p = case
    x, w, gy, out = setup(case, rng)
    scale = rng.normal(size=c).astype(np.float32), rng.normal(size=c).astype(np.float32)
    bias = rng.normal(size=o).astype(np.float32)
    for extra in (0, 2):
        onto = rng.normal(size=(n * out * out, o + extra)).astype(np.float32)
        y = run_shifted(case, x, w, gy, out, 2, 1, extra, scale, bias, onto)[0]
        h = np.maximum(x * scale[0] + scale[1], 0)  # padding stays 0, not relu(shift)
        expected = reference(h, w, gy, k, 1, p)[0] + bias + onto[:, extra:]
        np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


def test_shifted_float64_agrees_to_rounding(rng):
    case = SHIFTED[1]
    x, w, gy, out = setup(case, rng, np.float64)
    ref = reference(x, w, gy, case[4], 1, case[6])
    for a, b in zip(run_shifted(case, x, w, gy, out, 3, 1), ref, strict=True):
        np.testing.assert_allclose(a, b.reshape(a.shape), rtol=1e-12, atol=1e-12)


def test_which_convolutions_take_the_shifted_gemms():
    pays = conv_blocks.shifted_pays
    assert pays(16, 16, 32, 32, 3, 3, 1) and pays(32, 32, 16, 16, 3, 3, 1)  # ResNet-20's
    assert not pays(64, 64, 8, 8, 3, 3, 1)  # short rows: 10 computed for 8 kept
    assert not pays(16, 16, 32, 32, 3, 3, 2)  # strided
    assert not pays(16, 16, 32, 32, 1, 1, 1)  # 1x1: no im2col to save
    assert not pays(16, 64, 31, 31, 3, 3, 1)  # SqueezeNet's expands: more out than in
    assert not pays(64, 64, 32, 32, 3, 3, 1)  # large GEMMs: im2col's use the cores better
    assert not pays(3, 3, 32, 32, 3, 3, 1)  # an image's few channels
