"""SqueezeNet v1.0 with simple bypass: shapes, size, gradients, modes, serialization."""

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

    m = model
    x = rng.normal(size=(2, 3, 32, 32)).astype(np.float32)
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        h = pool(m.conv1(x))
        h = m.fire2(h)
        h = m.fire3(h) + h
        h = pool(m.fire4(h))
        h = m.fire5(h) + h
        h = m.fire6(h)
        h = m.fire7(h) + h
        h = pool(m.fire8(h))
        h = m.fire9(h) + h
        expected = F.mean(m.conv10(h), axis=(2, 3)).array
        np.testing.assert_allclose(m(x).array, expected, rtol=1e-5, atol=1e-6)


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
