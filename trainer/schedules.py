"""Learning-rate schedules: the step one (DenseNet: divide by 10 after 50 % and 75 %)
and a cosine one with linear warm-up (`--schedule cosine --warmup N`)."""

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


def cosine_lr(base_lr: float, step: int, total_steps: int, warmup_steps: int = 0) -> float:
    """Rate for the update after ``step`` finished updates: linear warm-up, then cosine to 0.

    During warm-up the rate rises linearly to ``base_lr``, reached by update
    ``warmup_steps``; the first update uses ``base_lr / warmup_steps`` (never 0). Then it
    follows half a cosine from ``base_lr`` down to 0 at ``total_steps``.

    >>> cosine_lr(0.1, 0, 100), cosine_lr(0.1, 50, 100), cosine_lr(0.1, 100, 100)
    (0.1, 0.05, 0.0)
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    done = min(step - warmup_steps, span) / span
    return base_lr * 0.5 * (1 + math.cos(math.pi * done))


class CosineSchedule:
    """Optimizer hook: before each update, the ``cosine_lr`` of the optimizer's updates.

    It reads ``optimizer.t`` (the updates done, saved by snapshots) and keeps no state of
    its own, so a resumed run continues on the same curve.

    Args:
        base_lr: the peak rate, reached at the end of the warm-up.
        total_steps: updates of the whole run (epochs x updates per epoch).
        warmup_steps: updates of the linear warm-up (0: none).
    """

    name = 'CosineSchedule'
    timing = 'pre'
    call_for_each_param = False

    def __init__(self, base_lr: float, total_steps: int, warmup_steps: int = 0) -> None:
        self.base_lr = base_lr
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps

    def __call__(self, optimizer: chainer.Optimizer) -> None:
        optimizer.lr = cosine_lr(self.base_lr, optimizer.t, self.total_steps, self.warmup_steps)
