"""Only what Chainer's own extensions lack: a compact log file, loss/accuracy plots with
labeled axes, a non-finite loss guard, a start at epoch N, and extra log figures."""

import json
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path

import chainer
import numpy as np
from chainer.serializers import npz
from chainer.training import extension

PLOTS = {
    'loss.jpg': ('loss', [('main/loss', 'train'), ('validation/main/loss', 'test')]),
    'accuracy.jpg': (
        'accuracy',
        [('main/accuracy', 'train'), ('validation/main/accuracy', 'test')],
    ),
}


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


def write_atomically(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(temporary_path)``, then rename it to ``path``: never a half-written file."""
    tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
    try:
        write(str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class _LogWriter(extension.Extension):
    """Base of the extensions that turn the LogReport's log into a file after each epoch."""

    trigger = (1, 'epoch')
    priority = extension.PRIORITY_READER - 1  # after LogReport has appended the epoch

    def __init__(self, path: str | os.PathLike, log_name: str = 'LogReport') -> None:
        self.path = Path(path)
        self.log_name = log_name

    def __call__(self, trainer: chainer.training.Trainer) -> None:
        self.write(trainer.get_extension(self.log_name).log)

    def write(self, log: list[dict]) -> None:
        raise NotImplementedError


class WriteLog(_LogWriter):
    """Writes the LogReport's log to ``path`` as JSON, one epoch per line, atomically.

    LogReport's own file is indented (a 100-class confusion matrix would take 10,000 lines
    an epoch); this one stays a valid JSON list that ``json.load`` reads back.

    Args:
        path: the log file (``log.json`` in the save path).
        log_name: name of the LogReport extension to read.
    """

    def write(self, log: list[dict]) -> None:
        lines = ',\n'.join(json.dumps(entry) for entry in log)

        def dump(tmp: str) -> None:
            with open(tmp, 'w') as f:
                f.write(f'[\n{lines}\n]\n')

        write_atomically(self.path, dump)


class PlotLog(_LogWriter):
    """Redraws ``loss.jpg`` and ``accuracy.jpg`` in the folder ``path`` from the log.

    Drawn from the whole log each time, so a resumed run's plots show every epoch.
    Each image is written to a temporary file and renamed, never left half-written.
    Chainer's PlotReport draws no axis labels and writes only under the trainer's out.

    Args:
        path: folder of the images (made if missing).
        log_name: name of the LogReport extension to read.
    """

    def write(self, log: list[dict]) -> None:
        import matplotlib

        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator

        self.path.mkdir(parents=True, exist_ok=True)
        for file_name, (ylabel, series) in PLOTS.items():
            figure, axes = plt.subplots(figsize=(6, 4), dpi=100)
            for key, label in series:
                points = [(entry['epoch'], entry[key]) for entry in log if key in entry]
                if points:
                    axes.plot(*zip(*points, strict=True), marker='.', label=label)
            axes.set_xlabel('epoch')
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
            axes.set_ylabel(ylabel)
            axes.grid(alpha=0.3)
            if axes.lines:
                axes.legend()
            figure.tight_layout()
            try:
                write_atomically(self.path / file_name, partial(figure.savefig, format='jpeg'))
            finally:
                plt.close(figure)


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
                    f'(iteration {updater.iteration}); try a lower --lr. The last snapshot '
                    'was kept.'
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
        npz.NpzDeserializer(state).load(trainer)

    def __call__(self, trainer: chainer.training.Trainer) -> None:
        pass  # all its work is in initialize


def log_extras(optimizer: chainer.Optimizer, batch_size: int, confusion_of: Callable):
    """A LogReport ``postprocess`` adding ``lr``, ``train/images_per_sec`` and confusion counts.

    Args:
        optimizer: its ``lr`` is the rate of the epoch being logged.
        batch_size: images per training step.
        confusion_of: returns the evaluator's latest confusion matrix (numpy).
    """

    def postprocess(entry: dict) -> None:
        entry['lr'] = optimizer.lr
        step_time = entry.pop('main/step_time', None)
        if step_time:
            entry['train/images_per_sec'] = batch_size / step_time
        confusion = confusion_of()
        if confusion is not None and confusion.sum():
            entry['validation/confusion'] = confusion.tolist()

    return postprocess
