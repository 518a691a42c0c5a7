"""The cosine schedule with linear warm-up (trainer.schedules): values at the boundaries."""

import math

import chainer
import chainer.links as L
import numpy as np
import pytest

from trainer.schedules import CosineSchedule, cosine_lr


def test_the_warm_up_rises_linearly_to_the_base_rate():
    assert cosine_lr(0.1, 0, 100, 10) == pytest.approx(0.01)  # the first update: not 0
    assert cosine_lr(0.1, 4, 100, 10) == pytest.approx(0.05)
    assert cosine_lr(0.1, 9, 100, 10) == pytest.approx(0.1)  # the last of the warm-up
    assert cosine_lr(0.1, 10, 100, 10) == pytest.approx(0.1)  # the cosine's start


def test_the_cosine_falls_to_zero_at_the_end():
    assert cosine_lr(0.1, 55, 100, 10) == pytest.approx(0.05)  # half-way after the warm-up
    assert cosine_lr(0.1, 100, 100, 10) == pytest.approx(0.0, abs=1e-12)
    assert cosine_lr(0.1, 150, 100, 10) == pytest.approx(0.0, abs=1e-12)  # never negative
    assert cosine_lr(0.1, 0, 100) == 0.1
    assert cosine_lr(0.1, 25, 100) == pytest.approx(0.05 * (1 + math.cos(math.pi / 4)))


def test_the_hook_reads_the_optimizers_updates():
    optimizer = chainer.optimizers.MomentumSGD(lr=1.0)
    optimizer.setup(L.Linear(2, 1))
    optimizer.add_hook(CosineSchedule(0.2, total_steps=20, warmup_steps=4))
    rates = []
    for _ in range(20):
        optimizer.target.cleargrads()
        optimizer.target.W.grad = np.zeros_like(optimizer.target.W.array)
        optimizer.target.b.grad = np.zeros_like(optimizer.target.b.array)
        optimizer.update()
        rates.append(optimizer.lr)
    assert rates[:4] == pytest.approx([0.05, 0.1, 0.15, 0.2])
    assert rates == pytest.approx([cosine_lr(0.2, t, 20, 4) for t in range(20)])
    optimizer.t = 12  # as a snapshot restores it
    optimizer.update()
    assert optimizer.lr == pytest.approx(cosine_lr(0.2, 12, 20, 4))
