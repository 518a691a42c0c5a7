"""Weight averaging (EMA) of a model's parameters and batch-norm statistics.

``WeightAverage`` keeps a copy of the model whose every float array (the parameters and
the persistent values, BN's running mean and variance included) follows
``average = decay * average + (1 - decay) * current`` after each update (integer
persistents, such as BN's count, are copied). The copy is part of the trainer's state, so
a snapshot holds it and a resumed run continues the same average; the run folder writes
it beside the raw weights as ``model_ema.npz`` (``run_folder.EMA_PREFIX``). ``AverageEvaluator``
reports it as ``validation_ema/main/...``.
"""

import copy

import chainer
from chainer.training import extension

from trainer.evaluator import ClassificationEvaluator

EMA_NAME = 'WeightAverage'  # a snapshot keeps the average under extensions/<name>/average/


def check_decay(decay: float) -> float:
    """The decay, or ValueError: it must lie in (0, 1)."""
    if isinstance(decay, bool) or not isinstance(decay, int | float) or not 0 < decay < 1:
        raise ValueError(f'must be a number in (0, 1), got {decay!r}')
    return float(decay)


class _Arrays(chainer.Serializer):
    """A serializer that walks a link and hands each (path, value) to ``visit``.

    ``Link.serialize`` visits every parameter's array and every persistent value, and
    stores what the serializer returns for a persistent: the public way to reach them all.
    """

    def __init__(self, visit, path: str = '') -> None:
        self.visit = visit
        self.path = path

    def __getitem__(self, key: str) -> '_Arrays':
        return _Arrays(self.visit, f'{self.path}{key}/')

    def __call__(self, key: str, value):
        return self.visit(self.path + key, value)


def average_into(average: chainer.Link, current: chainer.Link, decay: float) -> None:
    """One EMA step: every float array of ``average`` moves towards ``current``'s.

    Integer values (BN's count of batches) are copied from ``current``.
    """
    values = {}

    def record(path, value):
        values[path] = value
        return value

    def step(path, value):
        new = values[path]
        if value is None or new is None:  # a lazy parameter: the first value as it is
            return None if new is None else copy.copy(new)
        xp = chainer.backend.get_array_module(value)
        if isinstance(value, xp.ndarray) and value.dtype.kind == 'f':
            value *= decay
            value += (1 - decay) * new
            return value
        return copy.copy(new)

    current.serialize(_Arrays(record))
    average.serialize(_Arrays(step))


class WeightAverage(extension.Extension):
    """After each update, one ``average_into`` step of ``average`` towards ``model``.

    Args:
        model: the model being trained (the predictor, images -> logits).
        decay: the weight of the old average, in (0, 1).
    """

    trigger = (1, 'iteration')
    priority = extension.PRIORITY_WRITER + 1  # before evaluation and the snapshot
    name = EMA_NAME

    def __init__(self, model: chainer.Link, decay: float) -> None:
        self.model = model
        self.decay = check_decay(decay)
        self.average = copy.deepcopy(model)

    def __call__(self, trainer: chainer.training.Trainer) -> None:
        average_into(self.average, self.model, self.decay)

    def serialize(self, serializer) -> None:
        self.average.serialize(serializer['average'])


class AverageEvaluator(ClassificationEvaluator):
    """``ClassificationEvaluator`` of the averaged model, reported as ``validation_ema/...``."""

    default_name = 'validation_ema'

    def evaluate(self) -> dict:
        return {
            key.replace('validation/', 'validation_ema/', 1): value
            for key, value in super().evaluate().items()
            if not key.startswith('validation/main/accuracy/')  # per class: the raw model's
        }
