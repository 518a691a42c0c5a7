"""Scratch arrays reused across layers and training steps instead of allocated each time.

A fresh large NumPy array is fresh pages from the kernel: a page fault and a zeroing per
4 KiB on first touch. Temporaries such as the blocked convolutions' per-thread column
buffers (``layers.conv_blocks``) or, on their fallback path, a whole batch's im2col matrix
(135 MB for conv1 at 122 px, batch 64) and its gradient are written, read by a GEMM and
dropped: they live in scratch slots. Each named slot keeps one flat array, grown to the
largest size asked so far, and hands out views of it; a view is valid only until the next
``scratch`` call with the same name, so a slot never backs an array that outlives the
function that asked.

Outputs and gradients, which the graph keeps, come from ``array``: below 32 MiB that is the
allocator (glibc keeps such blocks on its heap, see ``layers.runtime``); at or above it,
where glibc would map fresh pages every time (84 MiB for the first pooling's gradient at
122 px), a small shared list of large buffers. A buffer backs a new array only when nothing
but the list refers to it (every view of it holds a reference, so a gradient kept as a
leaf's ``.grad`` or an output a caller keeps is never reused), and only for a request of at
least half its size; at most ``KEEP_FREE`` unused buffers stay. A pool by exact shape was
measured to raise peak RSS by 20 %; reusing any large enough buffer lets one buffer serve
the forward pass's large outputs and the backward pass's large gradients in turn.
Scratch slots are per thread; the buffer list is shared (under a lock); a forked child
gets its own copy of both.
"""

import math
import sys
import threading

import numpy as np

_local = threading.local()
LARGE = 32 << 20
"""Arrays of at least this many bytes come from reused buffers (glibc's largest mmap threshold)."""
KEEP_FREE = 2
"""Unused large buffers kept for the next requests; more are dropped."""
_buffers: list[np.ndarray] = []
_lock = threading.Lock()


def scratch(name: str, shape: tuple, dtype) -> np.ndarray:
    """An uninitialized C-contiguous array of ``shape`` backed by slot ``name``."""
    dtype = np.dtype(dtype)
    slots = _local.__dict__.setdefault('slots', {})
    size = math.prod(shape) * dtype.itemsize  # not np.prod: 20x slower on a tuple
    buffer = slots.get(name)
    if buffer is None or buffer.size < size:
        buffer = slots[name] = np.empty(size, np.uint8)
    return buffer[:size].view(dtype).reshape(shape)


def _reference_count(index: int) -> int:
    return sys.getrefcount(_buffers[index])  # the list's reference and the argument's


_buffers.append(np.empty(1, np.uint8))
POOLING = _reference_count(0) == 2
"""False where the interpreter counts references otherwise: then ``array`` only allocates."""
_buffers.clear()


def _unused() -> list[int]:
    """Indices of the buffers nothing but the list refers to (no array is a view of them)."""
    return [i for i in range(len(_buffers)) if _reference_count(i) <= 2]


def array(shape: tuple, dtype) -> np.ndarray:
    """An uninitialized C-contiguous array of ``shape``, which the caller may keep.

    At or above ``LARGE`` bytes it is a view of a reused buffer that nothing else refers to.
    """
    dtype = np.dtype(dtype)
    size = math.prod(shape) * dtype.itemsize  # not np.prod: 20x slower on a tuple
    if size < LARGE or not POOLING:
        return np.empty(shape, dtype)
    with _lock:
        free = _unused()
        fits = [i for i in free if size <= _buffers[i].size <= 2 * size]
        if fits:
            buffer = _buffers[min(fits, key=lambda i: _buffers[i].size)]
        else:
            extra = max(len(free) + 1 - KEEP_FREE, 0)  # the smallest unused beyond KEEP_FREE
            drop = sorted(free, key=lambda i: _buffers[i].size)[:extra]
            for i in sorted(drop, reverse=True):
                del _buffers[i]
            buffer = np.empty(size, np.uint8)
            _buffers.append(buffer)
        return buffer[:size].view(dtype).reshape(shape)


def release() -> None:
    """Drop this thread's scratch slots and the unused large buffers (their memory returns
    to the allocator)."""
    _local.__dict__.pop('slots', None)
    with _lock:
        for i in _unused()[::-1]:
            del _buffers[i]
