"""Chainer's links with the fast path inside: same parameters, same numbers on either layout."""

import chainer
import chainer.links as L
import numpy as np
import pytest
from fast_path_check import assert_paths_agree

import layers


def test_same_parameters_as_chainers_links(tmp_path):
    conv, bn = layers.Convolution2D(3, 4, 3, pad=1), layers.BatchNormalization(4)
    assert isinstance(conv, L.Convolution2D) and isinstance(bn, L.BatchNormalization)
    assert sorted(n for n, _ in conv.namedparams()) == ['/W', '/b']
    chainer.serializers.save_npz(tmp_path / 'c.npz', conv)
    chainer.serializers.load_npz(tmp_path / 'c.npz', L.Convolution2D(3, 4, 3, pad=1))


@pytest.mark.parametrize(
    ('in_c', 'out_c', 'k', 's', 'p', 'size'),
    [(3, 8, 7, 2, 2, 13), (4, 6, 1, 1, 0, 5), (4, 6, 1, 2, 0, 6), (5, 4, 3, 2, 1, 7)],
)
@pytest.mark.parametrize('train', [True, False])
def test_convolution_fast_path_equals_plain(in_c, out_c, k, s, p, size, train, rng):
    conv = layers.Convolution2D(in_c, out_c, k, stride=s, pad=p)
    conv.b.array[...] = rng.normal(size=conv.b.shape)
    x = rng.normal(size=(2, in_c, size, size))
    assert_paths_agree(lambda c, h: c(h), conv, [x], train=train)


def test_convolution_initializes_lazily(rng):
    conv = layers.Convolution2D(None, 4, 3, pad=1)
    x = rng.normal(size=(2, 3, 5, 5)).astype(np.float32)
    y = conv(layers.channels_last(x))
    assert conv.W.shape == (4, 3, 3, 3) and layers.is_channels_last(y)
    with layers.fast_path(False):
        np.testing.assert_allclose(y.array, conv(x).array, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('train', [True, False])
def test_batch_normalization_fast_path_equals_plain(train, rng):
    bn = layers.BatchNormalization(5)
    bn.gamma.array[...] = rng.uniform(0.5, 2, size=5)
    bn.beta.array[...] = rng.normal(size=5)
    bn.avg_var[...] = rng.uniform(0.5, 2, size=5)
    x = rng.normal(loc=1.0, size=(3, 5, 4, 4))
    assert_paths_agree(lambda b, h: b(h), bn, [x], train=train)


def test_batch_normalization_without_gamma_runs_chainers(rng):
    bn = layers.BatchNormalization(5, use_gamma=False)
    x = rng.normal(size=(2, 5, 3, 3)).astype(np.float32)
    with chainer.using_config('train', False):
        y = bn(layers.channels_last(x)).array
        with layers.fast_path(False):
            np.testing.assert_allclose(y, bn(x).array, rtol=1e-6)
