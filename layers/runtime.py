"""The threading environment the compiled CPU kernels need, set before Numba starts.

``configure`` runs when ``layers.kernels`` is first imported, that is when a unit first
takes the fast path; importing this module (or ``layers``) changes nothing.

Numba's parallel loops and OpenBLAS's GEMMs take turns on the same cores, and a net runs
many short parallel loops (a ResNet-20 at 32 px: about 40 a step, each a few hundred
microseconds). The kernels run on Numba's ``tbb`` layer (oneTBB, the ``tbb`` wheel) where
it loads: its workers sleep between loops (no core stolen from the next GEMM, as OpenMP's
spinning threads did: 1,237 against 804 ms a SqueezeNet step), it starts a loop far sooner
than ``workqueue`` (ResNet-20 training 1.45x, SqueezeNet 1.15x, evaluation 1.2x, measured
alternating), and it is thread-safe and fork-safe (Chainer's ``MultiprocessIterator``
forks; OpenMP hangs in a forked child that runs a kernel). Without oneTBB the kernels run
on ``workqueue``, which is fork-safe too but not thread-safe: run the model from one thread
at a time there (the server already does).
The thread count follows ``OMP_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` (so MPI launches that
set ``OMP_NUM_THREADS=1`` stay one thread per process), else the cores this process may use.
A user's explicit ``NUMBA_THREADING_LAYER`` or ``NUMBA_NUM_THREADS`` wins.

The allocator is tuned too (glibc only, unless the user set its variables): a training step
allocates its outputs and gradients afresh, and above glibc's default mmap threshold each
one is fresh pages from the kernel, a fault and a zeroing per 4 KiB. With the threshold at
its maximum (32 MiB) and freed memory kept, those arrays reuse the heap: measured 1.25 s
against 1.10 s a 122 px step, minor faults down 70 %, peak RSS up 1 %.
"""

import ctypes
import os
import sys

THREAD_VARIABLES = ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS')
ALLOCATOR_TUNED: bool | None = None
"""Whether ``configure`` tuned glibc's allocator (None: not configured yet)."""


def thread_count() -> int:
    """Threads for the kernels: the BLAS thread variables, else this process's cores."""
    for name in THREAD_VARIABLES:
        value = os.environ.get(name, '').strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    if hasattr(os, 'sched_getaffinity'):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 2**31 - 1
ALLOCATOR_VARIABLES = ('MALLOC_MMAP_THRESHOLD_', 'MALLOC_TRIM_THRESHOLD_', 'GLIBC_TUNABLES')


def _glibc(name: str, argtypes: tuple):
    """glibc's function ``name``, or None on other C libraries."""
    try:
        function = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
    function.argtypes = argtypes
    return function


def _mallopt():
    mallopt = _glibc('mallopt', (ctypes.c_int, ctypes.c_int))
    if mallopt is not None:
        mallopt.restype = ctypes.c_int
    return mallopt


SERVICE_TRIM_THRESHOLD = 32 << 20
_SERVICE = False


def tune_allocator() -> bool:
    """Keep arrays under 32 MiB on glibc's heap and freed memory mapped (up to 32 MiB for a
    service, ``return_freed_memory``); True if done."""
    if not sys.platform.startswith('linux') or any(v in os.environ for v in ALLOCATOR_VARIABLES):
        return False
    mallopt = _mallopt()
    if mallopt is None:
        return False
    trim = SERVICE_TRIM_THRESHOLD if _SERVICE else TRIM_THRESHOLD
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(M_TRIM_THRESHOLD, trim))


def return_freed_memory() -> bool:
    """For a long-running service: free memory beyond 32 MiB at the top of a heap goes back
    to the system when it is freed, instead of staying for the next training step.

    Keeping it is right for training (the next step reuses it) but not for threads that
    decode an occasional large image: glibc never returns a thread arena's top (not even
    ``malloc_trim``), so each decoding thread would keep up to a heap (64 MiB) resident.
    Only changes what ``tune_allocator`` does, now if it has run (True if done), else when
    the fast path first runs.
    """
    global _SERVICE
    _SERVICE = True
    mallopt = _mallopt() if ALLOCATOR_TUNED else None
    return bool(mallopt and mallopt(M_TRIM_THRESHOLD, SERVICE_TRIM_THRESHOLD))


_TRIM = _glibc('malloc_trim', (ctypes.c_size_t,))


TBB_LIBRARY = 'libtbb.so.12'  # oneTBB 2021+, what Numba's tbb layer links against


def load_tbb() -> bool:
    """Load oneTBB for Numba's ``tbb`` layer; True if it loaded.

    pip's ``tbb`` wheel puts the library in the environment's ``lib`` folder, which the
    dynamic loader does not search: loaded from there first (globally, so Numba's layer
    module links against it), else from the loader's own path.
    """
    for candidate in (os.path.join(sys.prefix, 'lib', TBB_LIBRARY), TBB_LIBRARY):
        try:
            ctypes.CDLL(candidate, mode=ctypes.RTLD_GLOBAL)
            return True
        except OSError:
            continue
    return False


def preferred_layer() -> str:
    """The threading layer the kernels run on: the user's ``NUMBA_THREADING_LAYER``, else
    ``tbb`` where oneTBB loads, else ``workqueue``."""
    chosen = os.environ.get('NUMBA_THREADING_LAYER')
    if chosen:
        if chosen in ('tbb', 'safe', 'threadsafe', 'forksafe'):
            load_tbb()  # the user's tbb choice needs the library found too
        return chosen
    return 'tbb' if load_tbb() else 'workqueue'


def release_memory() -> None:
    """Give freed heap pages back to the system (glibc keeps them in its arenas)."""
    if _TRIM is not None:
        _TRIM(0)


def configure() -> None:
    """Tune the allocator, choose the threading layer (``preferred_layer``) and the thread
    count; call before importing Numba.

    If Numba is already imported, its configuration is changed in place instead (the
    threading layer is only picked when the first parallel loop runs).
    """
    global ALLOCATOR_TUNED
    if ALLOCATOR_TUNED is None:
        ALLOCATOR_TUNED = tune_allocator()
    layer = os.environ.setdefault('NUMBA_THREADING_LAYER', preferred_layer())
    threads = os.environ.get('NUMBA_NUM_THREADS') or str(thread_count())
    if 'numba' not in sys.modules:
        os.environ['NUMBA_NUM_THREADS'] = threads
        return
    import numba

    numba.config.THREADING_LAYER = layer
    numba.set_num_threads(min(int(threads), numba.config.NUMBA_NUM_THREADS))
