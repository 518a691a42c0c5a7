"""The step learning-rate schedule."""

import chainer
import numpy as np
import pytest

from trainer.schedules import StepSchedule, resolve_milestones, step_lr


def test_milestones_as_fractions_or_epochs():
    assert resolve_milestones((0.5, 0.75), 300) == [150, 225]
    assert resolve_milestones((150, 225), 300) == [150, 225]
    assert resolve_milestones((0.75, 10), 20) == [10, 15]
    # fractions round up: a short run never drops the rate early
    assert resolve_milestones((0.5, 0.75), 1) == [1, 1]
    assert resolve_milestones((0.5, 0.75), 3) == [2, 3]
    assert resolve_milestones((0.5, 0.75), 5) == [3, 4]
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match='neither a fraction'):
            resolve_milestones((bad,), 10)


def test_reference_schedule_over_300_epochs():
    milestones = resolve_milestones((0.5, 0.75), 300)
    # lr of epoch e (1-based) is step_lr(.., e - 1): after 150 and 225 finished epochs
    rates = [step_lr(0.1, milestones, e - 1) for e in range(1, 301)]
    assert rates[:150] == [0.1] * 150
    assert rates[150:225] == [0.01] * 75
    assert rates[225:] == [0.001] * 75


def test_hook_sets_lr_from_the_optimizers_epoch():
    link = chainer.links.Linear(2, 2)
    optimizer = chainer.optimizers.MomentumSGD(lr=123.0)
    optimizer.setup(link)
    optimizer.add_hook(StepSchedule(0.1, [2, 3]))
    seen = []
    for _ in range(4):
        link.cleargrads()
        link.W.grad = np.zeros_like(link.W.array)
        link.b.grad = np.zeros_like(link.b.array)
        optimizer.update()
        seen.append(optimizer.lr)
        optimizer.new_epoch()
    assert seen == [0.1, 0.1, 0.01, 0.001]
