"""The reference's orthonormal initialization (nutszebra/trainer) and He's, by name."""

import chainer.links as L
import numpy as np
import pytest

import trainer
from layers import ReferenceOrthonormal, make_initializer
from squeeze_net import SqueezeNet


def convolutions(model):
    return [link for link in model.links() if isinstance(link, L.Convolution2D)]


def reshaped(w):
    return w.reshape(w.shape[0], -1).astype(np.float64)


@pytest.fixture(scope='module')
def model():
    np.random.seed(0)
    return SqueezeNet(10)


def test_every_convolution_has_variance_two_over_its_input_channels(model):
    convs = convolutions(model)
    assert len(convs) == 1 + 8 * 3 + 1  # conv1, three per fire module, conv10
    for conv in convs:
        w = conv.W.array
        assert w.dtype == np.float32
        np.testing.assert_allclose(w.var(dtype=np.float64), 2.0 / w.shape[1], rtol=1e-4)
        assert abs(w.mean(dtype=np.float64)) < 1e-6
        assert np.all(conv.b.array == 0)


def orthogonality_error(w):
    """Largest off-diagonal of the normalized Gram matrix of ``w + c``, c chosen best.

    The reference shifts the scaled orthonormal matrix q to mean 0 (w = q - mean(q)), so
    w + c is orthogonal for one c: find it (the off-diagonals are quadratic in c) and
    return how far from orthogonal w + c is. Rows for out <= in*k*k, columns otherwise.
    """
    m = reshaped(w)
    if m.shape[0] > m.shape[1]:
        m = m.T
    n = m.shape[1]
    s = m.sum(axis=1)
    off = ~np.eye(len(m), dtype=bool)
    a, b = (m @ m.T)[off], (s[:, None] + s[None, :])[off]
    # sum((a + b c + n c^2)^2) as a polynomial in c; its minimum is at a root of the slope
    total = np.polynomial.Polynomial(
        [a @ a, 2 * a @ b, b @ b + 2 * n * a.sum(), 2 * n * b.sum(), n * n * a.size]
    )
    roots = [r.real for r in total.deriv().roots() if abs(r.imag) < 1e-9]
    shifted = m + min(roots, key=total)
    gram = shifted @ shifted.T
    return np.abs(gram[off]).max() / np.diag(gram).mean()


def test_the_reshaped_matrix_is_orthogonal(model):
    for conv in convolutions(model):
        error = orthogonality_error(conv.W.array)
        assert error < 1e-4, conv.W.shape
    he = SqueezeNet(10, init='he')
    assert orthogonality_error(he.fire2.squeeze.conv.W.array) > 1e-2


def test_3x3_and_7x7_start_larger_than_he():
    np.random.seed(1)
    reference = SqueezeNet(10, init='orthonormal')
    np.random.seed(1)
    he = SqueezeNet(10, init='he')
    for name in ('conv1',):
        assert reference[name].W.array.std() / he[name].W.array.std() == pytest.approx(7, rel=0.05)
    for name in ('fire2', 'fire9'):
        w_ref = reference[name].expand3.conv.W.array
        w_he = he[name].expand3.conv.W.array
        assert w_ref.std() / w_he.std() == pytest.approx(3, rel=0.05)
        np.testing.assert_allclose(w_he.var(), 2 / (w_he.shape[1] * 9), rtol=0.1)


def test_deterministic_under_the_seed():
    trainer.set_seed(5)
    first = SqueezeNet(10)
    trainer.set_seed(5)
    second = SqueezeNet(10)
    trainer.set_seed(6)
    third = SqueezeNet(10)
    for (name, a), b in zip(first.namedparams(), second.params(), strict=True):
        np.testing.assert_array_equal(a.array, b.array, err_msg=name)
    assert not np.array_equal(first.conv1.W.array, third.conv1.W.array)


def test_the_reference_formula_step_by_step():
    """Same draws, same arithmetic as Initialization.orthonorm with variance 2 / in."""
    np.random.seed(7)
    w = np.empty((8, 4, 3, 3), np.float32)
    ReferenceOrthonormal()(w)
    np.random.seed(7)
    variance = 2.0 / 4
    gauss = np.random.normal(0.0, np.sqrt(variance), (8, 36))
    u, _, v = np.linalg.svd(gauss, full_matrices=False)
    q = v  # (8, 36): u is (8, 8)
    q = q / np.sqrt(np.var(q)) * np.sqrt(variance)
    np.testing.assert_array_equal(w, (q - q.mean()).reshape(8, 4, 3, 3).astype(np.float32))


def test_tall_matrix_takes_the_column_factor():
    np.random.seed(2)
    w = np.empty((40, 2, 2, 2), np.float32)  # 40 > 8: columns orthonormal
    ReferenceOrthonormal()(w)
    assert orthogonality_error(w) < 1e-4


def test_unknown_name_is_refused():
    with pytest.raises(ValueError, match="unknown initializer 'xavier'"):
        make_initializer('xavier')
