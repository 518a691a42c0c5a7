"""The device for ``-g``: NumPy for the CPU, CuPy for a GPU, checked and set up.

A GPU that cannot be used is one DeviceError line that says why (CuPy missing, CuPy
unable to load the CUDA libraries, no driver or no GPU, no such id). A usable GPU gets the
project's GPU choices, all explicit (``gpu_settings``): TF32 math on GPUs that have it
(Ampere and later; ``--no-tf32`` turns it off), cuDNN autotuning on, a cuDNN workspace
large enough for its fast algorithms.
"""

import os

import chainer

from trainer.errors import DeviceError

WORKSPACE_BYTES = 512 * 2**20  # cuDNN's scratch space (Chainer's default is 8 MiB)
TF32_CAPABILITY = 8  # compute capability major version from which GPUs have TF32


def get_device(gpu: int) -> chainer.backend.Device:
    """The Chainer device for ``-g``: NumPy for -1, else CuPy on that GPU (checked)."""
    if gpu < 0:
        return chainer.get_device('@numpy')
    from chainer.backends import cuda

    if not cuda.available:
        raise DeviceError(f'-g {gpu}: {why_no_cupy()}')
    try:
        count = cuda.cupy.cuda.runtime.getDeviceCount()
    except cuda.cupy.cuda.runtime.CUDARuntimeError as error:
        raise DeviceError(
            f'-g {gpu}: CuPy finds no usable CUDA GPU ({error}); check the NVIDIA driver '
            '(nvidia-smi), or use -g -1 for the CPU'
        ) from None
    if gpu >= count:
        raise DeviceError(f'-g {gpu}: no such GPU, this machine has {count} (ids 0..{count - 1})')
    return chainer.get_device(f'@cupy:{gpu}')


def why_no_cupy() -> str:
    """Why Chainer cannot use CuPy here, with what to do, in one line."""
    try:
        import cupy  # noqa: F401
    except ImportError as error:
        if getattr(error, 'name', None) == 'cupy' or "No module named 'cupy'" in str(error):
            return (
                'CuPy is not installed; run `make install-gpu` on a machine with an NVIDIA GPU, '
                'or use -g -1 for the CPU'
            )
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        return (
            f'CuPy is installed but cannot load the CUDA libraries ({first}); cupy-cuda12x 13.6 '
            'needs the CUDA 12 runtime (a CUDA 12 toolkit), a driver alone is not enough: '
            'install the toolkit, or use `make install-gpu STACK=modern`, whose CuPy 14 brings '
            'the runtime from PyPI'
        )
    except Exception as error:  # CuPy raises other errors when its libraries are broken
        return f'CuPy fails to import ({type(error).__name__}: {error}); use -g -1 for the CPU'
    return (
        'CuPy imports but Chainer cannot use it (a CuPy version Chainer 7.8.1 does not '
        'support?); see `python -c "import chainer; chainer.print_runtime_info()"`'
    )


def gpu_settings(capability_major: int, tf32: bool = True) -> dict[str, str]:
    """The environment variables for TF32: on where the GPU has it and ``tf32``, else off.

    ``CUPY_TF32`` makes CuPy's float32 matrix products (Chainer's convolutions without
    cuDNN) use TF32; ``NVIDIA_TF32_OVERRIDE=0`` keeps cuDNN and cuBLAS from using it.
    """
    if tf32 and capability_major >= TF32_CAPABILITY:
        return {'CUPY_TF32': '1'}
    return {'CUPY_TF32': '0', 'NVIDIA_TF32_OVERRIDE': '0'}


def configure(device: chainer.backend.Device, tf32: bool = True) -> dict:
    """Apply the GPU choices to ``device`` (nothing on the CPU); return what was set.

    Call before the first computation on the GPU (the math libraries read their TF32
    settings once).
    """
    if device.xp is chainer.backend.CpuDevice().xp:
        return {}
    from chainer.backends import cuda

    major = int(device.device.compute_capability) // 10
    environment = gpu_settings(major, tf32)
    for name, value in environment.items():
        if tf32:
            os.environ.setdefault(name, value)  # a user's own setting wins
        else:
            os.environ[name] = value
    chainer.global_config.autotune = True
    cuda.set_max_workspace_size(WORKSPACE_BYTES)
    return {
        'tf32': os.environ.get('CUPY_TF32') == '1',
        'autotune': True,
        'cudnn': bool(cuda.cudnn_enabled),
        'workspace_bytes': WORKSPACE_BYTES,
    }
