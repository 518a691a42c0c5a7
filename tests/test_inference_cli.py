"""The command lines of predict, serve and export: their help, and the backend a file needs."""

import pytest

import inference
import main
import serving
from inference.loading import backend_for
from trainer.errors import ModelFileError


@pytest.mark.parametrize(
    'parser',
    [inference.build_predict_parser, serving.build_parser, inference.build_export_parser],
    ids=['predict', 'serve', 'export'],
)
def test_help_says_each_default_once(parser):
    text = parser('main.py x').format_help()
    assert '(default: None)' not in text and '(default: False)' not in text
    flat = ' '.join(text.split())
    assert "(default: the run's, else 122)" in flat
    assert 'else 122) (default' not in flat and 'else cifar10) (default' not in flat


def test_help_keeps_the_defaults_it_does_not_say():
    flat = ' '.join(serving.build_parser('main.py serve').format_help().split())
    assert '(default: 8000)' in flat and '(default: 127.0.0.1)' in flat
    flat = ' '.join(inference.build_predict_parser('p').format_help().split())
    assert 'classes to show per image (default: 3)' in flat


def test_main_help_shows_the_examples_one_per_line(capsys):
    with pytest.raises(SystemExit):
        main.main(['--help'])
    lines = [line.strip() for line in capsys.readouterr().out.splitlines()]
    for command in ('predict', 'serve', 'export'):
        assert any(line.startswith(f'python main.py {command} -m RUN/model.npz') for line in lines)
    assert 'python main.py -e 300 -b 64 -g 0 -lr 0.1' in lines


def test_the_backend_follows_the_file():
    assert backend_for('run/model.onnx') == 'onnx' and backend_for('M.ONNX') == 'onnx'
    assert backend_for('run/model.npz') == 'chainer'
    assert backend_for('run/snapshot_epoch_3') == 'chainer'


def test_an_onnx_file_without_backend_goes_to_onnx_runtime(tmp_path, monkeypatch, capsys):
    """Without --backend, a .onnx file is loaded by the ONNX backend, not as an npz."""
    calls = []

    def fake(path, arch, dataset, preset):
        calls.append(str(path))
        raise ModelFileError(f'{path}: reached the ONNX backend')

    monkeypatch.setattr(inference.loading, 'load_onnx_predictor', fake)
    path = tmp_path / 'model.onnx'
    path.write_bytes(b'not really')
    assert main.main(['predict', '-m', str(path), 'cat.png']) == 1
    assert calls == [str(path)]
    assert capsys.readouterr().err == f'error: {path}: reached the ONNX backend\n'


def test_an_onnx_file_with_backend_chainer_is_one_line(tmp_path, capsys):
    path = tmp_path / 'model.onnx'
    path.write_bytes(b'not really')
    assert main.main(['predict', '-m', str(path), '--backend', 'chainer', 'cat.png']) == 1
    assert capsys.readouterr().err == (
        f'error: {path}: an ONNX file runs with --backend onnx (the default for .onnx files)\n'
    )
