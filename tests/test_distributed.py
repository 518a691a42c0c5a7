"""Data-parallel training under MPI (ChainerMN, naive communicator) on the CPU, end to end."""

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import trainer  # first: trainer.compat lets Chainer import on NumPy 2

# isort: split
import chainer
import numpy as np
import pytest

import main
from squeeze_net import SqueezeNet
from trainer.run_folder import RECORD_KEY

ROOT = Path(__file__).resolve().parents[1]
# The mpich wheel puts mpiexec beside the venv's python; a system MPI puts it on PATH.
MPIEXEC = Path(sys.executable).parent / 'mpiexec'
if not MPIEXEC.exists():
    MPIEXEC = Path(shutil.which('mpiexec') or MPIEXEC)

# Run by each rank: train as main.py does, then save the rank's weights and log.
RANK_SCRIPT = """
import json, sys
sys.path.insert(0, {root!r})
import trainer  # first: trainer.compat lets Chainer import on NumPy 2
import chainer
from mpi4py import MPI
from squeeze_net import SqueezeNet
from trainer.run_folder import RECORD_KEY

options = trainer.parse_args(sys.argv[1:])
model = SqueezeNet(10)
log = trainer.train(model, options)
rank = MPI.COMM_WORLD.rank
chainer.serializers.save_npz(f'{{options.save_path}}/../model_rank{{rank}}.npz', model)
with open(f'{{options.save_path}}/../log_rank{{rank}}.json', 'w') as f:
    json.dump(log, f)
"""


def _mpi_missing() -> str | None:
    """Why MPI tests cannot run here, or None when mpi4py and mpiexec are installed."""
    if importlib.util.find_spec('mpi4py') is None:
        return 'needs mpi4py (make install-mpi)'
    if not MPIEXEC.exists():
        return f'needs mpiexec, not found beside {sys.executable} nor on PATH (make install-mpi)'
    return None


MPI_MISSING = _mpi_missing()
needs_mpi = pytest.mark.skipif(MPI_MISSING is not None, reason=str(MPI_MISSING))


def argv(out: Path, data: Path, *extra: str) -> list[str]:
    return [
        '-p', str(out), '-b', '10', '--preset', '32', '--workers', '0', '--seed', '0',
        '--img-dir', str(out / 'img'), '--data', str(data), '--communicator', 'naive', *extra,
    ]  # fmt: skip


def mpiexec(cwd: Path, *command: str, **kwargs) -> subprocess.Popen:
    """``mpiexec -n 2 python COMMAND`` with one BLAS thread a rank (2 ranks, 2 cores)."""
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'OPENBLAS_NUM_THREADS': '1'}
    full = [str(MPIEXEC), '-n', '2', sys.executable, *command]
    return subprocess.Popen(full, cwd=cwd, env=env, text=True, **kwargs)


def run_mpi(cwd: Path, *command: str) -> str:
    process = mpiexec(cwd, *command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = process.communicate(timeout=180)
    assert process.returncode == 0, err
    return out


def kill_all(process: subprocess.Popen) -> None:
    """SIGKILL mpiexec, its proxy and the ranks at once (a crash), and wait until all are gone."""
    pids, todo = [], [process.pid]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        with contextlib.suppress(OSError):
            todo += map(int, Path(f'/proc/{pid}/task/{pid}/children').read_text().split())
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait(timeout=60)
    deadline = time.monotonic() + 60
    while any(_alive(pid) for pid in pids):
        assert time.monotonic() < deadline
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        return Path(f'/proc/{pid}/stat').read_text().split(') ')[-1][0] not in 'ZX'
    except OSError:
        return False


def read_log(out: Path) -> list[dict]:
    return json.loads((out / 'log.json').read_text())


def load_weights(path: Path) -> dict:
    """The arrays of ``path`` but the run's record that ``model.npz`` carries."""
    with np.load(path) as arrays:
        return {key: value for key, value in arrays.items() if key != RECORD_KEY}


def evaluate(model_path: Path, data: Path) -> tuple[float, float]:
    """Accuracy and mean loss of the saved weights on the whole test set, in one process."""
    model = SqueezeNet(10)
    chainer.serializers.load_npz(model_path, model)
    test = trainer.load_cifar('cifar10', data).test
    _, transform = trainer.make_transforms('32')
    x = np.stack([transform((image, 0))[0] for image in test.images])
    correct, loss = 0, 0.0
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        for start in range(0, len(x), 10):  # the ranks' batches: 2 x 2 of 10
            y = model(x[start : start + 10])
            t = test.labels[start : start + 10]
            correct += int((y.array.argmax(axis=1) == t).sum())
            loss += float(chainer.functions.softmax_cross_entropy(y, t, reduce='no').array.sum())
    return correct / len(x), loss / len(x)


@pytest.mark.mpi
@needs_mpi
def test_two_ranks_agree_report_exact_accuracy_and_resume_after_a_kill(tmp_path, cifar10_archive):
    out = tmp_path / 'run'
    script = tmp_path / 'rank.py'
    script.write_text(RANK_SCRIPT.format(root=str(ROOT)))
    printed = run_mpi(tmp_path, str(script), *argv(out, cifar10_archive, '-e', '2'))
    assert printed.count('validation/main/accuracy') == 1  # only rank 0 prints its report

    log = read_log(out)
    assert [entry['epoch'] for entry in log] == [1, 2]
    assert log[-1]['iteration'] == 10  # 100 images, 50 a rank, 10 a step
    assert sum(map(sum, log[-1]['validation/confusion'])) == 40  # every test image once
    rank_logs = [json.loads((tmp_path / f'log_rank{r}.json').read_text()) for r in (0, 1)]
    for key in ('main/loss', 'main/accuracy', 'validation/main/loss', 'validation/confusion'):
        assert [e[key] for e in rank_logs[0]] == [e[key] for e in rank_logs[1]]

    weights = [load_weights(tmp_path / f'model_rank{r}.npz') for r in (0, 1)]
    saved = load_weights(out / 'model.npz')
    assert weights[0].keys() == weights[1].keys() == saved.keys()
    for name in saved:  # parameters and BatchNormalization statistics alike
        assert np.array_equal(weights[0][name], weights[1][name]), name
        assert np.array_equal(weights[0][name], saved[name]), name

    accuracy, loss = evaluate(out / 'model.npz', cifar10_archive)
    assert log[-1]['validation/main/accuracy'] == accuracy
    assert log[-1]['validation/main/loss'] == pytest.approx(loss, rel=1e-6)

    # Continue to 4 epochs with main.py, kill every process just after epoch 3, restart.
    command = (str(ROOT / 'main.py'), *argv(out, cifar10_archive, '-e', '4'))
    quiet = {'stdout': subprocess.DEVNULL, 'stderr': subprocess.DEVNULL}
    process = mpiexec(tmp_path, *command, **quiet)
    deadline = time.monotonic() + 120
    while not (out / 'snapshot_epoch_3').exists() and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)  # mid-write of the epoch's files or early in epoch 4
    assert process.poll() is None, 'the run ended before it could be killed'
    kill_all(process)
    run_mpi(tmp_path, *command)
    resumed = read_log(out)
    assert [entry['epoch'] for entry in resumed] == [1, 2, 3, 4]
    assert resumed[:2] == log and resumed[3]['iteration'] == 20
    assert [name for name in os.listdir(out) if name.startswith(('tmp', '.'))] == ['.lock']


@pytest.mark.mpi
@needs_mpi
def test_an_error_on_one_rank_ends_every_rank(tmp_path, cifar10_archive):
    good = argv(tmp_path / 'run', cifar10_archive, '-e', '1')
    bad = argv(tmp_path / 'run', tmp_path / 'missing.tar.gz', '-e', '1')
    main_py = str(ROOT / 'main.py')
    command = [str(MPIEXEC), '-n', '1', sys.executable, main_py, *good]
    command += [':', '-n', '1', sys.executable, main_py, *bad]  # rank 1 cannot load its data
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1  # rather than rank 0 waiting for rank 1 forever
    assert 'error: ' + str(tmp_path / 'missing.tar.gz') + ': no such file' in result.stderr


@pytest.mark.mpi
@needs_mpi
def test_gpu_communicator_without_cupy_says_what_to_do(tmp_path, cifar10_archive):
    if chainer.backends.cuda.available:
        pytest.skip('CuPy finds a GPU here')
    command = [sys.executable, str(ROOT / 'main.py')]
    extra = ('-e', '1', '-g', '0', '--communicator', 'pure_nccl')  # the last one counts
    command += argv(tmp_path / 'run', cifar10_archive, *extra)
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.startswith('error: --communicator pure_nccl: ')
    assert result.stderr.endswith(
        'Install CuPy and NCCL on a machine with NVIDIA GPUs, or use naive on the CPU\n'
    )


def test_missing_mpi4py_is_one_line_and_exit_1(tmp_path, cifar10_archive, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, 'mpi4py', None)  # import mpi4py raises ImportError
    assert main.main(argv(tmp_path / 'run', cifar10_archive, '-e', '1')) == 1
    assert capsys.readouterr().err == (
        'error: --communicator naive: mpi4py is not installed; run `make install-mpi`\n'
    )


def test_gpu_communicators_need_gpus():
    with pytest.raises(SystemExit) as exit_info:
        trainer.parse_args(['--communicator', 'pure_nccl'])
    assert exit_info.value.code == 2
    assert trainer.parse_args(['--communicator', 'pure_nccl', '-g', '0']).gpu == 0
    assert trainer.parse_args([]).communicator is None


@pytest.mark.parametrize('communicator', ['naive', 'flat'])
def test_mpi_on_gpu_memory_is_refused(communicator, capsys):
    with pytest.raises(SystemExit) as exit_info:
        trainer.parse_args(['--communicator', communicator, '-g', '0'])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert 'not CUDA-aware' in err or "invalid choice: 'flat'" in err


AVERAGE_SCRIPT = """
import json, sys
import trainer
import chainer.links as L
import numpy as np
from trainer import distributed

comm = distributed.create_communicator('naive')
bn = L.BatchNormalization(3)
bn.avg_mean[...] = comm.rank + 1
bn.avg_var[...] = 10 * (comm.rank + 1)
bn.N = comm.rank  # an integer persistent: left alone
distributed.average_over_ranks(bn, comm)
with open(f'{out}/rank{{comm.rank}}.json', 'w') as f:  # one file a rank: no interleaving
    json.dump([bn.avg_mean.tolist(), bn.avg_var.tolist(), int(bn.N)], f)
"""


@pytest.mark.mpi
@needs_mpi
def test_persistents_are_averaged_through_the_host(tmp_path):
    """The path that needs no CUDA-aware MPI: means of the ranks' BN statistics."""
    script = tmp_path / 'average.py'
    script.write_text(AVERAGE_SCRIPT.format(out=tmp_path))
    run_mpi(tmp_path, str(script))
    lines = [json.loads((tmp_path / f'rank{rank}.json').read_text()) for rank in (0, 1)]
    assert sorted(line[2] for line in lines) == [0, 1]
    for mean, var, _ in lines:
        assert mean == [1.5] * 3 and var == [15.0] * 3
