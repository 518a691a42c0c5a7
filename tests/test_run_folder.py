"""The run folder: its format unit by unit, and every way issue 13 found to lose a result.

Each numbered case of issue 13 has a test here or in test_faults.py (signals, kills).
"""

import json
import lzma
import os
import random
import re
import shutil
import zlib
from pathlib import Path

import chainer
import numpy as np
import pytest
from conftest import write_cifar10

import main
from squeeze_net import SqueezeNet
from trainer import run_folder
from trainer.errors import ModelFileError, RunFolderError
from trainer.run_folder import RunFolder, load_weights, write_atomically

LOG = [
    {'epoch': 1, 'main/loss': 2.0, 'validation/main/loss': 2.1, 'main/accuracy': 0.2},
    {'epoch': 2, 'main/loss': 1.5, 'validation/main/loss': 1.7, 'main/accuracy': 0.4},
]


def argv(out: Path, data: Path, *extra: str) -> list[str]:
    return [
        '-p', str(out), '-b', '20', '--preset', '32', '--workers', '0', '--seed', '0',
        '--img-dir', str(out / 'img'), '--data', str(data), '--no-progress', *extra,
    ]  # fmt: skip


def epochs(out: Path) -> list[int]:
    return [entry['epoch'] for entry in json.loads((out / 'log.json').read_text())]


def fail(capsys) -> str:
    """The one stderr line of a failed main() call."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith('error: ')
    return lines[0]


def snapshot_files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob('snapshot_epoch_*'))}


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return write_cifar10(tmp_path_factory.mktemp('data'))


@pytest.fixture(scope='module')
def finished(tmp_path_factory, data):
    """A run folder of 4 finished epochs (snapshots 2, 3, 4 kept)."""
    out = tmp_path_factory.mktemp('finished') / 'run'
    assert main.main(argv(out, data, '-e', '4')) == 0
    return out


@pytest.fixture
def run(tmp_path, finished):
    """A fresh copy of the 4-epoch run folder."""
    out = tmp_path / 'run'
    shutil.copytree(finished, out)
    return out


# --- the format --------------------------------------------------------------------------


def test_write_atomically_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / 'log.json'
    path.write_text('old')

    def broken(tmp):
        with open(tmp, 'w') as f:
            f.write('half')
        raise OSError('disk full')

    with pytest.raises(OSError, match='disk full'):
        write_atomically(path, broken)
    assert path.read_text() == 'old'
    assert [p.name for p in tmp_path.iterdir()] == ['log.json']


def test_log_json_has_one_epoch_a_line(tmp_path):
    RunFolder(tmp_path).write_log(LOG)
    text = (tmp_path / 'log.json').read_text()
    assert json.loads(text) == LOG
    assert len(text.splitlines()) == len(LOG) + 2


def test_the_views_are_the_newest_snapshot(run):
    snapshot = dict(np.load(run / 'snapshot_epoch_4'))
    for name, prefix in (
        ('model.npz', run_folder.MODEL_PREFIX),
        ('optimizer.npz', 'updater/optimizer:main/'),
    ):
        view = np.load(run / name)
        files = set(view.files) - {run_folder.RECORD_KEY}  # model.npz's own record (issue 24)
        assert files == {k[len(prefix) :] for k in snapshot if k.startswith(prefix)}
        for key in files:
            np.testing.assert_array_equal(view[key], snapshot[prefix + key])
    assert json.loads((run / 'log.json').read_text()) == json.loads(
        str(snapshot[run_folder.LOG_KEY])
    )
    assert sorted(snapshot_files(run)) == [
        'snapshot_epoch_2',
        'snapshot_epoch_3',
        'snapshot_epoch_4',
    ]


def test_run_json_records_settings_and_sessions(run):
    record = json.loads((run / 'run.json').read_text())
    settings = record['settings']
    assert settings['arch'] == 'squeezenet' and settings['dataset'] == 'cifar10'
    assert (settings['train_images'], settings['test_images']) == (100, 40)
    assert (settings['preset'], settings['batch'], settings['lr'], settings['seed']) == (
        '32',
        20,
        0.1,
        0,
    )
    assert record['epochs'] == 4 and len(record['sessions']) == 1
    session = record['sessions'][0]
    assert session['options']['epoch'] == 4
    environment = session['environment']
    assert environment['chainer'] == '7.8.1' and environment['device'] == 'cpu'
    assert environment['numpy'] == np.__version__


# --- issue 13, case by case ---------------------------------------------------------------


def test_1_lower_epochs_is_refused_and_equal_is_nothing_to_do(run, data, capsys, caplog):
    caplog.set_level('INFO')
    before = snapshot_files(run)
    model = (run / 'model.npz').read_bytes()
    assert main.main(argv(run, data, '-e', '3')) == 1
    assert 'holds 4 trained epochs, more than -e 3' in fail(capsys)
    assert main.main(argv(run, data, '-e', '4')) == 0
    assert 'nothing to do' in caplog.text
    assert snapshot_files(run) == before and (run / 'model.npz').read_bytes() == model
    assert epochs(run) == [1, 2, 3, 4]


def test_2_a_diverging_resume_leaves_model_npz_at_the_last_good_epoch(
    run, data, capsys, monkeypatch
):
    from trainer.schedules import StepSchedule

    snapshot = dict(np.load(run / 'snapshot_epoch_4'))
    monkeypatch.setattr(StepSchedule, '__call__', lambda s, o: setattr(o, 'lr', 1e30))
    assert main.main(argv(run, data, '-e', '6')) == 1
    assert 'NaN or infinite' in fail(capsys)
    model = np.load(run / 'model.npz')
    for key in set(model.files) - {run_folder.RECORD_KEY}:
        np.testing.assert_array_equal(model[key], snapshot[run_folder.MODEL_PREFIX + key])
    assert epochs(run) == [1, 2, 3, 4]


def test_2_model_npz_is_not_rewritten_during_a_resumed_epoch(run, data, monkeypatch):
    """Nothing but SaveEpoch writes model.npz: during epoch 5 it still holds epoch 4."""
    seen = []
    original = run_folder.RunFolder.commit

    def commit(self, arrays, epoch, keep):
        seen.append((epoch, (run / 'model.npz').read_bytes()))
        original(self, arrays, epoch, keep)

    model_4 = (run / 'model.npz').read_bytes()
    monkeypatch.setattr(run_folder.RunFolder, 'commit', commit)
    assert main.main(argv(run, data, '-e', '5')) == 0
    assert [(epoch, data_ == model_4) for epoch, data_ in seen] == [(5, True)]


def test_predict_refuses_diverged_or_other_precision_weights(run, tmp_path, capsys):
    weights = dict(np.load(run / 'model.npz'))
    bad = dict(weights, **{'conv1/W': weights['conv1/W'] * np.nan})
    np.savez(tmp_path / 'nan.npz', **bad)
    wide = {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in weights.items()}
    np.savez(tmp_path / 'float64.npz', **wide)
    content = (run / 'model.npz').read_bytes()
    garbled = content[:2000] + bytes(255 - b for b in content[2000:6000]) + content[6000:]
    (tmp_path / 'garbled.npz').write_bytes(garbled)
    (tmp_path / 'truncated.npz').write_bytes(content[:5000])
    image = tmp_path / 'x.png'
    from PIL import Image

    Image.new('RGB', (8, 8)).save(image)
    for name, message in (
        ('nan.npz', 'conv1/W holds NaN or infinite values'),
        ('float64.npz', 'is float64, the model expects float32'),
        ('garbled.npz', 'damaged or foreign npz file'),
        ('truncated.npz', 'not an npz file'),
    ):
        assert main.main(['predict', '-m', str(tmp_path / name), str(image)]) == 1
        assert message in fail(capsys), name


def test_3_resume_takes_the_newest_snapshot_by_number_not_time(run, data):
    shutil.copy(run / 'snapshot_epoch_3', run / 'snapshot_epoch_3.bak')
    os.utime(run / 'snapshot_epoch_2', (2e9, 2e9))  # the newest by time, by far
    before = json.loads((run / 'log.json').read_text())
    assert main.main(argv(run, data, '-e', '5')) == 0
    after = json.loads((run / 'log.json').read_text())
    assert [e['epoch'] for e in after] == [1, 2, 3, 4, 5]
    assert after[:4] == before  # epochs 3 and 4 were not retrained


def central_directory(content: bytes, offset: int, change) -> bytes:
    """``content`` with two bytes of its first central-directory entry changed (issue 24, 3)."""
    at = content.index(b'PK\x01\x02') + offset
    value = int.from_bytes(content[at : at + 2], 'little')
    return content[:at] + change(value).to_bytes(2, 'little') + content[at + 2 :]


def declaring(content: bytes, key: str, shape: tuple) -> bytes:
    """``content`` (an npz) plus a member whose header declares ``shape`` float32, with 1 KB
    of data: a small file that would ask for a huge array (issue 24, 7)."""
    import io
    import zipfile

    buffer = io.BytesIO(content)
    with zipfile.ZipFile(buffer, 'a') as archive:
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            header, {'descr': '<f4', 'fortran_order': False, 'shape': shape}
        )
        archive.writestr(f'{key}.npy', header.getvalue() + bytes(1024))
    return buffer.getvalue()


def other_class_count(path: Path, epoch: int) -> bytes:
    """The snapshot at ``path`` as a 100-class model's of epoch ``epoch`` (issue 24, 2)."""
    import io

    arrays = dict(np.load(path))
    for key, value in arrays.items():
        if key.startswith(run_folder.MODEL_PREFIX) and value.ndim and value.shape[0] == 10:
            arrays[key] = np.zeros((100, *value.shape[1:]), value.dtype)
    arrays[run_folder.EPOCH_KEY] = np.asarray(epoch)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


@pytest.mark.parametrize(
    'damage',
    [
        'truncated',
        'garbled',
        'empty',
        'foreign',
        'compression method',
        'encrypted',
        'huge array',
        'other class count',
    ],
)
def test_4_a_damaged_newest_snapshot_is_set_aside_and_the_one_before_used(
    run, data, damage, caplog, monkeypatch
):
    newest = run / 'snapshot_epoch_4'
    content = newest.read_bytes()
    newest.write_bytes(
        {
            'truncated': lambda: content[: len(content) // 2],
            'garbled': lambda: (
                content[:1000] + bytes(255 - b for b in content[1000:3000]) + content[3000:]
            ),
            'empty': lambda: b'',
            'foreign': lambda: (run / 'model.npz').read_bytes(),
            # issue 24, 3: damage to the zip directory (NotImplementedError, RuntimeError)
            'compression method': lambda: central_directory(content, 10, lambda v: 99),
            'encrypted': lambda: central_directory(content, 8, lambda v: v | 1),
            # issue 24, 7: refused from the headers, before any array is read
            'huge array': lambda: declaring(content, 'extensions/Huge/big', (2**31,)),
            # issue 24, 2: refused before anything is written, set aside like a damaged one
            'other class count': lambda: other_class_count(newest, 4),
        }[damage]()
    )
    published = []
    publish = RunFolder.publish
    monkeypatch.setattr(
        RunFolder, 'publish', lambda self, arrays: published.append(arrays) or publish(self, arrays)
    )
    assert main.main(argv(run, data, '-e', '4')) == 0
    assert (run / 'snapshot_epoch_4.damaged').exists()
    assert epochs(run) == [1, 2, 3, 4]  # epoch 4 trained again from snapshot 3
    warnings = [r.getMessage() for r in caplog.records if 'snapshot_epoch_4' in r.getMessage()]
    assert len(warnings) == 1 and 'renamed it to snapshot_epoch_4.damaged' in warnings[0]
    np.load(run / 'snapshot_epoch_4')  # a new, good one
    # the first files written are snapshot 3's views, never the damaged or foreign one's
    assert int(published[0][run_folder.EPOCH_KEY]) == 3
    why = {
        'compression method': 'NotImplementedError: That compression method is not supported',
        'encrypted': 'RuntimeError: File ',
        'huge array': 'declares 8.0 GiB of arrays',
        'other class count': 'weights of a 100-class model, expected 10 classes',
    }
    assert why.get(damage, '') in warnings[0]


@pytest.mark.parametrize(
    'extra, setting',
    [
        (['-b', '10'], 'batch 20, not 10'),
        (['--preset', '122'], 'preset 32, not 122'),
        (['-b', '20', '-trb', '2'], 'train_batch_divide 1, not 2'),
        (['-lr', '0.05'], 'lr 0.1, not 0.05'),
        (['--seed', '1'], 'seed 0, not 1'),
        (['--init', 'he'], "model_options {}, not {'init': 'he'}"),
    ],
)
def test_5_resuming_with_other_settings_is_refused(run, data, capsys, extra, setting):
    before = snapshot_files(run)
    assert main.main(argv(run, data, '-e', '5', *extra)) == 1
    line = fail(capsys)
    assert f'this run was made with {setting}' in line and 'another -p' in line
    assert snapshot_files(run) == before


def test_5_resuming_with_a_bigger_data_set_is_refused(run, tmp_path, capsys):
    bigger = write_cifar10(tmp_path / 'bigger', n_train=200)
    assert main.main(argv(run, bigger, '-e', '5')) == 1
    assert 'train_images 100, not 200' in fail(capsys)


def test_6_start_epoch_with_weights_but_no_optimizer_state(run, tmp_path, data):
    out = tmp_path / 'continued'
    extra = ['-e', '3', '-s', '3', '-m', str(run / 'model.npz')]
    assert main.main(argv(out, data, *extra)) == 0
    assert epochs(out) == [3]


def test_6_start_epoch_without_weights_is_refused_by_the_parser(data, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main.main(argv(tmp_path / 'run', data, '-e', '3', '-s', '2'))
    assert exit_.value.code == 2
    assert '-s 2 continues from weights: give them with -m' in capsys.readouterr().err


@pytest.mark.parametrize('batch', ['101', '99999999999'])
def test_7_a_batch_larger_than_the_training_set_is_refused(tmp_path, data, capsys, batch):
    out = tmp_path / 'run'
    assert main.main(argv(out, data, '-e', '1', '-b', batch)) == 1
    assert f'{batch} is more than the training set (100 images)' in fail(capsys)
    assert not (out / 'run.json').exists()


@pytest.mark.parametrize(
    'where, message',
    [
        ('img', 'not writable'),  # /sys refuses even root
        ('save', 'not writable'),
        ('file', 'cannot create'),
    ],
)
def test_8_an_unwritable_folder_is_found_before_the_first_step(
    tmp_path, data, capsys, monkeypatch, where, message
):
    steps = []
    from trainer.updaters import AccumulatingUpdater

    monkeypatch.setattr(AccumulatingUpdater, 'update_core', lambda self: steps.append(1))
    out, img = tmp_path / 'run', tmp_path / 'img'
    (tmp_path / 'a_file').write_text('x')
    if where == 'img':
        img = Path('/sys/kernel')
    elif where == 'save':
        out = Path('/sys/kernel')
    else:
        img = tmp_path / 'a_file' / 'img'
    args = argv(out, data, '-e', '1')
    args[args.index('--img-dir') + 1] = str(img)
    assert main.main(args) == 1
    assert message in fail(capsys)
    assert steps == []


def test_9_the_seed_repeats_the_first_epoch_without_mpi(tmp_path, data):
    logs = []
    for name in ('a', 'b'):
        out = tmp_path / name
        assert main.main(argv(out, data, '-e', '1', '--seed', '7')) == 0
        logs.append(json.loads((out / 'log.json').read_text())[0])
    assert logs[0]['main/loss'] == logs[1]['main/loss']
    assert logs[0]['validation/main/loss'] == logs[1]['validation/main/loss']


def test_9_the_augmentation_follows_the_seed(tmp_path):
    from trainer.transforms import make_transforms

    image = np.arange(3 * 32 * 32, dtype=np.uint8).reshape(3, 32, 32)
    draws = []
    for seed in (3, 3, 4):
        train, _ = make_transforms('32', seed)
        draws.append(np.stack([train((image, 0))[0] for _ in range(8)]))
    np.testing.assert_array_equal(draws[0], draws[1])
    assert not np.array_equal(draws[0], draws[2])


def trained(out: Path) -> tuple[list[dict], dict]:
    """(the log without its timings, model.npz's weights) of a run folder."""
    timings = ('elapsed_time', 'train/images_per_sec', 'validation/images_per_sec')
    log = [
        {k: v for k, v in entry.items() if k not in timings}
        for entry in json.loads((out / 'log.json').read_text())
    ]
    with np.load(out / 'model.npz') as weights:
        return log, {k: weights[k] for k in weights.files if k != run_folder.RECORD_KEY}


def assert_bit_identical(a: Path, b: Path) -> None:
    (log_a, weights_a), (log_b, weights_b) = trained(a), trained(b)
    assert log_a == log_b
    assert weights_a.keys() == weights_b.keys()
    for key, value in weights_a.items():
        assert value.tobytes() == weights_b[key].tobytes(), key


def test_issue24_5_a_resumed_seeded_run_continues_bit_for_bit(tmp_path, data, monkeypatch):
    """Dropout (NumPy's generator), Python's generator, the shuffled order and position and
    the augmentation: epoch 3 after a resume is epoch 3 of an uninterrupted run."""
    whole, resumed = tmp_path / 'whole', tmp_path / 'resumed'
    assert main.main(argv(whole, data, '-e', '3', '--seed', '5')) == 0
    commit = RunFolder.commit

    def interrupted_after_2(self, arrays, epoch, keep):
        commit(self, arrays, epoch, keep)
        if epoch == 2:
            raise KeyboardInterrupt  # Ctrl-C once epoch 2 is written

    with monkeypatch.context() as patch:
        patch.setattr(RunFolder, 'commit', interrupted_after_2)
        assert main.main(argv(resumed, data, '-e', '3', '--seed', '5')) == 130
    assert epochs(resumed) == [1, 2]
    np.random.seed(123)  # whatever the new process's generators hold, the snapshot's win
    random.seed(123)
    assert main.main(argv(resumed, data, '-e', '3', '--seed', '5')) == 0
    assert_bit_identical(whole, resumed)


def test_issue24_5_the_number_of_workers_does_not_change_a_seeded_run(tmp_path, data):
    runs = []
    for workers in ('0', '2'):
        out = tmp_path / f'workers{workers}'
        extra = ['-e', '2', '--seed', '9', '--workers', workers]
        assert main.main([*argv(out, data), *extra]) == 0
        runs.append(out)
    assert_bit_identical(*runs)


def test_issue24_13_the_plots_go_inside_the_run_folder_by_default(tmp_path, data, monkeypatch):
    out = tmp_path / 'run'
    cwd = tmp_path / 'cwd'
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    args = argv(out, data, '-e', '1')
    at = args.index('--img-dir')
    del args[at : at + 2]
    assert main.main(args) == 0
    plots = ['accuracy.jpg', 'confusion.jpg', 'loss.jpg']
    assert sorted(p.name for p in (out / 'img').iterdir()) == plots
    assert list(cwd.iterdir()) == []  # not ./img


def test_issue24_5_each_image_is_augmented_from_seed_epoch_and_index():
    from trainer.transforms import EpochOrder, SeededTransformDataset, make_transforms

    images = np.arange(4 * 3 * 32 * 32, dtype=np.uint8).reshape(4, 3, 32, 32)
    dataset = list(zip(images, range(4), strict=True))
    train, _ = make_transforms('32', 0)
    seeded = SeededTransformDataset(dataset, train, seed=3)
    order = EpochOrder(4, seed=3)
    first = order(np.arange(4), 0)
    second = order(first, 0)
    assert sorted(first // 4) == [1] * 4 and sorted(second // 4) == [2] * 4
    assert sorted(first % 4) == sorted(second % 4) == [0, 1, 2, 3]
    np.testing.assert_array_equal(order(np.arange(4), 0), first)  # stateless
    # the same image and epoch: the same draws, in any order, in any process
    a = [seeded[i][0] for i in first]
    b = [seeded[i][0] for i in reversed(first)][::-1]
    assert all(x.tobytes() == y.tobytes() for x, y in zip(a, b, strict=True))
    again = SeededTransformDataset(dataset, train, seed=3)
    assert seeded[second[0]][0].tobytes() == again[second[0]][0].tobytes()
    assert seeded[first[0]][0].tobytes() != seeded[first[0] + 4][0].tobytes()  # epoch 2


@pytest.mark.parametrize('seed', ['4294967296', '-1'])
def test_11_an_out_of_range_seed_is_refused_by_the_parser(tmp_path, data, capsys, seed):
    with pytest.raises(SystemExit) as exit_:
        main.main(argv(tmp_path / 'run', data, '--seed', seed))
    assert exit_.value.code == 2
    assert 'argument --seed: must be in 0..4294967295' in capsys.readouterr().err


def test_11_disk_full_while_saving_is_one_line_and_the_run_resumes(run, data, capsys, monkeypatch):
    before = snapshot_files(run)

    save_arrays = run_folder.save_arrays

    def full(path, arrays):  # the disk fills up while epoch 5's snapshot is written
        if Path(path).name != 'snapshot_epoch_5':
            return save_arrays(path, arrays)
        tmp = run_folder.temporary_path(Path(path))
        tmp.write_bytes(b'partial')
        tmp.unlink()
        raise OSError(28, 'No space left on device')

    with monkeypatch.context() as patch:
        patch.setattr(run_folder, 'save_arrays', full)
        assert main.main(argv(run, data, '-e', '5')) == 1
    line = fail(capsys)
    assert 'snapshot_epoch_5: cannot write (no space left on device)' in line
    assert 'rerun the same command to resume' in line
    assert snapshot_files(run) == before and epochs(run) == [1, 2, 3, 4]
    assert main.main(argv(run, data, '-e', '5')) == 0
    assert epochs(run) == [1, 2, 3, 4, 5]


def test_11_temporaries_of_killed_runs_are_removed_at_start(run, data):
    dead = 999999  # no such process
    leftovers = [
        run / f'.snapshot_epoch_5.{dead}.tmp',
        run / f'.model.npz.{dead}.tmp',
        run / 'img' / f'.loss.jpg.{dead}.tmp',
    ]
    for path in leftovers:
        path.write_bytes(b'half')
    (run / 'tmpsnapshot_epoch_5abc').mkdir()  # Chainer's own writer, older versions
    assert main.main(argv(run, data, '-e', '4')) == 0
    assert not any(path.exists() for path in leftovers)
    assert not (run / 'tmpsnapshot_epoch_5abc').exists()


def test_12_a_second_run_on_the_same_folder_is_refused(run, data, capsys):
    with RunFolder(run).open():
        assert main.main(argv(run, data, '-e', '5')) == 1
    line = fail(capsys)
    assert f'in use by another run (pid {os.getpid()})' in line
    assert main.main(argv(run, data, '-e', '5')) == 0  # free again


def test_13_a_failing_augmentation_worker_is_one_error_not_a_hang(tmp_path):
    from chainer.datasets import TransformDataset

    from trainer.errors import DataError
    from trainer.iterators import GuardedMultiprocessIterator

    owner = os.getpid()

    def transform(x):
        if os.getpid() != owner:
            raise ValueError('negative seed')
        return x

    dataset = TransformDataset(np.arange(40, dtype=np.float32), transform)
    iterator = GuardedMultiprocessIterator(dataset, 10, n_processes=2)
    try:
        with pytest.raises(DataError, match='augmentation worker failed .*ValueError: negative'):
            for _ in range(4):
                iterator.next()
    finally:
        iterator.finalize()


def test_13_worker_seeds_are_never_negative(monkeypatch):
    from trainer.transforms import PadCropFlip

    transform = PadCropFlip(seed=5)
    transform._owner = 32000  # a worker whose pid wrapped below the owner's
    x = np.zeros((3, 32, 32), np.uint8)
    assert transform((x, 0))[0].shape == (3, 32, 32)


# --- loading weights ---------------------------------------------------------------------


@pytest.fixture
def small_npz(tmp_path):
    path = tmp_path / 'small.npz'
    run_folder.save_arrays(path, {'a': np.arange(1000, dtype=np.float32), 'b': np.ones(3)})
    return path


@pytest.mark.parametrize(
    'damage, message',
    [
        (lambda c: central_directory(c, 10, lambda v: 99), 'NotImplementedError: That compression'),
        (
            lambda c: central_directory(c, 10, lambda v: 14),
            'damaged or foreign npz file (',
        ),
        (lambda c: central_directory(c, 8, lambda v: v | 1), 'RuntimeError: File '),
        (lambda c: declaring(c, 'huge', (2**31,)), 'declares 8.0 GiB of arrays (huge: float32'),
        (lambda c: c[:40] + bytes(255 - b for b in c[40:200]) + c[200:], 'damaged or foreign'),
    ],
)
def test_issue24_3_every_way_an_npz_fails_to_read_is_one_line(small_npz, damage, message):
    small_npz.write_bytes(damage(small_npz.read_bytes()))
    with pytest.raises(ModelFileError, match=re.escape(message)) as error:
        run_folder.read_npz(small_npz)
    assert '\n' not in str(error.value) and str(error.value).startswith(f'{small_npz}: ')


@pytest.mark.parametrize(
    'raised, message',
    [
        (MemoryError(), 'an array too large for memory'),
        (zlib.error('Error -3 while decompressing data'), 'error: Error -3 while decompressing'),
        (lzma.LZMAError('Corrupt input data'), 'LZMAError: Corrupt input data'),
        (OSError(5, 'Input/output error'), 'Input/output error'),
    ],
)
def test_issue24_3_errors_while_reading_the_data_are_one_line(
    small_npz, monkeypatch, raised, message
):
    def fail(*args, **kwargs):
        raise raised

    monkeypatch.setattr(np.lib.format, 'read_array', fail)
    with pytest.raises(ModelFileError, match=re.escape(message)):
        run_folder.read_npz(small_npz)


def test_issue24_3_an_unreadable_file_is_permission_denied(small_npz, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(13, 'Permission denied')

    monkeypatch.setattr(run_folder, 'open', denied, raising=False)
    with pytest.raises(ModelFileError, match='cannot read \\(permission denied\\)$'):
        run_folder.read_npz(small_npz)


def test_issue24_7_a_huge_declared_array_is_refused_before_reading(run, tmp_path, monkeypatch):
    """2 GiB declared in a file of a few KB: refused from the header, nothing allocated."""
    weights = (run / 'model.npz').read_bytes()
    reads = []
    read_array = np.lib.format.read_array
    monkeypatch.setattr(
        np.lib.format, 'read_array', lambda *a, **k: reads.append(1) or read_array(*a, **k)
    )
    model = SqueezeNet(10)
    key = sorted(chainer.serializers.npz.serialize(model))[0]
    small = tmp_path / 'small.npz'
    small.write_bytes(declaring(b'', key, (2**29,)))
    assert small.stat().st_size < 10_000
    with pytest.raises(ModelFileError, match='declares 2.0 GiB'):
        load_weights(model, small)  # serve -m, predict -m, export -m: the same loader
    small.write_bytes(declaring(b'', key, (2**27,)))  # within the bound: the model's shapes
    with pytest.raises(ModelFileError, match='of another architecture'):
        load_weights(model, small)
    extra = tmp_path / 'extra.npz'
    extra.write_bytes(declaring(weights, 'extra', (2**27,)))
    with pytest.raises(ModelFileError, match='arrays missing, 1 unknown \\(e.g. extra\\)'):
        load_weights(model, extra)
    with pytest.raises(ModelFileError, match=r'declares 51\d.\d MiB .* than the 1.0 MiB'):
        run_folder.read_npz(extra, limit=2**20)
    assert reads == []


def test_issue24_10_a_full_disk_leaves_no_stray_zipfile_traceback(tmp_path, monkeypatch):
    import gc
    import sys

    unraisable = []
    monkeypatch.setattr(sys, 'unraisablehook', unraisable.append)
    write_array = np.lib.format.write_array
    calls = []

    def full(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, 'No space left on device')
        return write_array(*args, **kwargs)

    monkeypatch.setattr(np.lib.format, 'write_array', full)
    path = tmp_path / 'model.npz'
    with pytest.raises(OSError, match='No space left'):
        run_folder.save_arrays(path, {'a': np.zeros(10), 'b': np.zeros(10)})
    gc.collect()
    assert unraisable == []
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary


def test_issue24_14_a_copied_model_npz_describes_itself(run, tmp_path, capsys):
    from PIL import Image

    copied = tmp_path / 'elsewhere' / 'model.npz'
    copied.parent.mkdir()
    shutil.copy(run / 'model.npz', copied)  # without its run.json
    assert run_folder.model_settings(copied) == ('squeezenet', 'cifar10', '32')
    assert run_folder.model_options(copied) == {}
    record = run_folder.read_record_beside(copied)['settings']
    assert record['label_names'][:2] == ['airplane', 'automobile']
    assert record['normalization'] == {'per_image': True, 'eps': 10.0}
    image = tmp_path / 'x.png'
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (9, 9, 3), np.uint8)).save(image)
    assert main.main(['predict', '-m', str(run / 'model.npz'), '--json', str(image)]) == 0
    beside = capsys.readouterr().out
    assert main.main(['predict', '-m', str(copied), '--json', str(image)]) == 0
    assert capsys.readouterr().out == beside  # preset 32 from the file, not the default 122
    assert main.main(['predict', '-m', str(copied), '--preset', '122', str(image)]) == 1
    assert f'{copied} (its own record) says this model was trained with preset 32' in fail(capsys)


def test_issue24_1_every_snapshot_damaged_stops_and_overwrites_nothing(run, data, capsys):
    for _, path in RunFolder(run).snapshots():
        path.write_bytes(path.read_bytes()[:1000])
    views = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != '.lock'}
    for _ in range(2):  # and so again when rerun
        assert main.main(argv(run, data, '-e', '5')) == 1
        line = fail(capsys)
        assert line.startswith(f'error: {run}: holds trained epochs but no snapshot that loads')
        assert 'damaged: snapshot_epoch_2.damaged, snapshot_epoch_3.damaged, ' in line
        assert 'intact: model.npz, optimizer.npz, log.json (4 epochs logged)' in line
        assert f'train into a new -p with -s 5 -m {run / "model.npz"} -o ' in line
        assert 'Nothing was written' in line and 'move this folder away' in line
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != '.lock'}
    renamed = {name.removesuffix('.damaged'): content for name, content in after.items()}
    assert renamed == views  # set aside, and nothing else changed


def test_issue24_2_a_foreign_snapshot_in_a_new_folder_writes_nothing(run, tmp_path, data, capsys):
    new = tmp_path / 'new'
    new.mkdir()
    (new / 'snapshot_epoch_5').write_bytes(other_class_count(run / 'snapshot_epoch_4', 5))
    assert main.main(argv(new, data, '-e', '6')) == 1
    line = fail(capsys)
    assert 'snapshot_epoch_5: weights of a 100-class model, expected 10 classes' in line
    assert 'intact: nothing' in line
    assert sorted(p.name for p in new.iterdir() if p.is_file()) == [
        '.lock',
        'snapshot_epoch_5.damaged',
    ]


def test_load_weights_refuses_a_file_of_another_precision_before_loading(run, tmp_path):
    weights = {
        k: v.astype(np.float16)
        for k, v in np.load(run / 'model.npz').items()
        if k != run_folder.RECORD_KEY
    }
    np.savez(tmp_path / 'half.npz', **weights)
    model = SqueezeNet(10)
    before = model.conv1.W.array.copy()
    with pytest.raises(ModelFileError, match='float16, the model expects float32'):
        load_weights(model, tmp_path / 'half.npz')
    np.testing.assert_array_equal(model.conv1.W.array, before)


def test_predict_reads_arch_dataset_and_preset_from_run_json(run, tmp_path, capsys):
    from PIL import Image

    image = tmp_path / 'x.png'
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (9, 9, 3), np.uint8)).save(image)
    assert main.main(['predict', '-m', str(run / 'model.npz'), '--json', str(image)]) == 0
    implicit = capsys.readouterr().out
    assert (
        main.main(['predict', '-m', str(run / 'model.npz'), '--preset', '32', '--json', str(image)])
        == 0
    )
    assert capsys.readouterr().out == implicit
    assert main.main(['predict', '-m', str(run / 'model.npz'), '--preset', '122', str(image)]) == 1
    assert 'this model was trained with preset 32' in fail(capsys)


def test_a_run_folder_of_another_architecture_is_refused(run, data, capsys):
    import trainer

    trainer.register('tiny', lambda n_classes: chainer.links.Convolution2D(3, n_classes, 1))
    assert main.main(argv(run, data, '-e', '5', '--arch', 'tiny')) == 1
    assert 'this run was made with arch squeezenet, not tiny' in fail(capsys)


def test_record_of_another_tool_is_a_clear_error(tmp_path, data, capsys):
    out = tmp_path / 'run'
    out.mkdir()
    (out / 'run.json').write_text('[1, 2]')
    assert main.main(argv(out, data, '-e', '1')) == 1
    assert 'run.json: not a run record of this trainer' in fail(capsys)


def test_check_settings_names_the_setting():
    folder = RunFolder('somewhere')
    with pytest.raises(RunFolderError, match='made with batch 64, not 32'):
        folder.check_settings({'settings': {'batch': 64}}, {'batch': 32})
    folder.check_settings(None, {'batch': 32})  # a new run


def test_an_older_record_of_a_scripts_net_resumes_under_its_importable_path():
    folder = RunFolder('somewhere')
    old = {'settings': {'arch': '__main__:VGG', 'model_options': {}}}
    folder.check_settings(old, {'arch': 'examples.train_vgg:VGG', 'model_options': {}})
    folder.check_settings(old, {'arch': 'path/to/train_vgg.py:VGG', 'model_options': {}})
    with pytest.raises(RunFolderError, match='made with arch __main__:VGG, not squeezenet'):
        folder.check_settings(old, {'arch': 'squeezenet', 'model_options': {}})
    # a script's net by its module (run from the repository) and by its file (from elsewhere)
    root = Path(__file__).resolve().parents[1]
    by_module = {'settings': {'arch': 'examples.train_vgg:VGG'}}
    folder.check_settings(by_module, {'arch': f'{root / "examples" / "train_vgg.py"}:VGG'})
    with pytest.raises(RunFolderError, match='made with arch examples.train_vgg:VGG, not'):
        folder.check_settings(by_module, {'arch': 'squeeze_net:SqueezeNet'})


def test_a_record_that_cannot_be_rebuilt_asks_for_arch_which_overrides_it(tmp_path):
    settings = {'arch': '__main__:VGG', 'dataset': 'cifar10', 'preset': '32'}
    settings['model_options'] = {'dropout': 0.25}
    (tmp_path / 'run.json').write_text(json.dumps({'settings': settings}))
    weights = tmp_path / 'model.npz'
    with pytest.raises(ModelFileError) as error:
        run_folder.model_settings(weights)
    assert 'records arch __main__:VGG, which cannot be imported from here: give --arch' in str(
        error.value
    )
    given = run_folder.model_settings(weights, arch='examples.train_vgg:VGG')
    assert given == ('examples.train_vgg:VGG', 'cifar10', '32')
    assert run_folder.model_options(weights) == {'dropout': 0.25}
    assert run_folder.model_options(tmp_path / 'elsewhere' / 'model.npz') == {}
    with pytest.raises(ModelFileError, match='trained with preset 32'):
        run_folder.model_settings(weights, arch='examples.train_vgg:VGG', preset='122')


def test_10_what_a_run_writes_with_the_defaults_is_ignored_by_git():
    """-p ./ and --img-dir img from the repository root: none of it is or becomes tracked."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    if not (root / '.git').exists():
        pytest.skip('not a git checkout')
    written = [
        'run.json', 'log.json', 'log', 'args', '.lock', 'model.npz', 'optimizer.npz',
        'snapshot_epoch_1', 'snapshot_epoch_300', 'snapshot_epoch_3.damaged',
        '.model.npz.123.tmp', 'img/loss.jpg', 'img/accuracy.jpg', 'img/confusion.jpg',
        'tensorboard/events.out.tfevents.1',
    ]  # fmt: skip
    ignored = subprocess.run(
        ['git', 'check-ignore', '--no-index', *written], cwd=root, capture_output=True, text=True
    ).stdout.split()
    assert sorted(ignored) == sorted(written)
    tracked = subprocess.run(
        ['git', 'ls-files', 'img', *written], cwd=root, capture_output=True, text=True
    ).stdout.split()
    assert tracked == []
