"""main.py with the tools of issue 18: export, --backend onnx, --tensorboard, early stopping,
the ChainerUI files. Each extra's test skips with the reason where the extra is missing."""

import importlib.util
import json
import os
from pathlib import Path

import pytest
from conftest import write_cifar10
from PIL import Image

import main


def missing(*modules: str) -> str | None:
    absent = [m for m in modules if importlib.util.find_spec(m) is None]
    return f'needs {", ".join(absent)} (make install-extras)' if absent else None


def argv(out: Path, data: Path, *extra: str) -> list[str]:
    return [
        '-p', str(out), '-b', '20', '--preset', '32', '--workers', '0', '--seed', '0',
        '--img-dir', str(out / 'img'), '--data', str(data), '--no-progress', *extra,
    ]  # fmt: skip


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return write_cifar10(tmp_path_factory.mktemp('data'), learnable=True)


@pytest.fixture(scope='module')
def run(tmp_path_factory, data):
    out = tmp_path_factory.mktemp('run') / 'run'
    assert main.main(argv(out, data, '-e', '1')) == 0
    return out


def test_the_run_folder_has_chainerui_s_log_and_args(run):
    assert os.readlink(run / 'log') == 'log.json'
    assert json.loads((run / 'log').read_text()) == json.loads((run / 'log.json').read_text())
    args = json.loads((run / 'args').read_text())
    assert (args['epoch'], args['batch'], args['preset']) == (1, 20, '32')


@pytest.mark.skipif(
    bool(missing('onnx', 'onnxruntime', 'onnx_chainer')),
    reason=str(missing('onnx', 'onnxruntime', 'onnx_chainer')),
)
def test_export_then_predict_with_either_backend(run, tmp_path, capsys):
    onnx = tmp_path / 'model.onnx'
    assert main.main(['export', '-m', str(run / 'model.npz'), '-o', str(onnx)]) == 0
    line = capsys.readouterr().out
    assert line.startswith(f'{onnx}: squeezenet, 10 classes (cifar10), preset 32;')
    assert 'ONNX Runtime matches Chainer within' in line
    image = tmp_path / 'x.png'
    Image.new('RGB', (20, 20), (30, 200, 40)).save(image)
    answers = []
    for model, backend in ((run / 'model.npz', 'chainer'), (onnx, 'onnx')):
        command = ['predict', '-m', str(model), '--backend', backend, '--json', '--top', '10']
        assert main.main([*command, str(image)]) == 0
        answers.append(json.loads(capsys.readouterr().out)[0]['predictions'])
    assert [p['label'] for p in answers[0]][:3] == [p['label'] for p in answers[1]][:3]
    for a, b in zip(answers[0], answers[1], strict=True):
        assert a['probability'] == pytest.approx(b['probability'], abs=1e-4)


def test_onnx_backend_refuses_a_gpu(run, tmp_path, capsys):
    image = tmp_path / 'x.png'
    Image.new('RGB', (8, 8)).save(image)
    command = ['predict', '-m', str(tmp_path / 'model.onnx'), '--backend', 'onnx', '-g', '0']
    assert main.main([*command, str(image)]) == 1
    assert capsys.readouterr().err == 'error: --backend onnx runs on the CPU: leave -g out\n'


@pytest.mark.skipif(bool(missing('tensorboardX')), reason=str(missing('tensorboardX')))
def test_tensorboard_writes_the_logged_scalars(tmp_path, data):
    out = tmp_path / 'run'
    assert main.main(argv(out, data, '-e', '2', '--tensorboard')) == 0
    events = list((out / 'tensorboard').iterdir())
    assert events and all(p.name.startswith('events.out.tfevents') for p in events)


def test_early_stopping_stops_and_stays_stopped(tmp_path, data, caplog):
    caplog.set_level('INFO')
    out = tmp_path / 'run'
    # the training loss of a 0-lr-ish run cannot improve: it stops after 1 + patience epochs
    extra = ('-e', '10', '-lr', '1e-12', '--early-stopping', 'main/loss', '--patience', '1')
    assert main.main(argv(out, data, *extra)) == 0
    finished = [e['epoch'] for e in json.loads((out / 'log.json').read_text())]
    assert 2 <= len(finished) < 10
    assert main.main(argv(out, data, *extra)) == 0
    assert 'stopped early' in caplog.text
    assert [e['epoch'] for e in json.loads((out / 'log.json').read_text())] == finished


def test_early_stopping_key_is_checked_by_the_parser(tmp_path, data, capsys):
    with pytest.raises(SystemExit) as exit_:
        main.main(argv(tmp_path / 'run', data, '--early-stopping', 'validation/main/nonsense'))
    assert exit_.value.code == 2
    assert 'argument --early-stopping' in capsys.readouterr().err
