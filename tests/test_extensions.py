"""The extensions Chainer lacks: non-finite guard, log extras."""

import types

import numpy as np
import pytest

from trainer.errors import NonFiniteLossError
from trainer.extensions import NonFiniteGuard, log_extras


def fake_trainer(loss, iteration, new_epoch=False):
    updater = types.SimpleNamespace(iteration=iteration, is_new_epoch=new_epoch, epoch_detail=0.5)
    return types.SimpleNamespace(observation={'main/loss': np.float32(loss)}, updater=updater)


def test_guard_checks_every_interval_and_at_epoch_end():
    guard = NonFiniteGuard(interval=3)
    guard(fake_trainer(np.nan, 1))  # folded into the flag, not yet read
    with pytest.raises(NonFiniteLossError, match=r'main/loss became NaN or infinite'):
        guard(fake_trainer(1.0, 3))
    guard = NonFiniteGuard(interval=100)
    guard(fake_trainer(np.inf, 1))
    with pytest.raises(NonFiniteLossError, match='iteration 2'):
        guard(fake_trainer(1.0, 2, new_epoch=True))
    guard = NonFiniteGuard(interval=2)
    for i in range(1, 7):
        guard(fake_trainer(1.0, i, new_epoch=i == 6))  # finite: never raises


def test_log_extras():
    confusion = np.array([[3, 1], [0, 4]])
    postprocess = log_extras(2, lambda: confusion)
    entry = {'train/images_per_sec': 64.0}
    postprocess(entry)
    assert entry == {
        'train/images_per_sec': 128.0,
        'validation/confusion': [[3, 1], [0, 4]],
    }
