"""The step learning-rate schedule (DenseNet style: divide by 10 after 50 % and 75 %)."""

import math
from collections.abc import Sequence

import chainer


def resolve_milestones(milestones: Sequence[float], epochs: int) -> list[int]:
    """Milestones as epochs: fractions (0 < m < 1) of ``epochs`` or whole epoch numbers.

    A fraction rounds up, so the rate never drops before that share of the run is done.

    >>> resolve_milestones((0.5, 0.75), 300)
    [150, 225]
    """
    resolved = []
    for m in milestones:
        if 0 < m < 1:
            resolved.append(math.ceil(round(m * epochs, 9)))
        elif m >= 1 and float(m).is_integer():
            resolved.append(int(m))
        else:
            raise ValueError(f'milestone {m!r} is neither a fraction in (0, 1) nor an epoch')
    return sorted(resolved)


def step_lr(base_lr: float, milestones: Sequence[int], epoch: int, divisor: float = 10) -> float:
    """Learning rate for training after ``epoch`` finished epochs (epoch 0 = the start).

    Divides (rather than multiplies by 0.1) so that 0.1 gives exactly 0.01 and 0.001.
    """
    return base_lr / divisor ** sum(epoch >= m for m in milestones)


class StepSchedule:
    """Optimizer hook: before each update, set ``lr`` from the optimizer's finished epochs.

    It reads ``optimizer.epoch``, which the updater advances and snapshots save, and keeps
    no state of its own: a resumed run gets the right rate on its first step.

    Args:
        base_lr: rate of the first epoch.
        milestones: epochs after which the rate is divided by ``divisor``.
        divisor: the factor (10).
    """

    name = 'StepSchedule'
    timing = 'pre'
    call_for_each_param = False

    def __init__(self, base_lr: float, milestones: Sequence[int], divisor: float = 10) -> None:
        self.base_lr = base_lr
        self.milestones = list(milestones)
        self.divisor = divisor

    def __call__(self, optimizer: chainer.Optimizer) -> None:
        optimizer.lr = step_lr(self.base_lr, self.milestones, optimizer.epoch, self.divisor)
