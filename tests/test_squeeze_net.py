"""SqueezeNet v1.0 with simple bypass: shapes, size, gradients, modes, serialization."""

import multiprocessing

import chainer
import chainer.functions as F
import chainer.links as L
import numpy as np
import pytest

from squeeze_net import SqueezeNet


def unit(c_in, c_out, k):
    """BN (gamma, beta) + conv weight + conv bias."""
    return 2 * c_in + c_in * c_out * k * k + c_out


def fire(c_in, s, e1, e3):
    return unit(c_in, s, 1) + unit(s, e1, 1) + unit(s, e3, 3)


# Per layer, from the spec: conv1 is a plain 7x7 conv with bias, every other conv BN-ReLU-Conv.
LAYER_PARAMS = {
    'conv1': 3 * 96 * 7 * 7 + 96,  # 14208
    'fire2': fire(96, 16, 64, 64),  # 12176
    'fire3': fire(128, 16, 64, 64),  # 12752
    'fire4': fire(128, 32, 128, 128),  # 45728
    'fire5': fire(256, 32, 128, 128),  # 50080
    'fire6': fire(256, 48, 192, 192),  # 105584
    'fire7': fire(384, 48, 192, 192),  # 111984
    'fire8': fire(384, 64, 256, 256),  # 190016
    'fire9': fire(512, 64, 256, 256),  # 198464
    'conv10': unit(512, 10, 1),  # 6154
}


@pytest.fixture(scope='module')
def model():
    return SqueezeNet(10)


def test_parameter_count_matches_the_spec_layer_by_layer(model):
    for name, expected in LAYER_PARAMS.items():
        assert sum(p.size for p in model[name].params()) == expected, name
    assert model.count_params() == sum(LAYER_PARAMS.values()) == 747146
    assert model.conv1.W.shape == (96, 3, 7, 7)
    assert (model.conv1.stride, model.conv1.pad) == ((2, 2), (2, 2))


def test_class_count_changes_only_conv10():
    model = SqueezeNet(100)
    assert model.count_params() == 747146 - unit(512, 10, 1) + unit(512, 100, 1)


@pytest.mark.parametrize('size', [32, 122, 128])
def test_logits_shape(model, size, rng):
    x = rng.normal(size=(2, 3, size, size)).astype(np.float32)
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        assert model(x).shape == (2, 10)


def test_forward_follows_the_spec_written_out(model, rng):
    def pool(h):
        return F.max_pooling_2d(h, 3, stride=2, pad=1)

    def fire(f, h):  # squeeze, both expands concatenated (the bypass is written out below)
        s = f.squeeze(h)
        return F.concat((f.expand1(s), f.expand3(s)), axis=1)

    m = model
    x = rng.normal(size=(2, 3, 32, 32)).astype(np.float32)
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        h = pool(m.conv1(x))
        h = fire(m.fire2, h)
        h = fire(m.fire3, h) + h
        h = pool(fire(m.fire4, h))
        h = fire(m.fire5, h) + h
        h = fire(m.fire6, h)
        h = fire(m.fire7, h) + h
        h = pool(fire(m.fire8, h))
        h = fire(m.fire9, h) + h
        expected = F.mean(m.conv10(h), axis=(2, 3)).array
        scale = np.abs(expected).max()  # the fast path's float32 rounding, relative to it
        np.testing.assert_allclose(m(x).array, expected, rtol=1e-4, atol=1e-5 * scale)


def test_backward_gives_finite_gradients_everywhere(rng):
    model = SqueezeNet(10)
    x = rng.normal(size=(4, 3, 32, 32)).astype(np.float32)
    t = np.array([0, 1, 2, 3], dtype=np.int32)
    loss = F.softmax_cross_entropy(model(x), t)
    model.cleargrads()
    loss.backward()
    for name, param in model.namedparams():
        assert param.grad is not None, name
        assert np.all(np.isfinite(param.grad)), name
        assert np.any(param.grad != 0), name


def test_train_and_test_modes(rng):
    model = SqueezeNet(10)
    x = rng.normal(size=(4, 3, 32, 32)).astype(np.float32)
    with chainer.using_config('train', False):
        a, b = model(x).array, model(x).array
    np.testing.assert_array_equal(a, b)  # test mode is deterministic
    before = model.fire2.squeeze.bn.avg_mean.copy()
    with chainer.using_config('train', True):
        c, d = model(x).array, model(x).array
    assert not np.allclose(c, d)  # dropout differs between calls
    assert not np.allclose(model.fire2.squeeze.bn.avg_mean, before)  # BN statistics updated
    with chainer.using_config('train', False):
        e = model(x).array
    assert not np.allclose(a, e)  # test mode uses the running statistics


def test_npz_round_trip_gives_identical_outputs(tmp_path, rng):
    model = SqueezeNet(10)
    x = rng.normal(size=(2, 3, 32, 32)).astype(np.float32)
    with chainer.using_config('train', True):
        model(x)  # move the BN statistics away from their initial values
    chainer.serializers.save_npz(tmp_path / 'model.npz', model)
    other = SqueezeNet(10)
    chainer.serializers.load_npz(tmp_path / 'model.npz', other)
    with chainer.using_config('train', False):
        np.testing.assert_array_equal(model(x).array, other(x).array)


def test_sgd_steps_drive_the_loss_down(rng):
    model = L.Classifier(SqueezeNet(10))
    optimizer = chainer.optimizers.MomentumSGD(lr=0.01, momentum=0.9)
    optimizer.setup(model)
    x = rng.normal(size=(8, 3, 32, 32)).astype(np.float32)
    t = np.arange(8, dtype=np.int32) % 10
    with chainer.using_config('train', False):
        first = float(model(x, t).array)
    for _ in range(15):
        optimizer.update(model, x, t)
    with chainer.using_config('train', False):
        last = float(model(x, t).array)
    assert last < 0.5 * first


# -- the CPU fast path (NHWC nodes) against the plain composition and a float64 reference ----
#
# In float64 both paths compute the same function to rounding (1e-14), so they are compared
# tightly: every gradient, BN statistics, test-mode outputs, training steps. In float32 a
# pre-ReLU value within rounding of 0 can fall on either side of the kink in either path
# (plain included), which moves a gradient by up to about 1 % in norm; there both paths are
# compared with a float64 run. Conv biases right before a train-mode BN have gradient 0
# (the BN cancels them), so their float32 values are rounding noise and are left out there.


def cast(model, dtype):
    """A copy of ``model`` whose parameters and BN statistics are ``dtype``."""
    other = model.copy(mode='copy')
    for param in other.params():
        param.array = param.array.astype(dtype)
    for link in other.links():
        if isinstance(link, L.BatchNormalization):
            link.avg_mean = link.avg_mean.astype(dtype)
            link.avg_var = link.avg_var.astype(dtype)
    return other


def step(model, x, t, fast):
    """Train-mode logits, every gradient (parameters and input), BN statistics, test logits
    with backprop on, and test logits for inference (no graph: BN inside the convolutions)."""
    model = model.copy(mode='copy')
    model.fast = fast
    model.cleargrads()
    v = chainer.Variable(x.copy())
    with chainer.using_config('train', True):
        y = model(v)
        F.softmax_cross_entropy(y, t).backward()
    grads = {name: p.grad for name, p in model.namedparams()}
    grads['input'] = v.grad
    stats = {
        name + '/' + key: np.array(getattr(link, key))
        for name, link in model.namedlinks()
        if isinstance(link, L.BatchNormalization)
        for key in ('avg_mean', 'avg_var')
    }
    with chainer.using_config('train', False):
        test_y = model(x).array
        with chainer.no_backprop_mode():
            infer_y = model(x).array
    return y.array, grads, stats, test_y, infer_y


def norm_error(a, ref):
    ref = np.asarray(ref, np.float64)
    return float(np.linalg.norm(np.asarray(a, np.float64) - ref) / np.linalg.norm(ref))


def before_bn(name):
    return name.endswith('/conv/b') or name == '/conv1/b'


@pytest.fixture(scope='module')
def batch():
    """A model with non-trivial BN statistics, and a batch to compare the paths on."""
    np.random.seed(11)
    model = SqueezeNet(10, dropout=0.0)
    rng = np.random.default_rng(11)
    x = rng.normal(size=(4, 3, 36, 36)).astype(np.float32)
    with chainer.using_config('train', True):
        model(x)  # move the BN statistics away from 0 and 1
    return model, x, np.array([0, 3, 5, 9], np.int32)


def test_fast_path_equals_plain_in_float64(batch):
    model, x, t = batch
    model, x = cast(model, np.float64), x.astype(np.float64)
    plain, fast = step(model, x, t, fast=False), step(model, x, t, fast=True)
    for index in (0, 3, 4):  # train-mode, test-mode and inference logits
        np.testing.assert_allclose(fast[index], plain[index], rtol=1e-10, atol=1e-12)
    overall = max(np.abs(g).max() for g in plain[1].values())
    assert set(fast[1]) == set(plain[1])
    for name, g in plain[1].items():
        assert fast[1][name].dtype == np.float64, name
        np.testing.assert_allclose(fast[1][name], g, rtol=1e-8, atol=1e-10 * overall, err_msg=name)
    for name, value in plain[2].items():
        np.testing.assert_allclose(fast[2][name], value, rtol=1e-10, err_msg=name)


def test_fast_path_in_float32_is_as_close_to_float64_as_plain(batch):
    model, x, t = batch
    ref = step(cast(model, np.float64), x.astype(np.float64), t, fast=False)
    plain, fast = step(model, x, t, fast=False), step(model, x, t, fast=True)
    for index in (0, 3, 4):
        assert norm_error(fast[index], ref[index]) < max(
            1e-5, 4 * norm_error(plain[index], ref[index])
        )
    for name, g in ref[1].items():
        assert fast[1][name].dtype == np.float32, name
        if not before_bn(name):
            assert norm_error(fast[1][name], g) < 3e-2, name
    errors = [norm_error(fast[1][n], g) for n, g in ref[1].items() if not before_bn(n)]
    assert np.median(errors) < 1e-3
    for name, value in ref[2].items():
        assert norm_error(fast[2][name], value) < 1e-5, name


def test_fast_path_is_the_default_and_deterministic(batch):
    model, x, t = batch
    assert SqueezeNet(10).fast is True
    a, b = step(model, x, t, fast=True), step(model, x, t, fast=True)
    np.testing.assert_array_equal(a[0], b[0])
    for name in a[1]:
        np.testing.assert_array_equal(a[1][name], b[1][name], err_msg=name)


@pytest.mark.parametrize('blocked', [True, False])
def test_inference_normalizes_inside_the_convolutions(batch, blocked, monkeypatch):
    """Test mode without a graph: each BN + ReLU runs in its convolution's blocks (or, with
    no blocked kernels, as a pass of its own); the logits are the plain path's, NaN kept."""
    from layers import conv_blocks

    normalized = []
    if blocked:
        forward = conv_blocks.forward

        def spy(x, scale, *args):
            normalized.append(scale.shape[0] > 0)
            return forward(x, scale, *args)

        monkeypatch.setattr(conv_blocks, 'forward', spy)
    else:
        monkeypatch.setattr(conv_blocks, '_REGISTERED', False)
    model, x, _ = batch
    model, x = cast(model, np.float64), x.astype(np.float64)
    plain = model.copy(mode='copy')
    plain.fast = False
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        expected = plain(x).array
        np.testing.assert_allclose(model(x).array, expected, rtol=1e-10, atol=1e-12)
        x[1, 0, 5, 5] = np.nan
        y = model(x).array
    assert np.isnan(y[1]).all() and np.isfinite(np.delete(y, 1, axis=0)).all()
    if blocked:  # conv1 alone has no BN before it
        assert normalized.count(False) == 2 and normalized.count(True) == 2 * 25


def train_steps(model, fast, x, t, steps=3):
    model = model.copy(mode='copy')
    model.fast = fast
    classifier = L.Classifier(model)
    optimizer = chainer.optimizers.MomentumSGD(lr=0.05, momentum=0.9)
    optimizer.setup(classifier)
    optimizer.add_hook(chainer.optimizer_hooks.WeightDecay(1e-4))
    for _ in range(steps):
        optimizer.update(classifier, x, t)
    return {name: p.array.copy() for name, p in model.namedparams()}


def test_training_steps_end_at_the_same_weights(batch):
    model, x, t = batch
    model, x = cast(model, np.float64), x.astype(np.float64)
    plain, fast = train_steps(model, False, x, t), train_steps(model, True, x, t)
    for name, value in plain.items():
        np.testing.assert_allclose(fast[name], value, rtol=1e-9, atol=1e-12, err_msg=name)


def test_dropout_draws_the_same_mask_on_both_paths(batch):
    model, x, _ = batch
    outputs = []
    for fast in (False, True):
        other = model.copy(mode='copy')
        other.fast, other.dropout = fast, 0.5
        np.random.seed(3)
        with chainer.using_config('train', True):
            outputs.append(other(x).array)
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('where', ['input', 'weight'])
def test_nan_reaches_the_loss_on_the_fast_path(where, batch):
    model, x, t = batch
    model = model.copy(mode='copy')
    x = x.copy()
    if where == 'input':
        x[1, 2, 5, 5] = np.nan
    else:
        model.fire4.expand3.conv.W.array[0, 0, 1, 1] = np.inf
    with chainer.using_config('train', True):
        loss = F.softmax_cross_entropy(model(x), t)
    assert not np.isfinite(loss.array)


def test_double_backprop_through_the_fast_path_equals_plain(batch):
    model, x, _ = batch
    model = cast(model, np.float64)
    results = []
    for fast in (False, True):
        other = model.copy(mode='copy')
        other.fast = fast
        v = chainer.Variable(x[:2].astype(np.float64))
        with chainer.using_config('train', True):
            y = other(v)
            (gx,) = chainer.grad([F.sum(y * y)], [v], enable_double_backprop=True)
            other.cleargrads()
            F.sum(gx * gx).backward()
        results.append((gx.array, other.conv1.W.grad.copy(), other.fire2.squeeze.bn.gamma.grad))
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-8, atol=1e-12)


def test_the_fast_path_survives_a_fork(batch):
    """Forked augmentation workers (MultiprocessIterator) inherit a process that ran kernels:
    the child's forward gives the parent's results (within float32 rounding: where oneDNN
    ran the parent's convolutions, the child's run on the im2col kernels)."""
    model, x, _ = batch
    with chainer.using_config('train', False):
        expected = model(x).array
    context = multiprocessing.get_context('fork')
    with context.Pool(1) as pool:
        result = pool.apply_async(_forward_in_child, (model, x)).get(timeout=120)
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


def _forward_in_child(model, x):
    with chainer.using_config('train', False):
        return model(x).array
