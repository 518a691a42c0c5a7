"""The layout-keeping functions against Chainer's functions of the same name."""

import chainer
import chainer.functions as F
import numpy as np
import pytest
from fast_path_check import assert_paths_agree

import layers


@pytest.mark.parametrize(
    ('k', 's', 'p', 'cover_all'),
    [(3, 2, 1, True), (2, 2, 0, True), (3, 1, 1, True), (2, 2, 0, False)],
)
def test_max_pooling(k, s, p, cover_all, rng):
    x = rng.normal(size=(2, 3, 7, 7)).round(1)  # ties
    f = lambda _, h: layers.max_pooling_2d(h, k, s, p, cover_all=cover_all)  # noqa: E731
    assert_paths_agree(f, None, [x])
    with chainer.using_config('train', False):
        expected = F.max_pooling_2d(x, k, s, p, cover_all).array
        np.testing.assert_array_equal(f(None, layers.channels_last(x)).array, expected)


@pytest.mark.parametrize(('k', 's', 'p', 'size'), [(2, 2, 0, 8), (3, 3, 0, 6), (3, 2, 1, 7)])
def test_average_pooling(k, s, p, size, rng):
    x = rng.normal(size=(2, 3, size, size))
    f = lambda _, h: layers.average_pooling_2d(h, k, s, p)  # noqa: E731
    assert_paths_agree(f, None, [x])
    expected = F.average_pooling_2d(x, k, s, p).array
    np.testing.assert_allclose(f(None, layers.channels_last(x)).array, expected, rtol=1e-12)


def test_global_average_pooling(rng):
    x = rng.normal(size=(2, 3, 5, 4))
    assert_paths_agree(lambda _, h: layers.global_average_pooling_2d(h), None, [x])
    expected = x.mean(axis=(2, 3))
    np.testing.assert_allclose(layers.global_average_pooling_2d(x).array, expected)


def test_concat_along_the_channels(rng):
    xs = [rng.normal(size=(2, c, 4, 4)) for c in (3, 5)]
    assert_paths_agree(lambda _, a, b: layers.concat((a, b)), None, xs)
    np.testing.assert_array_equal(layers.concat(xs).array, np.concatenate(xs, axis=1))


@pytest.mark.parametrize('train', [True, False])
def test_dropout_draws_the_same_mask_on_either_layout(train, rng):
    x = rng.normal(size=(2, 3, 4, 4))
    outputs = []
    for fast in (False, True):
        np.random.seed(5)
        with layers.fast_path(fast), chainer.using_config('train', train):
            y = layers.dropout(layers.channels_last(x), 0.5)
        assert layers.is_channels_last(y) == fast or not train and not fast
        outputs.append(y.array)
    np.testing.assert_array_equal(outputs[0], outputs[1])
    assert (outputs[0] == 0).any() == train
