"""Faults from outside (Ctrl-C, SIGTERM, SIGKILL at any moment): one line, nothing lost.

Each run is a real ``main.py`` process on tiny data. After any fault the same command
resumes, and the run folder keeps its guarantees: log.json holds every finished epoch
exactly once, the newest snapshot loads, model.npz and optimizer.npz are its weights.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import write_cifar10

from trainer import run_folder

ROOT = Path(__file__).resolve().parents[1]


def command(out: Path, data: Path, epochs: int) -> list[str]:
    return [
        sys.executable, str(ROOT / 'main.py'), '-p', str(out), '-e', str(epochs), '-b', '20',
        '--preset', '32', '--workers', '0', '--seed', '0', '--img-dir', str(out / 'img'),
        '--data', str(data), '--no-progress',
    ]  # fmt: skip


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    # 40 training images: 2 steps an epoch, so most of an epoch is evaluation and writing
    return write_cifar10(tmp_path_factory.mktemp('data'), n_train=40, n_test=20)


def wait_for(path: Path, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f'{path} never appeared'
        time.sleep(0.02)


def check_guarantees(out: Path) -> int:
    """Assert the run folder's guarantees at rest; return the newest finished epoch."""
    folder = run_folder.RunFolder(out)
    epoch, arrays = folder.newest_snapshot()
    log = json.loads((out / 'log.json').read_text())
    assert [entry['epoch'] for entry in log] == list(range(1, epoch + 1))
    assert log == json.loads(str(arrays[run_folder.LOG_KEY]))
    for name, prefix in (
        ('model.npz', run_folder.MODEL_PREFIX),
        ('optimizer.npz', run_folder.OPTIMIZER_PREFIX),
    ):
        with np.load(out / name) as view:
            keys = {k[len(prefix) :] for k in arrays if k.startswith(prefix)}
            files = set(view.files) - {run_folder.RECORD_KEY}  # model.npz's own record
            assert files == keys, name
            for key in files:
                np.testing.assert_array_equal(view[key], arrays[prefix + key], err_msg=name)
    assert not list(out.glob('*.damaged'))
    leftovers = [p.name for p in out.iterdir() if p.name.endswith('.tmp')]
    leftovers += [p.name for p in (out / 'img').iterdir() if p.name.endswith('.tmp')]
    assert leftovers == []
    return epoch


@pytest.mark.parametrize(
    'signum, status, word',
    [(signal.SIGINT, 130, 'interrupted'), (signal.SIGTERM, 143, 'terminated')],
)
def test_ctrl_c_and_sigterm_end_with_one_line_and_the_run_resumes(
    tmp_path, data, signum, status, word
):
    out = tmp_path / 'run'
    process = subprocess.Popen(
        command(out, data, 6), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    wait_for(out / 'snapshot_epoch_1', process)
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == status, err
    assert 'Traceback' not in err
    errors = [line for line in err.splitlines() if line.startswith('error: ')]
    assert errors == [f'error: {word}; rerun the same command to resume']
    check_guarantees(out)
    subprocess.run(command(out, data, 6), check=True, capture_output=True, timeout=300)
    assert check_guarantees(out) == 6


@pytest.mark.slow
def test_killed_at_random_moments_the_folder_keeps_its_guarantees(tmp_path, data):
    """SIGKILL at random points (steps, evaluation, snapshot and plot writes) 20 times.

    Each round starts a long run and kills it after a random delay, then restarts the same
    folder for one more epoch and checks the guarantees.
    """
    out = tmp_path / 'run'
    rng = random.Random(0)
    trained = 0
    kills_after_start = 0
    for _ in range(20):
        process = subprocess.Popen(
            command(out, data, 1000), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if (out / 'run.json').exists():  # wait for the start-up, then kill in the loop
            deadline = time.monotonic() + 60
            started = os.path.getmtime(out / 'run.json')
            while os.path.getmtime(out / 'run.json') == started:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.01)
            kills_after_start += 1
        time.sleep(rng.uniform(0.0, 1.5))
        process.kill()
        process.wait()
        newest = run_folder.RunFolder(out).snapshots()
        trained = newest[-1][0] if newest else 0
        subprocess.run(
            command(out, data, trained + 1), check=True, capture_output=True, timeout=300
        )
        assert check_guarantees(out) == trained + 1
    assert kills_after_start >= 19
