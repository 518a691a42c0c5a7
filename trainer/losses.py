"""Classification losses beyond plain cross-entropy: label smoothing and soft targets.

``classifier_loss(smoothing)`` is what ``chainer.links.Classifier`` takes as ``lossfun``;
``hard_accuracy`` its ``accfun``. Targets are either int labels ``(N,)`` or soft targets
``(N, C)`` (rows summing to 1, from mixup or cutmix in ``trainer.mixing``); the accuracy of
soft targets is counted against their hard label, the class of largest weight (the
image's own label: ``trainer.mixing`` leaves each image the larger share).
"""

from collections.abc import Callable

import chainer
import chainer.functions as F


def smoothed_targets(t, n_classes: int, smoothing: float = 0.0):
    """Soft targets from ``t`` (labels or soft targets): ``(1 - s) * t + s / C``."""
    xp = chainer.backend.get_array_module(t)
    if t.ndim == 1:
        soft = xp.zeros((len(t), n_classes), dtype=xp.float32)
        soft[xp.arange(len(t)), t] = 1
    else:
        soft = t.astype(xp.float32)
    return soft if smoothing == 0 else (1 - smoothing) * soft + smoothing / n_classes


def soft_cross_entropy(y: chainer.Variable, t, smoothing: float = 0.0) -> chainer.Variable:
    """Mean over the batch of ``-sum_c q_c log softmax(y)_c``, q the smoothed targets.

    With int labels and ``smoothing`` 0 this is ``F.softmax_cross_entropy``.
    """
    q = smoothed_targets(t, y.shape[1], smoothing).astype(y.dtype)  # float16 too (--mixed16)
    return -F.sum(q * F.log_softmax(y)) / y.shape[0]


def classifier_loss(smoothing: float = 0.0) -> Callable:
    """``lossfun`` for L.Classifier: Chainer's own for plain labels, else the soft one.

    Hard labels without smoothing take ``F.softmax_cross_entropy`` itself, so a run with
    every new option off computes exactly what it did before.
    """

    def loss(y, t):
        if smoothing == 0 and t.ndim == 1:
            return F.softmax_cross_entropy(y, t)
        return soft_cross_entropy(y, t, smoothing)

    return loss


def hard_accuracy(y: chainer.Variable, t) -> chainer.Variable:
    """``F.accuracy`` against the labels, or against a soft target's class of most weight."""
    return F.accuracy(y, t if t.ndim == 1 else t.argmax(axis=1))
