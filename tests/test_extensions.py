"""The extensions Chainer lacks: compact log, plots, non-finite guard, log extras."""

import json
import types

import numpy as np
import pytest
from PIL import Image

from trainer.extensions import (
    NonFiniteGuard,
    NonFiniteLossError,
    PlotLog,
    WriteLog,
    log_extras,
    write_atomically,
)

LOG = [
    {'epoch': 1, 'main/loss': 2.0, 'validation/main/loss': 2.1, 'main/accuracy': 0.2},
    {'epoch': 2, 'main/loss': 1.5, 'validation/main/loss': 1.7, 'main/accuracy': 0.4,
     'validation/main/accuracy': 0.35, 'validation/confusion': [[1, 0], [0, 1]]},
]  # fmt: skip


def test_write_atomically_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / 'log.json'
    path.write_text('old')

    def fail(tmp):
        with open(tmp, 'w') as f:
            f.write('half')
        raise OSError('disk full')

    with pytest.raises(OSError, match='disk full'):
        write_atomically(path, fail)
    assert path.read_text() == 'old'
    assert [p.name for p in tmp_path.iterdir()] == ['log.json']


def test_write_log_is_json_with_one_epoch_a_line(tmp_path):
    WriteLog(tmp_path / 'log.json').write(LOG)
    text = (tmp_path / 'log.json').read_text()
    assert json.loads(text) == LOG
    assert len(text.splitlines()) == len(LOG) + 2


def test_plots_are_jpegs_with_every_epoch(tmp_path):
    PlotLog(tmp_path / 'img').write(LOG)
    for name in ('loss.jpg', 'accuracy.jpg'):
        with Image.open(tmp_path / 'img' / name) as image:
            assert image.format == 'JPEG' and image.size == (600, 400)
    # a log of one epoch without test figures still draws
    PlotLog(tmp_path / 'img').write(LOG[:1])


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
    optimizer = types.SimpleNamespace(lr=0.01)
    confusion = np.array([[3, 1], [0, 4]])
    postprocess = log_extras(optimizer, 64, lambda: confusion)
    entry = {'main/step_time': 0.5}
    postprocess(entry)
    assert entry == {
        'lr': 0.01,
        'train/images_per_sec': 128.0,
        'validation/confusion': [[3, 1], [0, 4]],
    }
