"""Exact test-set totals, per-class accuracy and confusion counts."""

import chainer
import numpy as np
from chainer import iterators

from trainer.evaluator import ClassificationEvaluator


class FixedLogits(chainer.Link):
    """Logits looked up by a sample id stored in the first pixel."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, x):
        ids = x[:, 0, 0, 0].astype(int)
        return chainer.Variable(self.logits[ids])


def test_counts_confusion_and_exact_means(rng):
    n = 23  # batches of 5: the last one is smaller, and must not weigh more
    logits = rng.normal(size=(n, 3)).astype(np.float32)
    labels = rng.integers(0, 3, n).astype(np.int32)
    images = np.zeros((n, 1, 1, 1), np.float32)
    images[:, 0, 0, 0] = np.arange(n)
    iterator = iterators.SerialIterator(
        list(zip(images, labels, strict=True)), 5, repeat=False, shuffle=False
    )
    evaluator = ClassificationEvaluator(iterator, FixedLogits(logits), ['a', 'b', 'c'], divide=2)
    result = evaluator()
    predicted = logits.argmax(axis=1)
    expected = np.zeros((3, 3), int)
    for true, guess in zip(labels, predicted, strict=True):
        expected[true, guess] += 1
    np.testing.assert_array_equal(evaluator.confusion, expected)
    assert result['validation/main/accuracy'] == np.mean(predicted == labels)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(
        result['validation/main/loss'], -log_p[np.arange(n), labels].mean(), rtol=1e-5
    )
    for k, name in enumerate('abc'):
        mask = labels == k
        assert result[f'validation/main/accuracy/{name}'] == np.mean(predicted[mask] == k)
    assert result['validation/images_per_sec'] > 0
    again = evaluator()  # a second evaluation starts from zero
    np.testing.assert_array_equal(evaluator.confusion, expected)
    assert again['validation/main/loss'] == result['validation/main/loss']


def test_the_held_out_split_reports_under_its_own_prefix(rng):
    logits = rng.normal(size=(6, 2)).astype(np.float32)
    images = np.zeros((6, 1, 1, 1), np.float32)
    images[:, 0, 0, 0] = np.arange(6)
    data = list(zip(images, np.array([0, 1] * 3, np.int32), strict=True))
    iterator = iterators.SerialIterator(data, 4, repeat=False, shuffle=False)
    result = ClassificationEvaluator(iterator, FixedLogits(logits), ['a', 'b'], prefix='val')()
    assert set(result) == {
        'val/main/loss',
        'val/main/accuracy',
        'val/main/accuracy/a',
        'val/main/accuracy/b',
        'val/images_per_sec',
    }
