"""Test-set evaluation with exact totals, per-class accuracy and a confusion matrix."""

import time

import chainer
import chainer.functions as F
import numpy as np
from chainer.training import extensions

from trainer import signals


class ClassificationEvaluator(extensions.Evaluator):
    """Chainer's Evaluator, counting instead of averaging per-batch means.

    Reports ``validation/main/loss`` and ``validation/main/accuracy`` over the whole test
    set (the last, smaller batch weighted by its size), one
    ``validation/main/accuracy/<class>`` per class, and ``validation/images_per_sec``.
    The confusion matrix of the last evaluation, rows true class and columns prediction,
    is kept in ``confusion``. Under MPI each rank evaluates its own shard of the test set
    and the confusion counts and loss sums are summed over the ranks (not a mean of
    per-rank means), so every rank reports the exact figures of the whole test set.

    Args:
        iterator: test iterator (not repeating).
        predictor: the link that maps images to logits.
        label_names: class names, in label order.
        divide: split each batch into this many forward passes, to save memory.
        device: where the batches go.
        progress_bar: show a progress bar while evaluating.
        comm: ChainerMN communicator whose ranks share the test set (None: no MPI).
        converter: makes a batch of arrays on ``device`` (Chainer's ``concat_examples``).

    The sums stay on the device during the pass (no synchronization per batch) and come to
    the host once at its end.
    """

    def __init__(
        self,
        iterator,
        predictor: chainer.Link,
        label_names: list[str],
        divide: int = 1,
        device=None,
        progress_bar: bool = False,
        comm=None,
        converter=chainer.dataset.concat_examples,
    ) -> None:
        super().__init__(
            iterator,
            predictor,
            converter=converter,
            device=device,
            eval_func=self._forward,
            progress_bar=progress_bar,
        )
        self.label_names = list(label_names)
        self.divide = divide
        self.comm = comm
        self.confusion = np.zeros((len(label_names),) * 2, dtype=np.int64)
        self._loss_sum = 0.0
        self._counts = None

    def _forward(self, x, t) -> None:
        predictor = self.get_target('main')
        size = -(-len(x) // self.divide)
        n = len(self.label_names)
        xp = chainer.backend.get_array_module(x)
        for start in range(0, len(x), size):
            signals.safe_point()  # Ctrl-C, SIGTERM: between batches, never inside a kernel
            xs, ts = x[start : start + size], t[start : start + size]
            y = predictor(xs)
            loss = F.softmax_cross_entropy(y, ts, reduce='no').array.sum(dtype=xp.float64)
            pairs = ts * n + y.array.argmax(axis=1)
            counts = xp.bincount(pairs, minlength=n * n)
            if self._counts is None:
                self._loss_sum, self._counts = loss, counts
            else:
                self._loss_sum, self._counts = self._loss_sum + loss, self._counts + counts

    def evaluate(self) -> dict:
        self._loss_sum, self._counts = 0.0, None
        n = len(self.label_names)
        start = time.perf_counter()
        with chainer.using_config('train', False), chainer.no_backprop_mode():
            super().evaluate()
        cpu = chainer.backend.CpuDevice()
        if self._counts is None:  # an empty test set
            self.confusion = np.zeros((n, n), dtype=np.int64)
        else:  # the one transfer of the pass
            self.confusion = np.asarray(cpu.send(self._counts), dtype=np.int64).reshape(n, n)
            self._loss_sum = float(cpu.send(self._loss_sum))
        if self.comm is not None:
            self.confusion = self.comm.allreduce_obj(self.confusion)
            self._loss_sum = self.comm.allreduce_obj(self._loss_sum)
        seconds = time.perf_counter() - start
        total = int(self.confusion.sum())
        correct = np.diag(self.confusion)
        per_class = correct / np.maximum(self.confusion.sum(axis=1), 1)
        result = {
            'validation/main/loss': self._loss_sum / total,
            'validation/main/accuracy': correct.sum() / total,
            'validation/images_per_sec': total / seconds,
        }
        for name, accuracy in zip(self.label_names, per_class, strict=True):
            result[f'validation/main/accuracy/{name}'] = float(accuracy)
        return result
