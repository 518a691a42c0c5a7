"""The run folder's format, unit by unit: atomic writes, snapshots by number, the views."""

import json

import pytest

from trainer.run_folder import RunFolder, write_atomically

LOG = [
    {'epoch': 1, 'main/loss': 2.0, 'validation/main/loss': 2.1, 'main/accuracy': 0.2},
    {'epoch': 2, 'main/loss': 1.5, 'validation/main/loss': 1.7, 'main/accuracy': 0.4},
]


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


def test_log_json_has_one_epoch_a_line(tmp_path):
    RunFolder(tmp_path).write_log(LOG)
    text = (tmp_path / 'log.json').read_text()
    assert json.loads(text) == LOG
    assert len(text.splitlines()) == len(LOG) + 2
