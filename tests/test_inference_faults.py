"""`main.py predict` and `export` under hostile inputs: crafted files, devices, FIFOs, odd paths.

Each case is one line for the file at fault; the other files of the batch are still
classified, and nothing blocks or reads without end.
"""

import io
import json
import os
import socket
import struct
import threading
import time
from pathlib import Path

import chainer
import numpy as np
import pytest
from PIL import Image

import inference
import main
from squeeze_net import SqueezeNet
from trainer.errors import ImageError, RunFolderError
from trainer.images import open_image, read_file
from trainer.run_folder import write_atomically

QUICK = 5.0  # seconds a refusal may take at most (it should take milliseconds)


@pytest.fixture(scope='module')
def model(tmp_path_factory):
    """A model.npz of SqueezeNet(10) with random weights (no run.json: preset given)."""
    path = tmp_path_factory.mktemp('model') / 'model.npz'
    chainer.serializers.save_npz(path, SqueezeNet(10))
    return path


@pytest.fixture
def good(tmp_path):
    path = tmp_path / 'good.png'
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(path)
    return path


def odd_tiff() -> bytes:
    """A 2x2 grey TIFF whose StripOffsets tag is typed ASCII: Pillow raises TypeError."""
    tags = [  # (tag, type, count, value): type 3 SHORT, 4 LONG, 2 ASCII
        (256, 3, 1, 2),
        (257, 3, 1, 2),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 2, 1, 0),  # StripOffsets as ASCII: the odd tag type
        (277, 3, 1, 1),
        (278, 3, 1, 2),
        (279, 4, 1, 4),
    ]
    ifd = struct.pack('<H', len(tags))
    for tag, kind, count, value in tags:
        packed = struct.pack('<HH', value, 0) if kind == 3 else struct.pack('<I', value)
        ifd += struct.pack('<HHI', tag, kind, count) + packed
    return b'II*\x00' + struct.pack('<I', 8) + ifd + struct.pack('<I', 0) + b'\x80' * 4


def predict(capsys, *argv):
    status = main.main(['predict', *map(str, argv)])
    out, err = capsys.readouterr()
    return status, out.splitlines(), err.splitlines()


def test_the_crafted_tiff_raises_something_other_than_image_error_in_pillow():
    """The fault is real: Pillow itself raises TypeError on this file."""
    with pytest.raises(TypeError):
        Image.open(io.BytesIO(odd_tiff())).load()


def test_a_decoder_failure_is_that_files_line_and_the_rest_are_classified(
    model, good, tmp_path, capsys
):
    bad = tmp_path / 'odd.tif'
    bad.write_bytes(odd_tiff())
    status, out, err = predict(capsys, '-m', model, '--preset', '32', bad, good)
    assert status == 1
    assert len(err) == 1 and err[0].startswith(f'error: {bad}: damaged image (TypeError: ')
    assert len(out) == 1 and out[0].startswith(f'{good}: ')


def test_any_exception_while_decoding_one_file_is_its_error(model, good, tmp_path, monkeypatch):
    """Fault injection: whatever to_cifar raises for one file stays that file's Result."""
    predictor = inference.load_predictor(model, preset='32')
    other = tmp_path / 'other.png'
    other.write_bytes(good.read_bytes())
    real = inference.predictor.to_cifar

    def flaky(image):
        if image.size == (30, 20) and not flaky.done:
            flaky.done = True
            raise KeyError('injected')
        return real(image)

    flaky.done = False
    monkeypatch.setattr(inference.predictor, 'to_cifar', flaky)
    first, second = predictor.classify_files([good, other])
    assert first.error == "damaged image (KeyError: 'injected')" and first.predictions is None
    assert second.error is None and len(second.predictions) == 3


def _refused_quickly(path) -> str:
    """The ImageError of reading ``path``, which must come within QUICK seconds."""
    outcome = {}

    def read():
        try:
            open_image(path)
        except ImageError as error:
            outcome['error'] = str(error)

    thread = threading.Thread(target=read, daemon=True)
    start = time.monotonic()
    thread.start()
    thread.join(QUICK)
    if thread.is_alive() and os.path.exists(path):  # unblock a FIFO reader, then fail
        with open(os.open(path, os.O_WRONLY | os.O_NONBLOCK), 'wb'):
            pass
    assert not thread.is_alive(), f'reading {path} did not return within {QUICK} s'
    assert time.monotonic() - start < QUICK
    return outcome['error']


def test_a_device_is_refused_before_reading():
    assert _refused_quickly('/dev/zero') == 'is a character device, not an image file'


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / 'pipe.png'
    os.mkfifo(fifo)
    assert _refused_quickly(fifo) == 'is a FIFO, not an image file'


def test_a_directory_is_refused(tmp_path):
    with pytest.raises(ImageError, match='^is a directory, not an image file$'):
        read_file(tmp_path)


def test_predict_refuses_devices_and_fifos_and_classifies_the_rest(model, good, tmp_path, capsys):
    fifo = tmp_path / 'pipe'
    os.mkfifo(fifo)
    start = time.monotonic()
    status, out, err = predict(capsys, '-m', model, '--preset', '32', '/dev/zero', fifo, good)
    assert time.monotonic() - start < 60  # the model's load included; no endless read
    assert status == 1
    assert err == [
        'error: /dev/zero: is a character device, not an image file',
        f'error: {fifo}: is a FIFO, not an image file',
    ]
    assert len(out) == 1 and out[0].startswith(f'{good}: ')


def test_json_output_keeps_the_order_and_the_errors(model, good, capsys):
    argv = ['predict', '-m', str(model), '--preset', '32', '--json', '/dev/zero', str(good)]
    status = main.main(argv)
    out, _ = capsys.readouterr()
    assert status == 1
    items = json.loads(out)
    assert [item['file'] for item in items] == ['/dev/zero', str(good)]
    assert items[0]['error'] == 'is a character device, not an image file'
    assert 'predictions' in items[1]


def _special_targets(tmp_path):
    """Existing paths that are not regular files; the device is a link to /dev/full, so a
    broken check replaces the link, never the device itself."""
    fifo = tmp_path / 'pipe'
    os.mkfifo(fifo)
    device = tmp_path / 'full'
    device.symlink_to('/dev/full')
    folder = tmp_path / 'folder'
    folder.mkdir()
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / 'sock'))
    return server, {
        fifo: 'a FIFO',
        device: 'a character device',
        folder: 'a folder',
        tmp_path / 'sock': 'a socket',
    }


def test_write_atomically_refuses_what_is_not_a_regular_file(tmp_path):
    server, targets = _special_targets(tmp_path)
    try:
        for path, kind in targets.items():
            with pytest.raises(RunFolderError) as error:
                write_atomically(path, lambda tmp: Path(tmp).write_bytes(b'x' * 1000))
            assert str(error.value) == (
                f'{path}: is {kind}, not a regular file; refusing to write over it'
            )
        assert (tmp_path / 'pipe').is_fifo() and (tmp_path / 'full').is_char_device()
        assert (tmp_path / 'full').is_symlink() and (tmp_path / 'sock').is_socket()
        assert sorted(p.name for p in tmp_path.iterdir()) == ['folder', 'full', 'pipe', 'sock']
    finally:
        server.close()


def test_write_atomically_still_replaces_a_regular_file(tmp_path):
    path = tmp_path / 'model.onnx'
    path.write_bytes(b'old')
    write_atomically(path, lambda tmp: Path(tmp).write_bytes(b'new'))
    assert path.read_bytes() == b'new'


def _exporter_missing() -> str | None:
    for name in ('onnx', 'onnxruntime', 'onnx_chainer'):
        try:
            __import__(name)
        except ImportError:
            return f'needs {name} (make install-extras)'
    return None


needs_exporter = pytest.mark.skipif(
    _exporter_missing() is not None, reason=_exporter_missing() or ''
)


@needs_exporter
def test_export_refuses_an_empty_output_and_special_files_with_one_line(model, tmp_path, capsys):
    server, targets = _special_targets(tmp_path)
    try:
        assert main.main(['export', '-m', str(model), '--preset', '32', '-o', '']) == 1
        assert capsys.readouterr().err == (
            'error: the output path is empty: name the ONNX file to write\n'
        )
        for path, kind in targets.items():
            assert main.main(['export', '-m', str(model), '--preset', '32', '-o', str(path)]) == 1
            assert capsys.readouterr().err == (
                f'error: {path}: is {kind}, not a regular file; refusing to write over it\n'
            )
        assert (tmp_path / 'pipe').is_fifo() and (tmp_path / 'full').is_symlink()
    finally:
        server.close()


@needs_exporter
def test_an_exported_file_predicts_without_backend(model, good, tmp_path, capsys):
    onnx = tmp_path / 'model.onnx'
    assert main.main(['export', '-m', str(model), '--preset', '32', '-o', str(onnx)]) == 0
    capsys.readouterr()
    status, out, err = predict(capsys, '-m', onnx, good)
    assert status == 0 and err == []
    chainer_status, chainer_out, _ = predict(capsys, '-m', model, '--preset', '32', good)
    assert chainer_status == 0
    labels = [part.rsplit(' ', 1)[0] for part in out[0].split(': ', 1)[1].split(', ')]
    expected = [part.rsplit(' ', 1)[0] for part in chainer_out[0].split(': ', 1)[1].split(', ')]
    assert labels == expected
