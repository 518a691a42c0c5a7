"""Weights held still (layers.frozen): what the fast path derives from parameters computed
once within a FrozenWeights and reused, the same results, and nothing stale where a
parameter gets a new array or the holder clears it."""

import platform
import sys

import chainer
import numpy as np
import pytest

import layers
from inference import ChainerForward
from layers import frozen, nhwc, onednn

ONEDNN = sys.platform.startswith('linux') and platform.machine() == 'x86_64'


class Counted:
    """Counts the calls of ``module.name`` (oneDNN's HWIO copy, a BN's scale and shift)."""

    def __init__(self, monkeypatch, module, name):
        self.calls = 0
        function = getattr(module, name)

        def counted(*args):
            self.calls += 1
            return function(*args)

        monkeypatch.setattr(module, name, counted)


class Net(chainer.Chain):
    def __init__(self):
        super().__init__()
        with self.init_scope():
            self.unit = layers.BNReLUConv(4, 6, 3, pad=1)

    def forward(self, x):
        return self.unit(layers.channels_last(x))


@pytest.fixture
def net(rng):
    net = Net()
    bn = net.unit.bn
    bn.avg_mean[...] = rng.normal(size=4)
    bn.avg_var[...] = rng.uniform(0.5, 2.0, 4)
    return net


def run(net, x):
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        return net(x).array.copy()


def test_derived_values_are_kept_while_active_only(net, rng, monkeypatch):
    hwio = Counted(monkeypatch, onednn, 'hwio')
    affine = Counted(monkeypatch, nhwc, 'inference_affine')
    x = rng.normal(size=(2, 4, 5, 5)).astype(np.float32)
    plain = [run(net, x) for _ in range(2)]
    assert affine.calls == 2 and hwio.calls == (2 if ONEDNN else 0)
    held = layers.FrozenWeights()
    with held.active():
        kept = [run(net, x) for _ in range(3)]
    assert affine.calls == 3 and hwio.calls == (3 if ONEDNN else 0)
    for y in plain + kept:
        np.testing.assert_array_equal(y, plain[0])
    run(net, x)  # outside again: computed, nothing kept
    assert affine.calls == 4


def test_a_parameter_given_a_new_array_is_noticed(net, rng):
    x = rng.normal(size=(2, 4, 5, 5)).astype(np.float32)
    held = layers.FrozenWeights()
    with held.active():
        before = run(net, x)
        net.unit.conv.W.array = 3 * net.unit.conv.W.array  # a new array object
        net.unit.bn.avg_var = 4 * net.unit.bn.avg_var
        after = run(net, x)
    assert np.abs(after - before).max() > 0.1
    np.testing.assert_array_equal(after, run(net, x))


def test_a_change_in_place_needs_clear(net, rng):
    """The holder's promise: written in place, the parameters are read again only after
    ``clear`` (what ``ChainerForward.refresh`` does)."""
    x = rng.normal(size=(2, 4, 5, 5)).astype(np.float32)
    held = layers.FrozenWeights()
    with held.active():
        before = run(net, x)
        net.unit.conv.W.array *= 3
        net.unit.bn.avg_var *= 4
        stale = run(net, x)
        held.clear()
        fresh = run(net, x)
    np.testing.assert_array_equal(fresh, run(net, x))
    assert np.abs(fresh - before).max() > 0.1
    if ONEDNN:  # the im2col path derives no weights: only the BN's would be stale
        np.testing.assert_array_equal(stale, before)


def test_predict_and_serve_derive_once_until_refreshed(net, rng, monkeypatch):
    affine = Counted(monkeypatch, nhwc, 'inference_affine')
    forward = ChainerForward(net)
    x = rng.normal(size=(1, 4, 5, 5)).astype(np.float32)
    first, second = forward(x), forward(x)
    np.testing.assert_array_equal(first, second)
    assert affine.calls == 1
    forward.refresh()
    forward(x)
    assert affine.calls == 2


def test_the_cache_starts_over_beyond_its_limit(monkeypatch):
    monkeypatch.setattr(frozen, 'LIMIT', 2)
    held = layers.FrozenWeights()
    arrays = [np.zeros(1) for _ in range(3)]
    with held.active():
        for a in arrays:
            frozen.derived('name', (a,), lambda: 1)
    assert len(held.entries) == 1
    made = []
    assert frozen.derived('name', (arrays[0],), lambda: made.append(1) or 2) == 2  # outside
    assert made == [1]
