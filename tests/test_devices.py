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
    with pytest.raises(DeviceError, match='CuPy is not installed; .* use -g -1'):
        get_device(0)


def test_cupy_without_a_driver(monkeypatch):
    fake_cupy(monkeypatch, count=None)
    with pytest.raises(DeviceError, match='-g 0: CuPy finds no usable CUDA GPU .*no CUDA-capable'):
        get_device(0)


def test_gpu_id_past_the_count(monkeypatch):
    fake_cupy(monkeypatch, count=2)
    with pytest.raises(DeviceError, match=r'-g 2: no such GPU, this machine has 2 \(ids 0..1\)'):
        get_device(2)


def test_tf32_where_the_gpu_has_it_unless_turned_off():
    from trainer.devices import gpu_settings

    assert gpu_settings(8) == {'CUPY_TF32': '1'}  # Ampere
    assert gpu_settings(9) == {'CUPY_TF32': '1'}  # Hopper
    assert gpu_settings(7) == {'CUPY_TF32': '0', 'NVIDIA_TF32_OVERRIDE': '0'}  # Volta
    assert gpu_settings(9, tf32=False) == {'CUPY_TF32': '0', 'NVIDIA_TF32_OVERRIDE': '0'}


def test_configure_does_nothing_on_the_cpu():
    from trainer.devices import configure, get_device

    assert configure(get_device(-1)) == {}


def test_cupy_that_cannot_load_cuda_names_the_real_cause(monkeypatch):
    import builtins

    from trainer.devices import why_no_cupy

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == 'cupy':
            raise ImportError('libcublas.so.12: cannot open shared object file')
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, '__import__', fake_import)
    message = why_no_cupy()
    assert 'cannot load the CUDA libraries (libcublas.so.12' in message
    assert 'needs the CUDA 12 runtime' in message and 'STACK=modern' in message


class FakeComm:
    def __init__(self, rank, intra_rank):
        self.rank, self.intra_rank = rank, intra_rank


def test_each_rank_takes_its_node_local_gpu_or_its_only_one():
    from trainer.distributed import device_id

    assert device_id(0, None) == 0 and device_id(-1, FakeComm(3, 1), visible=4) == -1
    assert device_id(0, FakeComm(5, 1), visible=4) == 1  # all GPUs visible: by local rank
    assert device_id(0, FakeComm(5, 1), visible=1) == 0  # CUDA_VISIBLE_DEVICES per rank
    with pytest.raises(DeviceError, match='sees only 2 GPU'):
        device_id(0, FakeComm(5, 3), visible=2)
