"""TensorBoard curves of a run: every numeric figure LogReport logs, one point per epoch.

``TensorBoardReport(logdir)`` is a Chainer extension that runs after ``LogReport`` and
writes each new log entry's numbers (losses, accuracies, per-class accuracies, lr, images/s,
elapsed time) as TensorBoard scalars at step = epoch, with tensorboardX (an optional
extra). Lists such as the confusion matrix are left out. ``log.json`` stays the one source
of truth: the event files are a view of it. A resumed run appends only the epochs it
trains; a log directory without event files first gets the run's whole history.

    trainer.extend(TensorBoardReport('runs/tb'))   # then: tensorboard --logdir runs/tb
"""

from __future__ import annotations

import math
import numbers
import os
import time
from pathlib import Path

import chainer
from chainer.training import extension

from trainer.extras import require

STEP = 'epoch'


def scalars(entry: dict) -> dict[str, float]:
    """The finite numbers of one log entry, but the step itself (booleans and lists left out)."""
    return {
        key: float(value)
        for key, value in entry.items()
        if key != STEP
        and isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(value)
    }


class TensorBoardReport(extension.Extension):
    """Writes each epoch's logged numbers as TensorBoard scalars (tensorboardX).

    Args:
        logdir: where the event files go (made if missing).
        log_report: the name of the trainer's LogReport extension.
    """

    trigger = (1, 'epoch')
    priority = extension.PRIORITY_READER  # after LogReport (PRIORITY_WRITER) has logged

    def __init__(self, logdir: str | os.PathLike, log_report: str = 'LogReport') -> None:
        self.logdir = Path(logdir)
        self.log_report = log_report
        self._writer = None
        self._written = 0  # the last epoch written

    def initialize(self, trainer: chainer.training.Trainer) -> None:
        tensorboardX = require('tensorboardX', 'TensorBoard logging', 'tensorboardX')
        fresh = not any(self.logdir.glob('events.out.tfevents.*'))
        # tensorboardX names its file by the second and the host only: a second session in
        # the same second would overwrite the first's file without a suffix of its own.
        self._writer = tensorboardX.SummaryWriter(
            str(self.logdir), filename_suffix=f'.{time.time_ns()}'
        )
        log = self._log(trainer)
        if fresh:
            self._write(log)  # a resumed run's history, into a new log directory
        self._written = max((entry.get(STEP, 0) for entry in log), default=0)

    def __call__(self, trainer: chainer.training.Trainer) -> None:
        self._write(self._log(trainer))

    def finalize(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _log(self, trainer: chainer.training.Trainer) -> list[dict]:
        return trainer.get_extension(self.log_report).log

    def _write(self, log: list[dict]) -> None:
        new = [entry for entry in log if entry.get(STEP, 0) > self._written]
        for entry in new:
            for key, value in scalars(entry).items():
                self._writer.add_scalar(key, value, entry[STEP])
            self._written = entry[STEP]
        if new:
            self._writer.flush()
