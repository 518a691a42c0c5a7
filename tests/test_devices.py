"""Device selection: every way -g can fail is one clear DeviceError."""

import types

import pytest
from chainer.backends import cuda

from trainer.devices import DeviceError, get_device


class FakeCudaError(Exception):
    pass


def fake_cupy(monkeypatch, count=None):
    def get_device_count():
        if count is None:
            raise FakeCudaError('cudaErrorNoDevice: no CUDA-capable device is detected')
        return count

    runtime = types.SimpleNamespace(getDeviceCount=get_device_count, CUDARuntimeError=FakeCudaError)
    monkeypatch.setattr(cuda, 'available', True)
    monkeypatch.setattr(
        cuda, 'cupy', types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime))
    )


def test_cpu():
    assert str(get_device(-1)) == '@numpy'


def test_no_cupy(monkeypatch):
    monkeypatch.setattr(cuda, 'available', False)
    with pytest.raises(DeviceError, match='CuPy is not installed .* use -g -1'):
        get_device(0)


def test_cupy_without_a_driver(monkeypatch):
    fake_cupy(monkeypatch, count=None)
    with pytest.raises(DeviceError, match='-g 0: CuPy finds no usable CUDA GPU .*no CUDA-capable'):
        get_device(0)


def test_gpu_id_past_the_count(monkeypatch):
    fake_cupy(monkeypatch, count=2)
    with pytest.raises(DeviceError, match=r'-g 2: no such GPU, this machine has 2 \(ids 0..1\)'):
        get_device(2)
