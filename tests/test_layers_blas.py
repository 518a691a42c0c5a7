"""``layers.blas.gemm``: products onto an output (beta = 1) through NumPy's OpenBLAS."""

import sys

import numpy as np
import pytest

from layers import blas


def operands(rng, dtype, ta, tb, m=7, k=5, n=6):
    """a (m, k) and b (k, n), as transposed views or column slices when asked."""
    a = rng.standard_normal((k, m) if ta else (m, k + 2)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n + 3)).astype(dtype)
    return (a.T if ta else a[:, 1 : k + 1]), (b.T if tb else b[:, :n])


def test_numpys_openblas_is_found_on_linux():
    config = np.show_config(mode='dicts')
    name = str(config.get('Build Dependencies', {}).get('blas', {}).get('name', ''))
    if not sys.platform.startswith('linux') or 'openblas' not in name:
        pytest.skip('the direct call is looked for in a Linux OpenBLAS')
    assert blas.available()


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
@pytest.mark.parametrize('ta, tb', [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize('accumulate', [False, True])
def test_gemm_equals_matmul(dtype, ta, tb, accumulate, rng):
    a, b = operands(rng, dtype, ta, tb)
    base = rng.standard_normal((7, 10)).astype(dtype)
    out = base.copy()[:, 2:8]  # a column slice of a wider array
    expected = a.astype(np.float64) @ b + (base[:, 2:8] if accumulate else 0)
    result = blas.gemm(a, b, out, accumulate=accumulate)
    assert result is out and out.dtype == dtype
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(base.copy()[:, :2], base[:, :2])  # around it untouched


def test_gemm_falls_back_to_numpy_without_the_library(monkeypatch, rng):
    monkeypatch.setattr(blas, '_FUNCTIONS', {})
    a, b = operands(rng, np.float32, True, False)
    out = np.ones((7, 6), np.float32)
    blas.gemm(a, b, out, accumulate=True)
    np.testing.assert_allclose(out, a @ b + 1, rtol=1e-5, atol=1e-5)
    assert not blas.available()


def test_nan_and_empty_products(rng):
    a, b = operands(rng, np.float32, False, False)
    a[3, 2] = np.nan
    out = np.zeros((7, 6), np.float32)
    blas.gemm(a, b, out, accumulate=True)
    assert np.isnan(out[3]).all() and np.isfinite(np.delete(out, 3, axis=0)).all()
    out = np.full((7, 6), 2.0, np.float32)
    blas.gemm(np.zeros((7, 0), np.float32), np.zeros((0, 6), np.float32), out)
    np.testing.assert_array_equal(out, 0)
    with pytest.raises(ValueError, match='gemm shapes'):
        blas.gemm(a, b.T, out)
