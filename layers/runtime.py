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
    return cores()


def kernel_threads() -> int:
    """Threads the compiled kernels run on: the user's ``NUMBA_NUM_THREADS`` where set (it
    wins, as for Numba), else ``thread_count``."""
    value = os.environ.get('NUMBA_NUM_THREADS', '').strip()
    return int(value) if value.isdigit() and int(value) > 0 else thread_count()


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
    """Load oneTBB for Numba's ``tbb`` layer (and oneDNN's kernels); True if it loaded.

    pip's ``tbb`` wheel puts the library in the environment's ``lib`` folder, which the
    dynamic loader does not search: loaded from there first (globally, so Numba's layer
    module links against it), else from the loader's own path.
    """
    return load_global(TBB_LIBRARY) is not None


def load_global(name: str):
    """The shared library ``name`` loaded globally (the libraries loaded after it link
    against it), from the environment's ``lib`` folder first (where pip's wheels put
    theirs), else from the loader's path; None where neither has it."""
    for candidate in (os.path.join(sys.prefix, 'lib', name), name):
        try:
            return ctypes.CDLL(candidate, mode=ctypes.RTLD_GLOBAL)
        except OSError:
            continue
    return None


class _GlobalControl(ctypes.Structure):
    """oneTBB's ``tbb::global_control`` (oneapi/tbb/global_control.h, oneTBB 2021's ABI)."""

    _fields_ = [
        ('value', ctypes.c_size_t),
        ('reserved', ctypes.c_ssize_t),
        ('parameter', ctypes.c_int),
    ]


_MAX_ALLOWED_PARALLELISM = 0
_CREATE = '_ZN3tbb6detail2r16createERNS0_2d114global_controlE'  # r1::create(global_control&)
_ACTIVE = '_ZN3tbb6detail2r127global_control_active_valueEi'  # r1::global_control_active_value
_TBB_LIMIT: list = []  # the global_control in force, kept for the life of the process


def limit_tbb(threads: int) -> int | None:
    """Hold all of oneTBB's parallel work to ``threads`` threads (its
    ``max_allowed_parallelism``); the limit in force, or None without oneTBB.

    Numba's loops run in arenas of the configured count, but oneDNN's kernels run in
    oneTBB's default arena, which takes every core: with ``OMP_NUM_THREADS=1`` (an MPI
    launch, one process a core) they would still take them all. Set once per process.
    """
    tbb = load_global(TBB_LIBRARY)
    if tbb is None:
        return None
    if not _TBB_LIMIT and threads < cores():
        control = _GlobalControl(threads, 0, _MAX_ALLOWED_PARALLELISM)
        getattr(tbb, _CREATE)(ctypes.byref(control))
        _TBB_LIMIT.append(control)
    active = getattr(tbb, _ACTIVE)
    active.restype = ctypes.c_size_t
    return int(active(_MAX_ALLOWED_PARALLELISM))


def cores() -> int:
    """The cores this process may use."""
    if hasattr(os, 'sched_getaffinity'):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


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
    threads = str(kernel_threads())
    if 'numba' not in sys.modules:
        os.environ['NUMBA_NUM_THREADS'] = threads
        return
    import numba

    numba.config.THREADING_LAYER = layer
    numba.set_num_threads(min(int(threads), numba.config.NUMBA_NUM_THREADS))
