"""The fast path's copy kernels (layers.kernels): a dense result into its columns of a
wider output, with a bypass added, and an image batch to channels-last memory."""

import chainer
import chainer.links as L
import numpy as np
import pytest

import layers
from layers import bn_relu_nhwc, conv_nhwc, kernels, nhwc


@pytest.mark.parametrize('add', [False, True])
def test_copy_columns_writes_its_columns_only(rng, add):
    y = rng.normal(size=(300, 12)).astype(np.float32)
    a = rng.normal(size=(300, 5)).astype(np.float32)
    z = rng.normal(size=(300, 12)).astype(np.float32)
    z[7, 4] = np.nan
    before = y.copy()
    kernels.copy_columns(y[:, 3:8], a, z[:, 3:8] if add else np.empty((0, 0), np.float32))
    expected = a + z[:, 3:8] if add else a
    np.testing.assert_array_equal(y[:, 3:8], expected)
    assert np.isnan(y[7, 4]) == add
    np.testing.assert_array_equal(np.delete(y, range(3, 8), 1), np.delete(before, range(3, 8), 1))


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_nchw_to_nhwc_equals_the_transpose(rng, dtype):
    x = rng.normal(size=(3, 5, 7, 6)).astype(dtype)
    view = x[:, :, 1:, ::-1]  # not contiguous: the kernel reads any strides
    y = nhwc.nhwc_copy(view)
    assert y.flags.c_contiguous and y.dtype == dtype
    np.testing.assert_array_equal(y, view.transpose(0, 2, 3, 1))


def test_other_dtypes_take_numpys_copy():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.int64).reshape(2, 3, 4, 5)
    np.testing.assert_array_equal(nhwc.nhwc_copy(x), x.transpose(0, 2, 3, 1))
    y = layers.channels_last(np.float32(x))
    assert layers.is_channels_last(y)
    np.testing.assert_array_equal(y.array, x)


def test_large_dense_results_take_the_parallel_copy(rng, monkeypatch):
    """A Fire module's 3x3 expand without a bypass, copied into its columns by the kernel
    from ``PARALLEL_COPY`` values on (NumPy below): the same output either way."""
    calls = []
    copy = kernels.copy_columns
    monkeypatch.setattr(kernels, 'copy_columns', lambda *a: calls.append(1) or copy(*a))
    x = rng.normal(size=(2, 4, 6, 6)).astype(np.float32)
    fire_convs = [L.Convolution2D(4, 3, 1), L.Convolution2D(4, 5, 3, pad=1)]
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        h = layers.channels_last(x)
        pairs = [(conv, layers.layout.to_nhwc(h)) for conv in fire_convs]
        small = nhwc.concat_convolutions(pairs).array
        monkeypatch.setattr(conv_nhwc, 'PARALLEL_COPY', 0)
        large = nhwc.concat_convolutions(pairs).array
        expected = np.concatenate([conv(x).array for conv in fire_convs], axis=1)
    np.testing.assert_array_equal(small, large)
    np.testing.assert_allclose(large.transpose(0, 3, 1, 2), expected, rtol=1e-5, atol=1e-5)
    assert calls == [1] or not conv_nhwc.onednn.available(np.float32)


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_inference_affine_is_the_batch_normalizations_own_arithmetic(rng, dtype):
    """The (scale, shift) a convolution normalizes its input with at inference are, bit for
    bit, the ones the batch-normalization node computes in test mode (float64, 1 / sqrt)."""
    bn = L.BatchNormalization(37, eps=1e-4, dtype=dtype)
    for array in (bn.gamma.array, bn.beta.array, bn.avg_mean):
        array[...] = rng.normal(size=37)
    bn.avg_var[...] = rng.uniform(0.0, 3.0, 37)
    scale, shift = bn_relu_nhwc.inference_affine(bn, dtype)
    inv_std = 1.0 / np.sqrt(np.asarray(bn.avg_var, np.float64) + np.float64(bn.eps))
    expected = bn.gamma.array * inv_std
    assert scale.dtype == shift.dtype == dtype
    np.testing.assert_array_equal(scale, expected.astype(dtype))
    np.testing.assert_array_equal(shift, (bn.beta.array - bn.avg_mean * expected).astype(dtype))
