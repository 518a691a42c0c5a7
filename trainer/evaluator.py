"""Evaluation with exact totals, per-class accuracy and a confusion matrix.

The test set reports under ``validation/...`` (the name Chainer gives an Evaluator, kept so
that old logs, plots and tools read the same), the held-out validation split of
``--val-size`` under ``val/...``.
"""

import datetime
import time

import chainer
import chainer.functions as F
import numpy as np
from chainer.training import extensions
from chainer.training.extensions import util as extension_util

from trainer import signals


class ImagesProgressBar(extension_util.ProgressBar):
    """The evaluation's progress counted in images (done / total, images/s, time left).

    Chainer's own evaluator bar counts the test iterator's position, images, as
    "iterations", and its last update reads a rate after the iterator has rewound, so it
    ended at a negative speed.
    """

    def __init__(self, total: int, out=None) -> None:
        super().__init__(out=out)
        self.total = total
        self.done = 0
        self.start = time.perf_counter()

    def add(self, images: int) -> None:
        self.done += images
        self.update()

    def get_lines(self) -> list[str]:
        fraction = min(self.done / self.total, 1.0) if self.total else 1.0
        width = 50
        marks = '#' * int(fraction * width)
        seconds = time.perf_counter() - self.start
        speed = self.done / seconds if seconds > 0 else 0.0
        left = (self.total - self.done) / speed if speed > 0 else 0.0
        return [
            f'validation [{marks}{"." * (width - len(marks))}] {fraction:6.2%}\n',
            f'{self.done:10} / {self.total} images\n',
            f'{speed:10.5g} images/sec. Estimated time to finish: '
            f'{datetime.timedelta(seconds=round(max(left, 0.0)))}.\n',
        ]


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
        prefix: the keys' first part: ``validation`` (the test set, the keys' old name) or
            ``val`` (the held-out validation split of ``--val-size``).

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
        prefix: str = 'validation',
    ) -> None:
        super().__init__(
            iterator,
            predictor,
            converter=converter,
            device=device,
            eval_func=self._forward,
        )
        self.show_progress = progress_bar  # our bar, in images (ImagesProgressBar)
        self._bar: ImagesProgressBar | None = None
        self.label_names = list(label_names)
        self.divide = divide
        self.comm = comm
        self.prefix = prefix
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
        if self._bar is not None:
            self._bar.add(len(x))

    def evaluate(self) -> dict:
        self._loss_sum, self._counts = 0.0, None
        n = len(self.label_names)
        start = time.perf_counter()
        if self.show_progress:
            self._bar = ImagesProgressBar(len(getattr(self.get_iterator('main'), 'dataset', ())))
        try:
            with chainer.using_config('train', False), chainer.no_backprop_mode():
                super().evaluate()
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
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
        prefix = self.prefix
        result = {
            f'{prefix}/main/loss': self._loss_sum / total,
            f'{prefix}/main/accuracy': correct.sum() / total,
            f'{prefix}/images_per_sec': total / seconds,
        }
        for name, accuracy in zip(self.label_names, per_class, strict=True):
            result[f'{prefix}/main/accuracy/{name}'] = float(accuracy)
        return result
