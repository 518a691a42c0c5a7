"""GEMM with an accumulating output, straight through the OpenBLAS that NumPy loaded.

``np.matmul`` always computes ``C = A @ B``: OpenBLAS first clears C in a pass of its own
(``beta = 0``), then accumulates the product into it. ``gemm(a, b, out, accumulate=True)``
calls ``cblas_?gemm`` with ``beta = 1`` instead, so a caller that fills ``out`` with the
bias (or the bias plus a bypass) first gets ``out = bias + a @ b`` for the price of the
clearing pass: the separate bias pass, a read and a write of the whole output, is gone.

The library is found in the process's memory map (Linux) under the symbol names NumPy's
wheels use (``cblas_sgemm64_``, ``scipy_cblas_sgemm64_``, or plain ``cblas_sgemm``), and
checked once on a small product against ``np.matmul``. Where it cannot be found or
disagrees, ``gemm`` falls back to ``np.matmul`` and an add: same result, one pass more.
Integers go as 64-bit values, which an LP64 library reads correctly on x86-64 and
AArch64 too (they travel in 64-bit registers and 8-byte stack slots).

Compiled kernels call the same functions from their own threads (``layers.conv_blocks``):
``address`` gives a function's address, and ``one_thread`` holds OpenBLAS to the calling
thread meanwhile (``openblas_set_num_threads``), so each kernel thread's GEMM runs on its
own core instead of waking OpenBLAS's threads.
"""

import contextlib
import ctypes
import threading

import numpy as np

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
_SYMBOLS = tuple(
    f'{prefix}cblas_{{}}gemm{suffix}' for prefix in ('scipy_', '') for suffix in ('64_', '')
)
_TYPES = (('s', np.float32, ctypes.c_float), ('d', np.float64, ctypes.c_double))
_FUNCTIONS: dict | None = None
_THREADS: tuple | None = None
"""OpenBLAS's (get, set) thread-count functions in the library ``_FUNCTIONS`` came from."""


def _library_paths() -> list[str]:
    try:
        with open('/proc/self/maps') as maps:
            return sorted({line.split()[-1] for line in maps if 'blas' in line.lower()})
    except OSError:
        return []


def _load() -> dict:
    """{dtype: cblas gemm function} for float32 and float64, empty where none is usable."""
    for path in _library_paths():
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for symbol in _SYMBOLS:
            found = {}
            for letter, dtype, scalar in _TYPES:
                name = symbol.format(letter)
                if not hasattr(library, name):
                    break
                function = getattr(library, name)
                i, p = ctypes.c_int64, ctypes.c_void_p
                enum = ctypes.c_int
                function.argtypes = (enum, enum, enum, i, i, i, scalar, p, i, p, i, scalar, p, i)
                function.restype = None
                found[np.dtype(dtype)] = function
            if len(found) == 2 and _agrees(found):
                _find_thread_control(library, symbol)
                return found
    return {}


def _find_thread_control(library: ctypes.CDLL, symbol: str) -> None:
    """OpenBLAS's get/set thread-count functions, named like the library's gemm."""
    global _THREADS
    prefix, suffix = symbol.split('cblas_')[0], '64_' if symbol.endswith('64_') else ''
    names = [f'{prefix}openblas_{verb}_num_threads{suffix}' for verb in ('get', 'set')]
    if all(hasattr(library, name) for name in names):
        get, set_ = (getattr(library, name) for name in names)
        get.argtypes, get.restype = (), ctypes.c_int
        set_.argtypes, set_.restype = (ctypes.c_int,), None
        _THREADS = (get, set_)


def _agrees(functions: dict) -> bool:
    """One small product per type, both transposes, against ``np.matmul``."""
    rng = np.random.default_rng(0)
    for dtype in functions:
        a = rng.standard_normal((3, 5)).astype(dtype)
        b = rng.standard_normal((3, 8)).astype(dtype)[:, :4]
        out = np.ones((5, 6), dtype)[:, 1:5]
        _call(functions[dtype], a.T, b, out, 1.0)
        if not np.allclose(out, a.T @ b + 1, rtol=1e-4, atol=1e-4):
            return False
    return True


def _functions() -> dict:
    global _FUNCTIONS
    if _FUNCTIONS is None:
        _FUNCTIONS = _load()
    return _FUNCTIONS


def _operand(a: np.ndarray) -> tuple | None:
    """(transpose flag, leading dimension) of a 2-D operand BLAS can read as it is."""
    item = a.itemsize
    rows, cols = a.shape
    if a.strides[1] == item and a.strides[0] % item == 0 and a.strides[0] // item >= max(cols, 1):
        return _NO_TRANS, a.strides[0] // item
    if a.strides[0] == item and a.strides[1] % item == 0 and a.strides[1] // item >= max(rows, 1):
        return _TRANS, a.strides[1] // item
    return None


def _call(function, a, b, out, beta: float) -> bool:
    ta, tb, tc = _operand(a), _operand(b), _operand(out)
    if ta is None or tb is None or tc is None or tc[0] != _NO_TRANS:
        return False
    m, k = a.shape
    n = b.shape[1]
    function(
        _ROW_MAJOR, ta[0], tb[0], m, n, k, 1.0,
        a.ctypes.data, ta[1], b.ctypes.data, tb[1], beta, out.ctypes.data, tc[1],
    )  # fmt: skip
    return True


def address(dtype) -> int | None:
    """The address of ``cblas_?gemm`` for ``dtype`` (float32 or float64), None if unusable
    from other threads (no BLAS found, or no OpenBLAS thread control to pair it with)."""
    function = _functions().get(np.dtype(dtype))
    if function is None or _THREADS is None:
        return None
    return ctypes.cast(function, ctypes.c_void_p).value


_held = {'count': 0, 'before': 0}
_held_lock = threading.Lock()


@contextlib.contextmanager
def one_thread():
    """OpenBLAS runs each GEMM in its calling thread meanwhile (then as many as before).

    Nested or concurrent uses (several Python threads) restore the count when the last
    one leaves, so it never stays at 1.
    """
    _functions()
    if _THREADS is None:
        yield
        return
    get, set_ = _THREADS
    with _held_lock:
        if _held['count'] == 0:
            _held['before'] = get()
            set_(1)
        _held['count'] += 1
    try:
        yield
    finally:
        with _held_lock:
            _held['count'] -= 1
            if _held['count'] == 0:
                set_(_held['before'])


def available() -> bool:
    """Whether ``gemm`` calls BLAS itself (False: it falls back to ``np.matmul``)."""
    return bool(_functions())


def gemm(a: np.ndarray, b: np.ndarray, out: np.ndarray, accumulate: bool = False) -> np.ndarray:
    """``out = a @ b``, or ``out += a @ b`` when ``accumulate``; 2-D arrays of one dtype.

    ``a`` and ``b`` may be transposed views or column slices, ``out`` a column slice.
    """
    if a.shape[1] != b.shape[0] or out.shape != (a.shape[0], b.shape[1]):
        raise ValueError(f'gemm shapes {a.shape} @ {b.shape} -> {out.shape}')
    function = _functions().get(out.dtype)
    if function is not None and a.dtype == b.dtype == out.dtype and min(out.shape) > 0:
        if a.shape[1] == 0:
            if not accumulate:
                out[...] = 0
            return out
        if _call(function, a, b, out, 1.0 if accumulate else 0.0):
            return out
    if accumulate:
        out += a @ b
    else:
        np.matmul(a, b, out=out)
    return out
