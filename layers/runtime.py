"""The threading environment the compiled CPU kernels need, set before Numba starts.

Numba's parallel loops and OpenBLAS's GEMMs take turns on the same cores. With Numba's
OpenMP layer its idle threads spin after every loop and steal the cores from the next GEMM
(measured 1,237 against 804 ms a training step), so the kernels run on Numba's
``workqueue`` layer, whose idle workers sleep, and which stays usable in a process forked
after a kernel ran (Chainer's ``MultiprocessIterator`` forks). ``workqueue`` is not
thread-safe: run the model from one thread at a time (the server already does).
The thread count follows ``OMP_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` (so MPI launches that
set ``OMP_NUM_THREADS=1`` stay one thread per process), else the cores this process may use.
A user's explicit ``NUMBA_THREADING_LAYER`` or ``NUMBA_NUM_THREADS`` wins.
"""

import os
import sys

THREAD_VARIABLES = ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS')


def thread_count() -> int:
    """Threads for the kernels: the BLAS thread variables, else this process's cores."""
    for name in THREAD_VARIABLES:
        value = os.environ.get(name, '').strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    if hasattr(os, 'sched_getaffinity'):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def configure() -> None:
    """Choose the workqueue layer and the thread count; call before importing Numba.

    If Numba is already imported, its configuration is changed in place instead (the
    threading layer is only picked when the first parallel loop runs).
    """
    layer = os.environ.setdefault('NUMBA_THREADING_LAYER', 'workqueue')
    threads = os.environ.get('NUMBA_NUM_THREADS') or str(thread_count())
    if 'numba' not in sys.modules:
        os.environ['NUMBA_NUM_THREADS'] = threads
        return
    import numba

    numba.config.THREADING_LAYER = layer
    numba.set_num_threads(min(int(threads), numba.config.NUMBA_NUM_THREADS))
