"""Scratch arrays reused across layers and training steps instead of allocated each time.

A fresh large NumPy array is fresh pages from the kernel: a page fault and a zeroing per
4 KiB on first touch. The largest arrays of a step are temporaries: the im2col matrix of a
k x k convolution (135 MB for conv1 at 122 px, batch 64) and its gradient, written, read by
one GEMM and dropped. Each named slot keeps one flat array, grown to the largest size asked
so far, and hands out views of it; a view is valid only until the next ``scratch`` call with
the same name, so a slot never backs an array that outlives the function that asked.

Outputs and gradients, which the graph keeps, come from the allocator: pooling them by shape
was measured to raise peak RSS by 20 % (a pool cannot share memory between shapes the way
the allocator does) while saving few page faults. State is per thread; a forked child gets
its own copy.
"""

import threading

import numpy as np

_local = threading.local()


def scratch(name: str, shape: tuple, dtype) -> np.ndarray:
    """An uninitialized C-contiguous array of ``shape`` backed by slot ``name``."""
    dtype = np.dtype(dtype)
    slots = _local.__dict__.setdefault('slots', {})
    size = int(np.prod(shape)) * dtype.itemsize
    buffer = slots.get(name)
    if buffer is None or buffer.size < size:
        buffer = slots[name] = np.empty(size, np.uint8)
    return buffer[:size].view(dtype).reshape(shape)


def release() -> None:
    """Drop this thread's scratch slots (their memory returns to the allocator)."""
    _local.__dict__.pop('slots', None)
