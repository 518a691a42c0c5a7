"""End to end: main.py on tiny CIFAR-format data, on the CPU."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY_NET, write_cifar10
from PIL import Image

import main
from trainer.schedules import StepSchedule

ROOT = Path(__file__).resolve().parents[1]
KEYS = {
    'epoch',
    'iteration',
    'elapsed_time',
    'lr',
    'main/loss',
    'main/accuracy',
    'validation/main/loss',
    'validation/main/accuracy',
    'validation/main/accuracy/airplane',
    'validation/main/accuracy/truck',
    'validation/confusion',
    'validation/images_per_sec',
    'train/images_per_sec',
}


SAVED = ('snapshot_epoch_1', 'model.npz', 'optimizer.npz', 'log.json')


def argv(out: Path, data: Path, *extra: str) -> list[str]:
    return [
        '-p', str(out), '-b', '20', '--preset', '32', '--workers', '0', '--seed', '0',
        '--img-dir', str(out / 'img'), '--data', str(data), *extra,
    ]  # fmt: skip


def read_log(out: Path) -> list[dict]:
    return json.loads((out / 'log.json').read_text())


def test_two_epochs_then_resume_to_three(tmp_path, cifar10_archive):
    out = tmp_path / 'run'
    assert main.main(argv(out, cifar10_archive, '-e', '2')) == 0
    log = read_log(out)
    assert [entry['epoch'] for entry in log] == [1, 2]
    assert KEYS <= set(log[0])
    assert sum(map(sum, log[0]['validation/confusion'])) == 40
    for name in ('loss.jpg', 'accuracy.jpg'):
        with Image.open(out / 'img' / name) as image:
            assert image.format == 'JPEG' and image.size[0] > 100
    assert {'snapshot_epoch_1', 'snapshot_epoch_2', 'model.npz', 'optimizer.npz'} <= set(
        os.listdir(out)
    )
    assert main.main(argv(out, cifar10_archive, '-e', '3')) == 0
    resumed = read_log(out)
    assert [entry['epoch'] for entry in resumed] == [1, 2, 3]
    assert resumed[:2] == log  # the finished epochs are kept as they were
    assert resumed[2]['iteration'] == 15


def test_learns_a_learnable_set_with_workers_and_divided_batches(tmp_path):
    data = write_cifar10(tmp_path / 'data', n_train=300, n_test=100, learnable=True)
    out = tmp_path / 'run'
    extra = ('-e', '4', '-lr', '0.05', '-trb', '2', '-teb', '2', '--workers', '2')
    assert main.main(argv(out, data, *extra)) == 0
    log = read_log(out)
    # chance is 0.1; the best epoch, as a 4-epoch run on 300 images can wobble at the end
    assert max(entry['validation/main/accuracy'] for entry in log) > 0.4
    assert [entry['lr'] for entry in log] == pytest.approx([0.05, 0.05, 0.005, 0.0005])


def test_continue_from_model_optimizer_and_log(tmp_path, cifar10_archive):
    first = tmp_path / 'first'
    assert main.main(argv(first, cifar10_archive, '-e', '2')) == 0
    second = tmp_path / 'second'
    extra = ['-e', '4', '-s', '3', '-m', str(first / 'model.npz')]
    extra += ['-o', str(first / 'optimizer.npz'), '-l', str(first / 'log.json')]
    assert main.main(argv(second, cifar10_archive, *extra)) == 0
    log = read_log(second)
    assert [entry['epoch'] for entry in log] == [1, 2, 3, 4]
    assert log[:2] == read_log(first)
    # epochs 1-2 ran under -e 2 (milestones 1, 2); 3-4 under -e 4 (milestones 2, 3)
    assert [entry['lr'] for entry in log] == pytest.approx([0.1, 0.01, 0.01, 0.001])


def test_killed_run_restarts_without_losing_an_epoch(tmp_path, cifar10_archive):
    out = tmp_path / 'run'
    command = [sys.executable, str(ROOT / 'main.py'), *argv(out, cifar10_archive, '-e', '5')]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out / 'snapshot_epoch_2').exists() and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)  # somewhere in epoch 3: mid-step, mid-evaluation or mid-write
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = read_log(out)  # written after its snapshot: epoch 1 at least, maybe 2 or 3
    assert len(before) >= 1
    subprocess.run(command, cwd=tmp_path, check=True, stdout=subprocess.DEVNULL, timeout=300)
    after = read_log(out)
    assert [entry['epoch'] for entry in after] == [1, 2, 3, 4, 5]
    assert after[: len(before)] == before  # every logged epoch had its snapshot: kept as is
    assert [name for name in os.listdir(out) if name.startswith(('tmp', '.'))] == ['.lock']


def test_non_finite_loss_stops_and_keeps_the_last_snapshot(
    tmp_path, cifar10_archive, capsys, monkeypatch
):
    out = tmp_path / 'run'
    assert main.main(argv(out, cifar10_archive, '-e', '1')) == 0
    saved = {name: (out / name).read_bytes() for name in SAVED}
    # epoch 2 diverges: the schedule hook sets an absurd rate on every step
    monkeypatch.setattr(
        StepSchedule, '__call__', lambda self, optimizer: setattr(optimizer, 'lr', 1e30)
    )
    assert main.main(argv(out, cifar10_archive, '-e', '3')) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith('error: main/loss became NaN or infinite')
    assert 'lower --lr' in err[0]
    assert {name: (out / name).read_bytes() for name in SAVED} == saved
    assert not (out / 'snapshot_epoch_2').exists()
    assert [entry['epoch'] for entry in read_log(out)] == [1]


@pytest.mark.parametrize(
    'make, message',
    [
        (lambda d: d / 'missing.tar.gz', 'missing.tar.gz: no such file or directory'),
        (lambda d: _write(d / 'junk.tar.gz', b'junk' * 10), 'not a readable CIFAR archive'),
        (lambda d: _write(d / 'empty', b''), 'not a readable CIFAR archive'),
    ],
)
def test_bad_data_gives_one_line_and_exit_1(tmp_path, make, message):
    data = make(tmp_path)
    result = _run_main(tmp_path, argv(tmp_path / 'run', data, '-e', '1'))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: ') and message in lines[0]


@pytest.mark.skipif(importlib.util.find_spec('cupy') is not None, reason='CuPy is installed here')
def test_gpu_without_cupy_says_what_to_do(tmp_path, cifar10_archive):
    result = _run_main(tmp_path, argv(tmp_path / 'run', cifar10_archive, '-e', '1', '-g', '0'))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        'error: -g 0: CuPy is not installed; run `make install-gpu` on a machine with an '
        'NVIDIA GPU, or use -g -1 for the CPU'
    )


def test_parser_errors_exit_2(tmp_path):
    result = _run_main(tmp_path, ['-b', '64', '-trb', '3'])
    assert result.returncode == 2
    assert 'not divisible by -trb/--train_batch_divide 3' in result.stderr


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _run_main(cwd: Path, args: list[str]) -> subprocess.CompletedProcess:
    command = [sys.executable, str(ROOT / 'main.py'), *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_recipe_preset_runs_at_122_and_128(tmp_path, cifar10_archive):
    out = tmp_path / 'run'
    args = argv(out, cifar10_archive, '-e', '1', '--workers', '2')
    args[args.index('--preset') + 1] = '122'
    assert main.main(args) == 0
    (entry,) = read_log(out)
    assert sum(map(sum, entry['validation/confusion'])) == 40


def test_files_to_start_from_of_the_wrong_kind(tmp_path, cifar10_archive):
    first = tmp_path / 'first'
    assert main.main(argv(first, cifar10_archive, '-e', '1')) == 0
    junk = _write(tmp_path / 'log.json', b'{not json')
    cases = [
        (['-m', str(first / 'optimizer.npz')], 'an optimizer state (optimizer.npz), not model'),
        (['-o', str(first / 'model.npz')], 'not an optimizer state of this model'),
        (['-s', '2', '-m', str(first / 'model.npz'), '-l', str(junk)], 'not a log.json'),
    ]
    for extra, message in cases:
        result = _run_main(tmp_path, argv(tmp_path / 'second', cifar10_archive, '-e', '2', *extra))
        assert result.returncode == 1, extra
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith('error: ') and message in lines[0]


def test_build_trainer_makes_its_save_folder(tmp_path, cifar10_archive):
    """The public assembly alone (without train()) writes into a folder it creates."""
    import trainer
    from squeeze_net import SqueezeNet

    out = tmp_path / 'new' / 'run'
    options = trainer.TrainOptions(
        save_path=str(out), epoch=1, batch=20, preset='32', workers=0, img_dir=str(out / 'img')
    )
    built = trainer.build_trainer(SqueezeNet(10), options, trainer.load_cifar(path=cifar10_archive))
    built.run(show_loop_exception_msg=False)
    assert (out / 'snapshot_epoch_1').is_file() and (out / 'log.json').is_file()


def test_model_options_are_recorded_and_predict_rebuilds_with_them(tmp_path, capsys):
    (tmp_path / 'nets.py').write_text(TINY_NET)
    data = write_cifar10(tmp_path / 'data')
    out = tmp_path / 'run'
    arch = f'{tmp_path / "nets.py"}:Net'
    assert main.main(argv(out, data, '-e', '1', '--arch', arch, '--width', '4')) == 0
    settings = json.loads((out / 'run.json').read_text())['settings']
    assert (settings['arch'], settings['model_options']) == (arch, {'width': 4})
    Image.new('RGB', (20, 20), (200, 10, 10)).save(tmp_path / 'red.png')
    capsys.readouterr()
    # width 4 changes the weights' shapes: the default width 8 would not load them
    assert main.main(['predict', '-m', str(out / 'model.npz'), str(tmp_path / 'red.png')]) == 0
    assert capsys.readouterr().out.startswith(f'{tmp_path / "red.png"}: ')
    # resuming rebuilds the same model: another width is refused, the same one resumes
    assert main.main(argv(out, data, '-e', '2', '--arch', arch, '--width', '8')) == 1
    assert "model_options {'width': 4}, not {'width': 8}" in capsys.readouterr().err
    assert main.main(argv(out, data, '-e', '2', '--arch', arch, '--width', '4')) == 0


def run_python(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_a_users_module_in_the_current_directory_needs_no_pythonpath(tmp_path):
    (tmp_path / 'mynets').mkdir()
    (tmp_path / 'mynets' / 'tiny.py').write_text(TINY_NET)
    data = write_cifar10(tmp_path / 'data')
    train = [str(ROOT / 'main.py'), '--arch', 'mynets.tiny:Net', '--width', '4', '-e', '1']
    done = run_python(tmp_path, *train, *argv(Path('run'), data, '--no-progress'))
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / 'run' / 'run.json').read_text())
    assert record['settings']['arch'] == 'mynets.tiny:Net'
    assert record['sessions'][0]['argv'][1:3] == ['--arch', 'mynets.tiny:Net']
    Image.new('RGB', (20, 20), (10, 200, 10)).save(tmp_path / 'green.png')
    done = run_python(
        tmp_path, str(ROOT / 'main.py'), 'predict', '-m', 'run/model.npz', 'green.png'
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('green.png: ')


MAIN_BLOCK = """
if __name__ == '__main__':  # the net above is defined in this script, run as __main__
    import sys

    import trainer
    from trainer import registry

    trainer.register('tiny', Net)
    parser = trainer.build_parser()
    parser.set_defaults(arch='tiny')
    options = trainer.parse_args(sys.argv[1:], parser)
    model = registry.build(options.arch, 10, **options.model_options)
    trainer.train(model, options)
"""


def test_a_net_defined_in_the_training_script_is_recorded_importably(tmp_path):
    (tmp_path / 'train_tiny.py').write_text('import trainer\n' + TINY_NET + MAIN_BLOCK)
    data = write_cifar10(tmp_path / 'data')
    done = run_python(
        tmp_path, 'train_tiny.py', '--width', '4', '-e', '1', *argv(Path('run'), data)
    )
    assert done.returncode == 0, done.stderr
    settings = json.loads((tmp_path / 'run' / 'run.json').read_text())['settings']
    assert (settings['arch'], settings['model_options']) == ('train_tiny:Net', {'width': 4})
    Image.new('RGB', (20, 20), (10, 10, 200)).save(tmp_path / 'blue.png')
    done = run_python(tmp_path, str(ROOT / 'main.py'), 'predict', '-m', 'run/model.npz', 'blue.png')
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('blue.png: ')
