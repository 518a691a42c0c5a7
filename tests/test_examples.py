"""examples/train_vgg.py: another architecture trained through trainer's public API."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import chainer
import numpy as np
import pytest
from conftest import write_cifar10

SCRIPT = Path(__file__).resolve().parents[1] / 'examples' / 'train_vgg.py'


@pytest.fixture(scope='module')
def train_vgg():
    spec = importlib.util.spec_from_file_location('train_vgg', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(('n_classes', 'size'), [(10, 32), (100, 32), (10, 128)])
def test_vgg_output_shape(train_vgg, n_classes, size):
    model = train_vgg.VGG(n_classes, channels=(8, 16, 32))
    x = np.zeros((2, 3, size, size), dtype=np.float32)
    with chainer.using_config('train', False):
        assert model(x).shape == (2, n_classes)


def test_vgg_layers(train_vgg):
    model = train_vgg.VGG(10)
    assert [conv.conv.W.shape[:2] for conv in model.convs] == [
        (64, 3),
        (64, 64),
        (128, 64),
        (128, 128),
        (256, 128),
        (256, 256),
    ]
    assert model.head.W.shape == (10, 256)


def test_one_epoch_through_the_public_api(train_vgg, tmp_path):
    archive = write_cifar10(tmp_path / 'data')
    out = tmp_path / 'run'
    argv = ['-e', '1', '-b', '20', '--workers', '0', '-p', str(out)]
    log = train_vgg.main([*argv, '--img-dir', str(tmp_path / 'img'), '--data', str(archive)])
    assert [entry['epoch'] for entry in log] == [1]
    accuracy = log[0]['validation/main/accuracy']
    assert isinstance(accuracy, float) and 0 <= accuracy <= 1
    assert json.loads((out / 'log.json').read_text()) == json.loads(json.dumps(log))
    assert (out / 'model.npz').is_file() and (out / 'snapshot_epoch_1').is_file()


def test_script_runs_from_elsewhere(tmp_path):
    """The script finds the trainer package from any working directory."""
    done = subprocess.run(
        [sys.executable, str(SCRIPT), '--help'], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert 'VGG' in done.stdout and '--preset {122,32}' in done.stdout


def test_a_squeezenet_model_is_one_line_not_a_traceback(tmp_path, train_vgg, capsys):
    from squeeze_net import SqueezeNet

    chainer.serializers.save_npz(tmp_path / 'squeeze.npz', SqueezeNet(10))
    archive = write_cifar10(tmp_path / 'data')
    argv = ['-e', '2', '-s', '2', '-m', str(tmp_path / 'squeeze.npz'), '--workers', '0']
    with pytest.raises(SystemExit) as exit_:
        train_vgg.main([*argv, '-p', str(tmp_path / 'run'), '--data', str(archive)])
    assert str(exit_.value.code).startswith('error: ')
    assert 'weights of another architecture' in str(exit_.value.code)


def test_main_trains_predicts_and_serves_the_vgg_by_import_path(tmp_path, capsys):
    """--arch package.module:Factory: a user's own net through main.py, unedited."""
    from PIL import Image

    import main

    archive = write_cifar10(tmp_path / 'data')
    out = tmp_path / 'run'
    argv = ['--arch', 'examples.train_vgg:VGG', '-e', '1', '-b', '20', '--preset', '32']
    argv += ['--workers', '0', '-p', str(out), '--img-dir', str(out / 'img')]
    assert main.main([*argv, '--data', str(archive)]) == 0
    record = json.loads((out / 'run.json').read_text())
    assert record['settings']['arch'] == 'examples.train_vgg:VGG'
    Image.new('RGB', (20, 20), (200, 10, 10)).save(tmp_path / 'red.png')
    capsys.readouterr()
    assert main.main(['predict', '-m', str(out / 'model.npz'), str(tmp_path / 'red.png')]) == 0
    assert capsys.readouterr().out.startswith(f'{tmp_path / "red.png"}: ')
