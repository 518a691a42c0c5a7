"""Early stopping: Chainer's own trigger, checked each epoch, resumable from the run's log.

``make_early_stopping('val/main/loss', patience=10, max_epochs=300)`` is the
Trainer's stop trigger: training ends when the key has not improved for ``patience``
epochs in a row, or after ``max_epochs``. The direction comes from the key: a loss must
fall, an accuracy rise. The options (``TrainOptions``) refuse to stop on the test set's
``validation/...`` keys unless ``--select-on-test`` says so (``check_choice_key``): watch
the held-out split's ``val/...`` keys (``--val-size``, ``trainer.holdout``).

Chainer's ``EarlyStoppingTrigger`` keeps its best value and count in memory only, and a
snapshot is written before the trigger sees its epoch, so a resumed run would count
afresh. ``EarlyStopping.resume`` replays the run's log instead: with one check per epoch,
the state is a function of the logged values (each epoch's mean of the key, which is what
LogReport logs). A run that had stopped stops again at once when rerun. When the key stops
the run before ``max_epochs``, one line is logged: the epoch, the key, the patience and the
best value.
"""

from __future__ import annotations

import logging

import numpy as np
from chainer.serializers import NpzDeserializer
from chainer.training.triggers import EarlyStoppingTrigger, IntervalTrigger

from trainer.errors import StoppingError

MODES = ('min', 'max')
logger = logging.getLogger(__name__)


TEST_PREFIX = 'validation/'  # the test set's keys (their names predate the held-out split)
VAL_PREFIX = 'val/'  # the held-out validation split's (``--val-size``)


def check_choice_key(key: str, has_val: bool, select_on_test: bool = False) -> None:
    """Refuse choosing on the test set, or on a validation split the run does not have.

    A key of the test set (``validation/...``) is refused unless ``select_on_test`` says
    the user means it: what is chosen on the test set makes its accuracy optimistic.
    A ``val/...`` key needs the held-out split (``has_val``). StoppingError, one line.
    """
    if key.startswith(TEST_PREFIX) and not select_on_test:
        instead = key.replace(TEST_PREFIX, VAL_PREFIX, 1)
        hint = (
            f'watch {instead}'
            if has_val
            else f'hold out a split with --val-size and watch {instead}'
        )
        raise StoppingError(
            f'--early-stopping {key}: that is the test set, and choosing on it makes its '
            f'accuracy optimistic; {hint} (or give --select-on-test to choose on the test set)'
        )
    if key.startswith(VAL_PREFIX) and not has_val:
        raise StoppingError(
            f'--early-stopping {key}: this run has no validation split; give --val-size N '
            '(a count, or a fraction such as 0.1)'
        )


def mode_of(key: str) -> str:
    """'min' for a loss, 'max' for an accuracy; StoppingError for a key that is neither."""
    if 'loss' in key:
        return 'min'
    if 'accuracy' in key:
        return 'max'
    raise StoppingError(
        f'--early-stopping {key}: cannot tell whether it should fall or rise (a key with '
        '"loss" should fall, one with "accuracy" rise)'
    )


class EarlyStopping(EarlyStoppingTrigger):
    """Chainer's EarlyStoppingTrigger checked once per epoch, plus ``resume``.

    Args:
        key: the logged value to watch, e.g. 'validation/main/loss'.
        patience: checks (epochs) without improvement before stopping.
        max_epochs: the most epochs to train.
        mode: 'min' or 'max'.
    """

    def __init__(self, key: str, patience: int, max_epochs: int, mode: str) -> None:
        self.mode = mode
        self.max_epochs = max_epochs
        self.best_epoch = None
        self.check = IntervalTrigger(1, 'epoch')
        super().__init__(
            check_trigger=self.check,
            monitor=key,
            patience=patience,
            mode=mode,
            max_trigger=(max_epochs, 'epoch'),
        )

    def __call__(self, trainer) -> bool:
        # True at once for a resumed run that had already stopped (``resume``).
        if self.count >= self.patience:
            return True
        best = self.best
        stop = super().__call__(trainer)
        if self.best != best:
            self.best_epoch = trainer.updater.epoch
        if stop and self.count >= self.patience:
            logger.info(
                'early stopping after epoch %d of %d: %s has not improved for %d epochs '
                '(--patience %d; best %.6g, in epoch %s)',
                trainer.updater.epoch,
                self.max_epochs,
                self.monitor,
                self.count,
                self.patience,
                self.best,
                self.best_epoch,
            )
        return stop

    def resume(self, log: list[dict], iteration: int) -> bool:
        """Take the state the trigger had after the epochs of ``log``; True if it had stopped.

        Call it after loading a snapshot, with the log it holds and the updater's iteration.
        Epochs whose entry lacks the key (no evaluation) were not checks, as in Chainer.
        """
        better = np.greater if self.mode == 'max' else np.less
        for entry in log:
            if self.monitor not in entry:
                continue
            if better(entry[self.monitor], self.best):
                self.best, self.count = entry[self.monitor], 0
                self.best_epoch = entry.get('epoch')
            else:
                self.count += 1
        epoch = max((entry.get('epoch', 0) for entry in log), default=0)
        # The next check is at the end of the next epoch (a fresh interval trigger would
        # fire at once, before the key is observed, and warn).
        self.check.serialize(
            NpzDeserializer(
                {
                    'previous_iteration': np.asarray(iteration),
                    'previous_epoch_detail': np.asarray(float(epoch)),
                }
            )
        )
        return self.count >= self.patience


def make_early_stopping(
    key: str, patience: int, max_epochs: int, mode: str | None = None
) -> EarlyStopping:
    """A stop trigger ending training when ``key`` stops improving (Chainer's own trigger).

    Args:
        key: a logged value, e.g. 'validation/main/loss' or 'validation/main/accuracy'.
        patience: epochs without improvement before stopping (1 or more).
        max_epochs: the most epochs to train (the run's ``-e``).
        mode: 'min' or 'max'; inferred from ``key`` when None (loss: min, accuracy: max).
    """
    mode = mode or mode_of(key)
    if mode not in MODES:
        raise StoppingError(f'early stopping mode {mode!r}: choose min or max')
    if patience < 1:
        raise StoppingError(f'--patience {patience}: must be 1 or more')
    return EarlyStopping(key, patience, max_epochs, mode)
