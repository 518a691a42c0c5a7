"""Scratch arrays reused across layers and training steps instead of allocated each time.

The im2col matrix of a k x k convolution (135 MB for conv1 at 122 px, batch 64) and its
gradient are temporaries: written, read by one GEMM, dropped. Allocating them fresh costs a
page fault per 4 KiB on every call; here each named slot keeps one flat array, grown to the
largest size asked so far, and hands out views of it. A view is only valid until the next
``scratch`` call with the same name, so a slot must never back an array that outlives the
function that asked for it. Slots are per thread; a forked child gets its own copy.
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
    """Drop this thread's slots (their memory returns to the allocator)."""
    _local.__dict__.pop('slots', None)
