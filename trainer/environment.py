"""What a result depends on besides the code's options: versions, machine, device, commit."""

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

import chainer
import numpy as np

PACKAGES = ('chainer', 'numpy', 'pillow', 'matplotlib', 'numba', 'mpi4py')
CUPY_PACKAGES = ('cupy', 'cupy-cuda12x', 'cupy-cuda13x', 'cupy-cuda11x')


def version(package: str) -> str | None:
    """The installed version of ``package``, or None."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def cupy_version() -> str | None:
    """The version of whichever CuPy wheel is installed, or None."""
    for name in CUPY_PACKAGES:
        if found := version(name):
            return found
    return None


def cpu_name() -> str:
    """The CPU's model name (Linux), else what platform reports."""
    try:
        with open('/proc/cpuinfo') as info:
            for line in info:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    """The project's git commit (with '+dirty' for local changes), or None outside git."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ['git', 'rev-parse', 'HEAD'], cwd=root, capture_output=True, text=True, timeout=5
        )
        status = subprocess.run(
            ['git', 'status', '--porcelain', '--untracked-files=no'],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ('+dirty' if status.stdout.strip() else '')


def environment(gpu: int = -1) -> dict:
    """Versions, machine and device of this process, and the project's git commit."""
    env = {
        'python': platform.python_version(),
        **{name: version(name) for name in PACKAGES},
        'cupy': cupy_version(),
        'platform': platform.platform(),
        'cpu': cpu_name(),
        'cpu_count': os.cpu_count(),
        'device': 'cpu',
        'git_commit': git_commit(),
    }
    env['numpy'] = np.__version__
    env['chainer'] = chainer.__version__
    if gpu >= 0:
        cuda = chainer.backends.cuda
        properties = cuda.cupy.cuda.runtime.getDeviceProperties(gpu)
        env['device'] = f'cuda:{gpu} {properties["name"].decode()}'
        env['cudnn'] = bool(cuda.cudnn_enabled)
    return env
