"""trainer.losses: label smoothing and soft targets against the formula."""

import chainer.functions as F
import numpy as np
import pytest

from trainer.losses import classifier_loss, hard_accuracy, smoothed_targets, soft_cross_entropy


@pytest.fixture
def logits(rng):
    return rng.normal(size=(4, 5)).astype(np.float32)


def log_softmax(y):
    y = y.astype(np.float64)
    return (
        y
        - y.max(axis=1, keepdims=True)
        - np.log(np.exp(y - y.max(axis=1, keepdims=True)).sum(1, keepdims=True))
    )


def test_label_smoothing_is_the_formula(logits):
    t = np.array([0, 3, 1, 4])
    s, c = 0.1, 5
    logp = log_softmax(logits)
    expected = np.mean(-(1 - s) * logp[np.arange(4), t] - s / c * logp.sum(axis=1))
    assert float(soft_cross_entropy(logits, t, s).array) == pytest.approx(expected, rel=1e-6)
    assert float(classifier_loss(s)(logits, t).array) == pytest.approx(expected, rel=1e-6)


def test_without_smoothing_it_is_chainers_cross_entropy(logits):
    t = np.array([0, 3, 1, 4])
    ours = soft_cross_entropy(logits, t).array
    assert float(ours) == pytest.approx(float(F.softmax_cross_entropy(logits, t).array), rel=1e-6)
    assert classifier_loss(0.0)(logits, t).array == F.softmax_cross_entropy(logits, t).array


def test_soft_targets_are_the_mean_of_minus_q_log_p(logits):
    q = np.array([[0.7, 0.3, 0, 0, 0], [0, 0, 1, 0, 0], [0.5, 0, 0, 0, 0.5], [0, 0, 0, 0.2, 0.8]])
    q = q.astype(np.float32)
    expected = np.mean(-(q * log_softmax(logits)).sum(axis=1))
    assert float(classifier_loss(0.0)(logits, q).array) == pytest.approx(expected, rel=1e-6)
    smoothed = (1 - 0.2) * q + 0.2 / 5
    expected = np.mean(-(smoothed * log_softmax(logits)).sum(axis=1))
    assert float(classifier_loss(0.2)(logits, q).array) == pytest.approx(expected, rel=1e-6)


def test_smoothed_targets_sum_to_one():
    q = smoothed_targets(np.array([2, 0]), 4, 0.1)
    np.testing.assert_allclose(
        q, [[0.025, 0.025, 0.925, 0.025], [0.925, 0.025, 0.025, 0.025]], rtol=1e-6
    )
    np.testing.assert_allclose(q.sum(axis=1), 1, rtol=1e-6)


def test_the_accuracy_of_soft_targets_is_against_their_hard_label(logits):
    hard = logits.argmax(axis=1)
    q = np.zeros((4, 5), np.float32)
    q[np.arange(4), hard] = 0.6
    q[np.arange(4), (hard + 1) % 5] = 0.4
    assert float(hard_accuracy(logits, q).array) == 1.0
    assert float(hard_accuracy(logits, (hard + 1) % 5).array) == 0.0


def test_the_loss_has_a_gradient(logits):
    import chainer

    y = chainer.Variable(logits)
    classifier_loss(0.1)(y, np.array([0, 1, 2, 3])).backward()
    assert y.grad is not None and np.isfinite(y.grad).all()


def test_float16_logits_take_soft_targets(logits):
    q = smoothed_targets(np.array([0, 1, 2, 3]), 5, 0.1)
    loss = classifier_loss(0.1)(logits.astype(np.float16), q)
    assert loss.dtype == np.float16
    expected = float(classifier_loss(0.1)(logits, q).array)
    assert float(loss.array) == pytest.approx(expected, rel=1e-2)
