"""The NHWC fast-path nodes against Chainer's plain functions, with a float64 reference.

Each node is compared on small shapes: forward, every gradient, BN running statistics,
NaN propagation, and double backprop (where the node falls back to Chainer's functions).
"""

import chainer
import chainer.functions as F
import chainer.links as L
import numpy as np
import pytest

from layers import conv_blocks, nhwc


def nchw(a):
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2))


def nhwc_array(a):
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def relative(a, b, scale):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / scale)


def run_conv(pairs, x_arrays, gy, dtype=np.float32, fast=True, bypass=None):
    """Outputs and gradients of concatenated convolutions, fast (NHWC) or plain (NCHW),
    plus ``bypass`` (NHWC or NCHW as the path) added to the output when given."""
    xs = [chainer.Variable(x.astype(dtype)) for x in x_arrays]
    r = None if bypass is None else chainer.Variable(bypass.astype(dtype))
    links = []
    for conv in pairs:
        link = conv.copy(mode='copy')
        for p in link.params():
            p.array = p.array.astype(dtype)
        link.cleargrads()
        links.append(link)
    if fast:
        y = nhwc.concat_convolutions(list(zip(links, xs, strict=True)), bypass=r)
        y.grad = gy.astype(dtype)
        y.backward()
        out = y.array
    else:
        y = F.concat([link(nchw_v) for link, nchw_v in zip(links, xs, strict=True)], axis=1)
        y = y if r is None else y + r
        y.grad = nchw(gy).astype(dtype)
        y.backward()
        out = nhwc_array(y.array)
    grads = [x.grad if fast else nhwc_array(x.grad) for x in xs]
    for link in links:
        grads += [p.grad for _, p in sorted(link.namedparams())]
    if r is not None:
        grads.append(r.grad if fast else nhwc_array(r.grad))
    return out, grads


CONV_CASES = [
    # (in, out, ksize, stride, pad, input size)
    [(4, 6, 1, 1, 0, 5)],
    [(3, 8, 7, 2, 2, 13)],
    [(5, 4, 3, 1, 1, 6)],
    [(3, 4, 3, 2, 0, 9)],
    [(4, 3, 1, 1, 0, 6), (4, 5, 3, 1, 1, 6)],  # a Fire module's expands into one buffer
    [(8, 8, 3, 1, 1, 16)],  # shifted GEMMs (conv_blocks.shifted_pays)
    [(8, 4, 1, 1, 0, 16), (8, 8, 3, 1, 1, 16)],  # shifted GEMMs into a column slice
]


@pytest.mark.parametrize('case', CONV_CASES)
def test_convolutions_equal_chainers_against_float64(case, rng):
    convs = [L.Convolution2D(c, o, k, stride=s, pad=p) for c, o, k, s, p, _ in case]
    for conv in convs:
        conv.b.array[...] = rng.normal(size=conv.b.shape)
    xs = [rng.normal(size=(2, size, size, c)).astype(np.float32) for c, *_, size in case]
    out_size = (case[0][5] + 2 * case[0][4] - case[0][2]) // case[0][3] + 1
    channels = sum(o for _, o, *_ in case)
    gy = rng.normal(size=(2, out_size, out_size, channels)).astype(np.float32)
    xs_nchw = [nchw(x) for x in xs]
    ref_y, ref_g = run_conv(convs, xs_nchw, gy, np.float64, fast=False)
    plain_y, plain_g = run_conv(convs, xs_nchw, gy, fast=False)
    fast_y, fast_g = run_conv(convs, xs, gy)
    assert fast_y.dtype == np.float32 and fast_y.shape == plain_y.shape
    scale = np.abs(ref_y).max()
    assert relative(fast_y, ref_y, scale) < 1e-5
    for ref, plain, fast in zip(ref_g, plain_g, fast_g, strict=True):
        assert fast.shape == ref.shape and fast.dtype == np.float32
        scale = np.abs(ref).max()
        assert relative(fast, ref, scale) < max(1e-5, 4 * relative(plain, ref, scale))


@pytest.mark.parametrize('case', [CONV_CASES[1], CONV_CASES[4]])
def test_convolutions_without_the_blocked_kernels(case, rng, monkeypatch):
    """Where BLAS cannot be called from the kernels' threads: whole-batch im2col + GEMM."""
    monkeypatch.setattr(conv_blocks, '_REGISTERED', False)
    monkeypatch.setattr(conv_blocks, 'forward', None)  # never called
    monkeypatch.setattr(conv_blocks, 'backward', None)
    test_convolutions_equal_chainers_against_float64(case, rng)


@pytest.mark.parametrize('bias', [True, False])
def test_a_bypass_is_added_inside_the_convolutions(bias, rng):
    case = [(4, 3, 1, 1, 0, 6), (4, 5, 3, 1, 1, 6)]  # a Fire module's expands
    convs = [
        L.Convolution2D(c, o, k, stride=s, pad=p, nobias=not bias) for c, o, k, s, p, _ in case
    ]
    for conv in convs:
        if bias:
            conv.b.array[...] = rng.normal(size=conv.b.shape)
    xs = [rng.normal(size=(2, 6, 6, 4)).astype(np.float32) for _ in case]
    bypass = rng.normal(size=(2, 6, 6, 8)).astype(np.float32)
    bypass[1, 2, 3, 4] = np.nan
    gy = rng.normal(size=(2, 6, 6, 8)).astype(np.float32)
    args = [nchw(x) for x in xs], gy
    ref_y, ref_g = run_conv(convs, *args, np.float64, fast=False, bypass=nchw(bypass))
    plain_y, plain_g = run_conv(convs, *args, fast=False, bypass=nchw(bypass))
    fast_y, fast_g = run_conv(convs, xs, gy, bypass=bypass)
    np.testing.assert_array_equal(np.isnan(fast_y), np.isnan(ref_y))
    assert np.isnan(fast_y).sum() == 1
    finite = np.isfinite(ref_y)
    assert relative(fast_y[finite], ref_y[finite], np.abs(ref_y[finite]).max()) < 1e-5
    assert len(fast_g) == len(ref_g)
    np.testing.assert_array_equal(fast_g[-1], gy)  # the bypass's gradient
    for ref, plain, fast in zip(ref_g, plain_g, fast_g, strict=True):
        scale = np.abs(ref).max()
        assert relative(fast, ref, scale) < max(1e-5, 4 * relative(plain, ref, scale))


def test_double_backprop_through_a_bypass_and_a_shared_input(rng):
    """One input into both convolutions: each position gets its own gradient (not the sum)."""
    convs = [L.Convolution2D(3, 2, 1), L.Convolution2D(3, 2, 3, pad=1)]
    x = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
    r = rng.normal(size=(2, 4, 4, 4)).astype(np.float32)

    def plain(v, w):
        h = F.transpose(v, (0, 3, 1, 2))
        y = F.concat([conv(h) for conv in convs], axis=1)
        return F.transpose(y, (0, 2, 3, 1)) + w

    def fast(v, w):
        return nhwc.concat_convolutions([(conv, v) for conv in convs], bypass=w)

    a = double_backprop(plain, [chainer.Variable(x.copy()), chainer.Variable(r.copy())])
    b = double_backprop(fast, [chainer.Variable(x.copy()), chainer.Variable(r.copy())])
    for u, v in zip(a[0] + a[1], b[0] + b[1], strict=True):
        np.testing.assert_allclose(v, u, rtol=1e-4, atol=1e-5)


def bn_pair(c, rng):
    bn = L.BatchNormalization(c)
    bn.gamma.array[...] = rng.uniform(0.5, 1.5, c)
    bn.beta.array[...] = rng.normal(size=c)
    bn.avg_mean[...] = rng.normal(size=c)
    bn.avg_var[...] = rng.uniform(0.5, 2, c)
    return bn, bn.copy(mode='copy')


def assert_same_bn(plain_bn, fast_bn):
    """The fast path's gamma and beta gradients and running statistics are Chainer's."""
    for name in ('gamma', 'beta'):
        a, b = getattr(plain_bn, name).grad, getattr(fast_bn, name).grad
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
    for name in ('avg_mean', 'avg_var'):
        np.testing.assert_allclose(
            getattr(fast_bn, name), getattr(plain_bn, name), rtol=1e-5, atol=1e-6
        )


@pytest.mark.parametrize('train', [True, False])
def test_bn_relu_equals_chainers(train, rng):
    x = (3 + 2 * rng.normal(size=(3, 5, 4, 6))).astype(np.float32)  # NHWC, mean far from 0
    gy = rng.normal(size=x.shape).astype(np.float32)
    plain_bn, fast_bn = bn_pair(6, rng)
    with chainer.using_config('train', train):
        xa, xb = chainer.Variable(nchw(x)), chainer.Variable(x.copy())
        ya = F.relu(plain_bn(xa))
        yb = nhwc.bn_relu(fast_bn, xb)
        np.testing.assert_allclose(yb.array, nhwc_array(ya.array), rtol=1e-5, atol=1e-5)
        ya.grad, yb.grad = nchw(gy), gy
        ya.backward()
        yb.backward()
    np.testing.assert_allclose(xb.grad, nhwc_array(xa.grad), rtol=1e-4, atol=1e-5)
    assert_same_bn(plain_bn, fast_bn)


@pytest.mark.parametrize('train', [True, False])
@pytest.mark.parametrize('passthrough', [False, True])
def test_shared_bn_relus_equal_chainers(train, passthrough, rng):
    """Two normalizations of one input (and the input itself) as one node: every output,
    gradient and running statistic as two links and a sum of gradients give."""
    x = (3 + 2 * rng.normal(size=(3, 5, 4, 6))).astype(np.float32)
    gys = [rng.normal(size=x.shape).astype(np.float32) for _ in range(3)]
    pairs = [bn_pair(6, rng) for _ in range(2)]
    pairs[1][0].eps = pairs[1][1].eps = 1e-3
    with chainer.using_config('train', train):
        xa, xb = chainer.Variable(nchw(x)), chainer.Variable(x.copy())
        ya = [F.relu(plain(xa)) for plain, _ in pairs] + ([F.identity(xa)] if passthrough else [])
        yb = nhwc.bn_relus([fast for _, fast in pairs], xb, passthrough=passthrough)
        assert len(yb) == len(ya)
        for a, b, gy in zip(ya, yb, gys, strict=False):
            np.testing.assert_allclose(b.array, nhwc_array(a.array), rtol=1e-5, atol=1e-5)
            a.grad, b.grad = nchw(gy), gy
        chainer.grad(ya, [xa] + [p for plain, _ in pairs for p in plain.params()], set_grad=True)
        chainer.grad(yb, [xb] + [p for _, fast in pairs for p in fast.params()], set_grad=True)
    if passthrough:
        assert yb[-1].array is xb.array  # the input itself, no copy
    np.testing.assert_allclose(xb.grad, nhwc_array(xa.grad), rtol=1e-4, atol=1e-5)
    for plain, fast in pairs:
        for name in ('gamma', 'beta'):
            a, b = getattr(plain, name).grad, getattr(fast, name).grad
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
        for name in ('avg_mean', 'avg_var'):
            a, b = getattr(plain, name), getattr(fast, name)
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_shared_bn_relus_against_float64_and_nan_as_chainer(rng):
    x = rng.normal(size=(2, 4, 4, 3))
    gys = [rng.normal(size=x.shape) for _ in range(3)]
    (_, bn1), (_, bn2) = bn_pair(3, rng), bn_pair(3, rng)

    def run(dtype, fast=True, nan=False):
        links = [bn.copy(mode='copy') for bn in (bn1, bn2)]
        for link in links:
            link.gamma.array = link.gamma.array.astype(dtype)
            link.beta.array = link.beta.array.astype(dtype)
        data = x.copy()
        if nan:
            data[1, 2, 3, 0] = np.nan
        v = chainer.Variable(data.astype(dtype) if fast else nchw(data).astype(dtype))
        if fast:
            ys = nhwc.bn_relus(links, v, passthrough=True)
            grads = [gy.astype(dtype) for gy in gys]
        else:
            ys = [F.relu(link(v)) for link in links] + [F.identity(v)]
            grads = [nchw(gy).astype(dtype) for gy in gys]
        for y, gy in zip(ys, grads, strict=True):
            y.grad = gy
        chainer.grad(ys, [v] + [p for link in links for p in link.params()], set_grad=True)
        outputs = [y.array if fast else nhwc_array(y.array) for y in ys]
        gx = v.grad if fast else nhwc_array(v.grad)
        return outputs + [gx] + [p.grad for link in links for p in (link.gamma, link.beta)]

    for ref, fast in zip(run(np.float64), run(np.float32), strict=True):
        assert fast.dtype == np.float32
        np.testing.assert_allclose(fast, ref, rtol=1e-4, atol=1e-5)
    fast, plain = run(np.float32, nan=True), run(np.float32, fast=False, nan=True)
    assert np.isnan(fast[0][..., 0]).all() and np.isnan(fast[3]).any()  # channel 0, and gx
    for a, b in zip(fast, plain, strict=True):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))


@pytest.mark.parametrize('train', [True, False])
def test_bn_add_relu_equals_chainers(train, rng):
    """relu(bn(x) + r) as one node: output, the gradients of x, r, gamma and beta, and the
    running statistics as Chainer's link, add and ReLU give them."""
    x = (3 + 2 * rng.normal(size=(3, 5, 4, 6))).astype(np.float32)
    r = rng.normal(size=x.shape).astype(np.float32)
    gy = rng.normal(size=x.shape).astype(np.float32)
    plain_bn, fast_bn = bn_pair(6, rng)
    with chainer.using_config('train', train):
        xa, ra = chainer.Variable(nchw(x)), chainer.Variable(nchw(r))
        xb, rb = chainer.Variable(x.copy()), chainer.Variable(r.copy())
        ya = F.relu(plain_bn(xa) + ra)
        yb = nhwc.bn_add_relu(fast_bn, xb, rb)
        assert (yb.array == 0).any() and (yb.array > 0).any()  # the ReLU does something
        np.testing.assert_allclose(yb.array, nhwc_array(ya.array), rtol=1e-5, atol=1e-5)
        ya.grad, yb.grad = nchw(gy), gy
        ya.backward()
        yb.backward()
    for a, b in ((xa, xb), (ra, rb)):
        np.testing.assert_allclose(b.grad, nhwc_array(a.grad), rtol=1e-4, atol=1e-5)
    assert_same_bn(plain_bn, fast_bn)


def test_bn_add_relu_double_backprop_and_nan_as_chainer(rng):
    x = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
    r = rng.normal(size=x.shape).astype(np.float32)
    x[1, 2, 3, 0] = np.nan
    plain_bn, fast_bn = bn_pair(3, rng)
    with chainer.using_config('train', True):
        xa, ra = chainer.Variable(nchw(x)), chainer.Variable(nchw(r))
        xb, rb = chainer.Variable(x.copy()), chainer.Variable(r.copy())
        ya, yb = F.relu(plain_bn(xa) + ra), nhwc.bn_add_relu(fast_bn, xb, rb)
    np.testing.assert_array_equal(np.isnan(yb.array), np.isnan(nhwc_array(ya.array)))
    x = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
    xa, ra = chainer.Variable(nchw(x)), chainer.Variable(nchw(r))
    xb, rb = chainer.Variable(x.copy()), chainer.Variable(r.copy())
    with chainer.using_config('train', True):
        outs = []
        for bn, xv, rv in ((plain_bn, xa, ra), (fast_bn, xb, rb)):
            y = F.relu(bn(xv) + rv) if bn is plain_bn else nhwc.bn_add_relu(bn, xv, rv)
            (gx,) = chainer.grad([F.sum(y * y)], [xv], enable_double_backprop=True)
            (ggx,) = chainer.grad([F.sum(gx * gx)], [rv])
            outs.append(ggx.array)
    np.testing.assert_allclose(outs[1], nhwc_array(outs[0]), rtol=1e-3, atol=1e-4)


def test_bn_relu_does_not_touch_the_statistics_while_recomputing(rng):
    _, bn = bn_pair(3, rng)
    before = bn.avg_mean.copy()
    with chainer.using_config('train', True), chainer.using_config('in_recomputing', True):
        nhwc.bn_relu(bn, rng.normal(size=(2, 3, 3, 3)).astype(np.float32))
    np.testing.assert_array_equal(bn.avg_mean, before)


POOL_CASES = [((2, 9, 9, 3), 3, 2, 1), ((1, 8, 7, 2), 2, 2, 0), ((2, 6, 6, 4), 3, 1, 1)]


@pytest.mark.parametrize('shape, k, s, p', POOL_CASES)
def test_max_pooling_equals_chainers_with_ties(shape, k, s, p, rng):
    x = rng.integers(0, 3, shape).astype(np.float32)  # ties everywhere
    x[0, 1, 1, 0] = np.nan
    xa, xb = chainer.Variable(nchw(x)), chainer.Variable(x.copy())
    ya = F.max_pooling_2d(xa, k, stride=s, pad=p)
    yb = nhwc.max_pooling(xb, k, s, p)
    np.testing.assert_array_equal(yb.array, nhwc_array(ya.array))
    gy = rng.normal(size=yb.shape).astype(np.float32)
    ya.grad, yb.grad = nchw(gy), gy
    ya.backward()
    yb.backward()
    np.testing.assert_array_equal(xb.grad, nhwc_array(xa.grad))


def double_backprop(function, inputs):
    """First and second-order gradients of sum(f(x)^2) for every input."""
    (y,) = [function(*inputs)]
    first = chainer.grad([F.sum(y * y)], inputs, enable_double_backprop=True)
    second = chainer.grad([F.sum(g * g) for g in first if g is not None], inputs)
    return [g.array for g in first], [None if g is None else g.array for g in second]


def test_double_backprop_equals_the_plain_composition(rng):
    conv = L.Convolution2D(3, 4, 3, pad=1)
    plain_bn, fast_bn = bn_pair(3, rng)
    x = rng.normal(size=(2, 5, 5, 3)).astype(np.float32)

    def plain(v):
        h = F.relu(plain_bn(F.transpose(v, (0, 3, 1, 2))))
        h = F.max_pooling_2d(conv(h), 3, stride=2, pad=1)
        return F.transpose(h, (0, 2, 3, 1))

    def fast(v):
        return nhwc.max_pooling(nhwc.convolution(conv, nhwc.bn_relu(fast_bn, v)), 3, 2, 1)

    with chainer.using_config('train', True):
        a = double_backprop(plain, [chainer.Variable(x.copy())])
        b = double_backprop(fast, [chainer.Variable(x.copy())])
    for u, v in zip(a[0] + a[1], b[0] + b[1], strict=True):
        np.testing.assert_allclose(v, u, rtol=1e-4, atol=1e-5)


def test_double_backprop_through_shared_bn_relus(rng):
    pairs = [bn_pair(3, rng) for _ in range(2)]
    x = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)

    def plain(v):
        h = F.transpose(v, (0, 3, 1, 2))
        ys = [F.transpose(F.relu(bn(h)), (0, 2, 3, 1)) for bn, _ in pairs]
        return ys[0] * ys[1] + v

    def fast(v):
        a, b, same = nhwc.bn_relus([bn for _, bn in pairs], v, passthrough=True)
        return a * b + same

    with chainer.using_config('train', True):
        a = double_backprop(plain, [chainer.Variable(x.copy())])
        b = double_backprop(fast, [chainer.Variable(x.copy())])
    for u, v in zip(a[0] + a[1], b[0] + b[1], strict=True):
        np.testing.assert_allclose(v, u, rtol=1e-4, atol=1e-4)


def test_nan_in_the_input_or_a_weight_reaches_the_output(rng):
    conv = L.Convolution2D(3, 4, 3, pad=1)
    _, bn = bn_pair(3, rng)
    x = rng.normal(size=(1, 4, 4, 3)).astype(np.float32)
    x[0, 2, 2, 1] = np.nan
    with chainer.using_config('train', False):
        y = nhwc.convolution(conv, nhwc.bn_relu(bn, x))
        assert np.isnan(y.array).any()
        conv.W.array[0, 0, 0, 0] = np.inf
        y = nhwc.max_pooling(nhwc.convolution(conv, x * 0), 2, 2, 0)
        assert not np.isfinite(y.array).all()
