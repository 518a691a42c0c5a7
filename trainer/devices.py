"""The device for ``-g``: NumPy for the CPU, CuPy for a GPU, checked with a clear error."""

import chainer

from trainer.errors import DeviceError


def get_device(gpu: int) -> chainer.backend.Device:
    """The Chainer device for ``-g``: NumPy for -1, else CuPy on that GPU (checked)."""
    if gpu < 0:
        return chainer.get_device('@numpy')
    from chainer.backends import cuda

    if not cuda.available:
        raise DeviceError(
            f'-g {gpu}: CuPy is not installed or finds no CUDA GPU; run `make install-gpu` '
            'on a machine with an NVIDIA GPU, or use -g -1 for the CPU'
        )
    try:
        count = cuda.cupy.cuda.runtime.getDeviceCount()
    except cuda.cupy.cuda.runtime.CUDARuntimeError as error:
        raise DeviceError(f'-g {gpu}: CuPy finds no usable CUDA GPU ({error}); use -g -1') from None
    if gpu >= count:
        raise DeviceError(f'-g {gpu}: no such GPU, this machine has {count} (ids 0..{count - 1})')
    return chainer.get_device(f'@cupy:{gpu}')
