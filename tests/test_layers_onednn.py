"""oneDNN's convolutions on the fast path (layers.onednn): the same results as the im2col
kernels and a float64 reference, taken where they pay, and out of the way where switched
off, not installed or in a forked child."""

import multiprocessing
import os
import platform
import subprocess
import sys

import chainer
import chainer.links as L
import numpy as np
import pytest
from test_layers_nhwc import nchw, relative, run_conv

from layers import onednn, runtime
from layers.conv_nhwc import Branch, convolutions_nhwc

INSTALLED = sys.platform.startswith('linux') and platform.machine() == 'x86_64'
needs_onednn = pytest.mark.skipif(
    not INSTALLED, reason='the onednn-cpu-tbb wheel exists for x86-64 Linux only'
)


@needs_onednn
def test_the_library_loads_where_the_requirements_install_it():
    assert onednn.library() is not None
    assert onednn.version().startswith('3.')
    assert onednn.available(np.float32) and not onednn.available(np.float64)


@needs_onednn
@pytest.mark.parametrize(
    'x_shape, w_shape, stride, pad',
    [
        ((4, 16, 16, 16), (32, 16, 3, 3), 1, 1),
        ((4, 16, 16, 16), (32, 16, 3, 3), 2, 1),
        ((4, 16, 16, 96), (16, 96, 1, 1), 1, 0),
        ((2, 64, 64, 3), (96, 3, 7, 7), 2, 2),  # SqueezeNet's conv1
    ],
)
@pytest.mark.parametrize('add', [False, True])
def test_the_kernels_are_oneDNNs_fast_ones(x_shape, w_shape, stride, pad, add):
    """NHWC data and HWIO weights get the JIT kernels, not the reference code or GEMM-based
    ones (which made training 1.2 to 2.3x slower when the backward read HWIO weights), with
    a bypass added by the kernel too."""
    names = onednn.convolution(x_shape, w_shape, stride, pad, True, add).implementations()
    assert set(names) == {'forward', 'backward_data', 'backward_weights'}
    assert not any(name.startswith('ref') or 'gemm' in name for name in names.values()), names


def test_pays_from_min_flops_on():
    assert onednn.pays(onednn.MIN_FLOPS) and onednn.pays(10 * onednn.MIN_FLOPS)
    assert not onednn.pays(onednn.MIN_FLOPS - 1)  # waking oneDNN's threads would cost more


@pytest.fixture
def small(monkeypatch):
    """oneDNN for the tests' small convolutions too."""
    monkeypatch.setattr(onednn, 'MIN_FLOPS', 0)


class Calls:
    """Counts oneDNN's forward and backward runs (the path was taken, not only correct): a
    convolution's or, for a 1x1 branch writing columns of a wider output, a matmul's."""

    def __init__(self, monkeypatch):
        self.forward = self.backward = 0
        run_forward, run_backward = onednn.Convolution.run_forward, onednn.Convolution.run_backward

        def forward(conv, *args):
            self.forward += 1
            return run_forward(conv, *args)

        def backward(conv, *args):
            self.backward += 1
            return run_backward(conv, *args)

        def product(matmul, *args):
            self.forward += 1
            return run_product(matmul, *args)

        run_product = onednn.Matmul.run_forward
        monkeypatch.setattr(onednn.Convolution, 'run_forward', forward)
        monkeypatch.setattr(onednn.Convolution, 'run_backward', backward)
        monkeypatch.setattr(onednn.Matmul, 'run_forward', product)


CASES = [
    # (in, out, ksize, stride, pad, input size), bias, bypass
    ([(8, 16, 3, 1, 1, 10)], True, False),
    ([(3, 12, 7, 2, 2, 17)], True, False),  # SqueezeNet's conv1: 3 channels, 7x7/2
    ([(16, 8, 1, 1, 0, 6)], True, False),
    ([(16, 8, 3, 2, 1, 9)], True, False),
    ([(12, 8, 5, 1, 2, 7)], False, False),
    ([(8, 4, 1, 1, 0, 8), (8, 8, 3, 1, 1, 8)], True, False),  # a Fire module's expands
    ([(8, 8, 3, 1, 1, 8)], True, True),  # a residual block's second convolution
    ([(8, 4, 1, 1, 0, 8), (8, 8, 3, 1, 1, 8)], False, True),
]


@needs_onednn
@pytest.mark.parametrize('case, bias, bypass', CASES)
def test_onednn_equals_the_im2col_path_and_float64(case, bias, bypass, rng, monkeypatch, small):
    convs = [
        L.Convolution2D(c, o, k, stride=s, pad=p, nobias=not bias) for c, o, k, s, p, _ in case
    ]
    for conv in convs:
        if bias:
            conv.b.array[...] = rng.normal(size=conv.b.shape)
    xs = [rng.normal(size=(3, size, size, c)).astype(np.float32) for c, *_, size in case]
    out_size = (case[0][5] + 2 * case[0][4] - case[0][2]) // case[0][3] + 1
    channels = sum(o for _, o, *_ in case)
    gy = rng.normal(size=(3, out_size, out_size, channels)).astype(np.float32)
    r = rng.normal(size=gy.shape).astype(np.float32) if bypass else None
    ref_y, ref_g = run_conv(
        convs, [nchw(x) for x in xs], gy, np.float64, fast=False,
        bypass=None if r is None else nchw(r),
    )  # fmt: skip
    calls = Calls(monkeypatch)
    dnn_y, dnn_g = run_conv(convs, xs, gy, bypass=r)
    runs = len(case)
    assert (calls.forward, calls.backward) == (runs, runs)
    monkeypatch.setitem(onednn._state, 'lib', None)  # the im2col kernels
    im2col_y, im2col_g = run_conv(convs, xs, gy, bypass=r)
    assert (calls.forward, calls.backward) == (runs, runs)
    scale = np.abs(ref_y).max()
    assert relative(dnn_y, ref_y, scale) < 1e-5
    assert relative(dnn_y, im2col_y, scale) < 1e-5
    assert len(dnn_g) == len(ref_g)
    for ref, im2col, dnn in zip(ref_g, im2col_g, dnn_g, strict=True):
        assert dnn.shape == ref.shape and dnn.dtype == np.float32
        scale = np.abs(ref).max()
        assert relative(dnn, ref, scale) < max(1e-5, 4 * relative(im2col, ref, scale))


@needs_onednn
def test_a_normalized_input_in_test_mode(rng, monkeypatch, small):
    """BN-ReLU-Conv in test mode: oneDNN convolves relu(x * scale + shift)."""
    x = rng.normal(size=(2, 9, 9, 8)).astype(np.float32)
    w = (0.2 * rng.normal(size=(16, 8, 3, 3))).astype(np.float32)
    b = rng.normal(size=16).astype(np.float32)
    scale = rng.uniform(0.5, 1.5, 8).astype(np.float32)
    shift = rng.normal(size=8).astype(np.float32)
    calls = Calls(monkeypatch)
    with chainer.no_backprop_mode():
        y = convolutions_nhwc([Branch(1, 1)], [x, w, b], normalize=[(scale, shift)]).array
        assert calls.forward == 1
        z = np.maximum(x * scale + shift, 0)
        monkeypatch.setitem(onednn._state, 'lib', None)
        expected = convolutions_nhwc([Branch(1, 1)], [z, w, b]).array
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@needs_onednn
@pytest.mark.parametrize('add', [False, True])
def test_a_matmul_writes_its_columns_of_a_wider_output(rng, add):
    """A Fire module's 1x1 expand: x @ W.T + b (+ the same columns of a bypass, read where
    they lie) straight into its columns, by oneDNN's JIT GEMM (not the reference code);
    the other columns untouched."""
    x = rng.normal(size=(50, 8)).astype(np.float32)
    w = rng.normal(size=(6, 8)).astype(np.float32)
    b = rng.normal(size=6).astype(np.float32)
    y = rng.normal(size=(50, 16)).astype(np.float32)
    z = rng.normal(size=(50, 16)).astype(np.float32)
    before, z_before = y.copy(), z.copy()
    product = onednn.matmul(50, 8, 6, 16, add)
    assert not product.implementations()['forward'].startswith('ref')
    product.run_forward(x, w, b, y[:, 4:10], z[:, 4:10] if add else None)
    expected = x.astype(np.float64) @ w.T + b + (z[:, 4:10] if add else 0)
    np.testing.assert_allclose(y[:, 4:10], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(
        np.delete(y, range(4, 10), axis=1), np.delete(before, range(4, 10), axis=1)
    )
    np.testing.assert_array_equal(z, z_before)


@needs_onednn
def test_a_convolution_adds_a_bypass_as_it_writes(rng):
    """A convolution whose output is all of y adds the bypass inside the kernel (a binary
    post-op on its dense array), with oneDNN's JIT kernel, not the reference code."""
    x = rng.normal(size=(2, 6, 6, 4)).astype(np.float32)
    w = rng.normal(size=(5, 4, 3, 3)).astype(np.float32)
    b = rng.normal(size=5).astype(np.float32)
    z = rng.normal(size=(2, 6, 6, 5)).astype(np.float32)
    conv = onednn.convolution(x.shape, w.shape, 1, 1, True, True)
    assert not conv.implementations()['forward'].startswith('ref')
    y = np.empty(conv.y_shape, np.float32)
    conv.run_forward(x, w, b, y, z)
    with chainer.no_backprop_mode():
        expected = convolutions_nhwc([Branch(1, 1)], [x, w, b]).array + z
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@needs_onednn
@pytest.mark.parametrize('bypass', [False, True])
def test_a_fire_modules_1x1_expand_runs_as_a_matmul(rng, monkeypatch, small, bypass):
    x = rng.normal(size=(2, 5, 5, 8)).astype(np.float32)
    w1 = rng.normal(size=(4, 8, 1, 1)).astype(np.float32)
    w3 = rng.normal(size=(6, 8, 3, 3)).astype(np.float32)
    r = rng.normal(size=(2, 5, 5, 10)).astype(np.float32) if bypass else None
    used = []
    run = onednn.Matmul.run_forward
    monkeypatch.setattr(onednn.Matmul, 'run_forward', lambda *a: used.append(1) or run(*a))
    branches = [Branch(1, 0, bias=False), Branch(1, 1, bias=False)]
    with chainer.no_backprop_mode():
        y = convolutions_nhwc(branches, [x, w1, x, w3], bypass=r).array
        monkeypatch.setitem(onednn._state, 'lib', None)  # the im2col kernels
        expected = convolutions_nhwc(branches, [x, w1, x, w3], bypass=r).array
    assert used == [1]
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@needs_onednn
def test_each_run_reads_and_writes_its_own_arrays(rng):
    """A primitive's memory objects are kept between runs and pointed at each run's arrays:
    a second run on other arrays gives its own result and leaves the first's alone."""
    conv = onednn.convolution((2, 6, 6, 4), (5, 4, 3, 3), 1, 1, True)
    w = rng.normal(size=(5, 4, 3, 3)).astype(np.float32)
    b = rng.normal(size=5).astype(np.float32)
    xs = [rng.normal(size=(2, 6, 6, 4)).astype(np.float32) for _ in range(2)]
    ys = [np.empty(conv.y_shape, np.float32) for _ in range(2)]
    for x, y in zip(xs, ys, strict=True):
        conv.run_forward(x, w, b, y)
    first = ys[0].copy()
    conv.run_forward(xs[0], w, b, ys[0])
    np.testing.assert_array_equal(ys[0], first)
    assert relative(ys[1], first, np.abs(first).max()) > 0.1
    with chainer.no_backprop_mode():
        expected = [convolutions_nhwc([Branch(1, 1)], [x, w, b]).array for x in xs]
    for y, e in zip(ys, expected, strict=True):
        np.testing.assert_allclose(y, e, rtol=1e-5, atol=1e-5 * np.abs(e).max())


@needs_onednn
def test_the_cache_keeps_the_newest_geometries(rng, monkeypatch, small):
    monkeypatch.setattr(onednn, 'CACHED', 2)
    monkeypatch.setitem(onednn.library(), 'cache', {})
    w = rng.normal(size=(8, 8, 3, 3)).astype(np.float32)
    for n in (1, 2, 3, 2):
        x = rng.normal(size=(n, 6, 6, 8)).astype(np.float32)
        with chainer.no_backprop_mode():
            convolutions_nhwc([Branch(1, 1, bias=False)], [x, w])
    assert [key[1][0] for key in onednn.library()['cache']] == [3, 2]  # 1 went, 2 is newest


def test_switched_off_by_the_variable():
    code = (
        'import numpy as np; from layers import onednn; '
        'print(onednn.library(), onednn.version(), onednn.available(np.float32))'
    )
    env_off = {'LAYERS_ONEDNN': '0'}
    done = subprocess.run(
        [sys.executable, '-c', code], capture_output=True, text=True, check=True,
        env={**os.environ, **env_off},
    )  # fmt: skip
    assert done.stdout.split() == ['None', 'None', 'False']


@needs_onednn
def test_its_threads_follow_the_kernels_thread_count():
    """oneDNN's kernels run in oneTBB's default arena, which would take every core: held to
    the count Numba's loops use (``OMP_NUM_THREADS=1``: an MPI launch, one per core)."""
    code = 'from layers import onednn, runtime; print(onednn.threads(), runtime.cores())'
    free = {k: v for k, v in os.environ.items() if k not in runtime.THREAD_VARIABLES}
    free.pop('NUMBA_NUM_THREADS', None)
    for variable in ('OMP_NUM_THREADS', 'NUMBA_NUM_THREADS'):  # the user's choice for Numba too
        run = {**free, variable: '1'}
        done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=run)
        assert done.stdout.split()[0] == '1', (variable, done.stderr)
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=free)
    threads, cores = done.stdout.split()
    assert threads == cores


def _child_forward(x, w):
    with chainer.no_backprop_mode():
        y = convolutions_nhwc([Branch(1, 1, bias=False)], [x, w]).array
    return y, onednn.library() is None


@needs_onednn
def test_a_forked_child_runs_the_im2col_kernels(rng, small):
    """A fork after oneTBB's workers started is outside what oneTBB supports: the child falls
    back to the im2col kernels (same results within rounding)."""
    x = rng.normal(size=(2, 8, 8, 8)).astype(np.float32)
    w = rng.normal(size=(8, 8, 3, 3)).astype(np.float32)
    with chainer.no_backprop_mode():
        expected = convolutions_nhwc([Branch(1, 1, bias=False)], [x, w]).array
    assert onednn.library() is not None
    with multiprocessing.get_context('fork').Pool(1) as pool:
        y, fell_back = pool.apply_async(_child_forward, (x, w)).get(timeout=120)
    assert fell_back
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
