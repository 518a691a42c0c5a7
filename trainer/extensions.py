"""Only what Chainer's own extensions lack: a non-finite loss guard, a start at epoch N, and
extra log figures. (Snapshots, the log file and plots: ``trainer.run_folder.SaveEpoch``.)"""

import re
from collections.abc import Callable

import chainer
import numpy as np
from chainer.serializers import npz
from chainer.training import extension

from trainer.errors import NonFiniteLossError


class PlainText:
    """A text stream that drops terminal control sequences, for output without a progress bar.

    Chainer's PrintReport writes ESC[J before each line (to erase a progress bar); piped to
    a file or with ``--no-progress`` that is noise, so its ``out`` is wrapped in this.
    """

    CONTROL = re.compile(r'\x1b\[[0-9;]*[A-Za-z]')

    def __init__(self, out) -> None:
        self.out = out

    def write(self, text: str) -> int:
        return self.out.write(self.CONTROL.sub('', text))

    def flush(self) -> None:
        self.out.flush()


class NonFiniteGuard(extension.Extension):
    """Stops training when the loss is NaN or infinite, before the epoch is logged or saved.

    Checking a GPU value waits for the GPU, so the loss is folded into a flag on the
    device each step and the flag is read every ``interval`` steps and at each epoch end.

    Args:
        key: the observation to watch.
        interval: steps between checks.
    """

    trigger = (1, 'iteration')
    priority = extension.PRIORITY_WRITER + 1  # before LogReport and snapshots

    def __init__(self, key: str = 'main/loss', interval: int = 50) -> None:
        self.key = key
        self.interval = interval
        self._bad = None

    def __call__(self, trainer: chainer.training.Trainer) -> None:
        value = trainer.observation.get(self.key)
        if value is None:
            return
        array = value.array if isinstance(value, chainer.Variable) else value
        xp = chainer.backend.get_array_module(array)
        bad = ~xp.isfinite(array)
        self._bad = bad if self._bad is None else self._bad | bad
        updater = trainer.updater
        if updater.is_new_epoch or updater.iteration % self.interval == 0:
            found, self._bad = bool(self._bad), None
            if found:
                raise NonFiniteLossError(
                    f'{self.key} became NaN or infinite in epoch {updater.epoch_detail:.2f} '
                    f'(iteration {updater.iteration}); try a lower --lr. The last good epoch '
                    'is kept: its snapshot, model.npz and optimizer.npz.'
                )


class StartAt(extension.Extension):
    """Starts training as if ``epoch`` epochs were done (``-s``), e.g. after loading weights.

    Sets the iterator, updater, optimizer and every trigger through one serialize / edit /
    deserialize round trip of the trainer, so the lr schedule, the log's epoch numbers and
    the stop condition all continue from there.

    Args:
        epoch: finished epochs.
    """

    trigger = (1, 'epoch')
    priority = extension.PRIORITY_WRITER + 2  # initialize before everything else

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def initialize(self, trainer: chainer.training.Trainer) -> None:
        iterator = trainer.updater.get_iterator('main')
        iteration = round(self.epoch * len(iterator.dataset) / iterator.batch_size)
        values = {
            'epoch': self.epoch,
            'previous_epoch_detail': float(self.epoch),
            'current_position': 0,
            'is_new_epoch': False,
            'iteration': iteration,
            'previous_iteration': iteration,
        }
        state = npz.serialize(trainer)
        for key in state:
            leaf = key.rsplit('/', 1)[-1]
            if leaf in values:
                state[key] = np.asarray(values[leaf])
        # not strict: an optimizer without a loaded state (-m without -o) has none to set
        npz.NpzDeserializer(state, strict=False).load(trainer)

    def __call__(self, trainer: chainer.training.Trainer) -> None:
        pass  # all its work is in initialize


def log_extras(processes: int, confusion_of: Callable):
    """A LogReport ``postprocess``: images/s of all processes, and the confusion counts.

    (The lr is Chainer's ``observe_lr``.)

    Args:
        processes: processes training together (MPI ranks), each at the reported rate.
        confusion_of: returns the evaluator's latest confusion matrix (numpy).
    """

    def postprocess(entry: dict) -> None:
        if 'train/images_per_sec' in entry:
            entry['train/images_per_sec'] *= processes
        confusion = confusion_of()
        if confusion is not None and confusion.sum():
            entry['validation/confusion'] = confusion.tolist()

    return postprocess
