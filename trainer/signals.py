"""Ctrl-C and SIGTERM while training: raised at a safe point, never inside compiled code.

Python runs a signal handler between two bytecodes of whatever Python code is running,
also Python called from inside a compiled kernel's dispatch (Numba's type checks); an
exception raised there is lost by the C code around it and surfaces as ``SystemError:
CPUDispatcher(...) returned a result with an exception set``. So, within
``stop_at_safe_points()``, a signal that arrives while the trainer's loop runs is only
noted, and ``safe_point()``, called between training steps and between evaluation
batches, raises it: ``KeyboardInterrupt`` for SIGINT, ``Terminated`` for SIGTERM.
Outside the loop (loading data, start-up) it is raised at once, as Python would. Writes
hold signals back on their own (``run_folder.deferred_signals``).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

import chainer

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_LOOP = chainer.training.Trainer.run.__code__
_pending: list[int] = []


class Terminated(Exception):
    """SIGTERM arrived: stop like Ctrl-C (the run folder stays resumable)."""


def exception_for(signum: int) -> BaseException:
    """What a signal becomes: KeyboardInterrupt for SIGINT, Terminated for SIGTERM."""
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated()


def safe_point() -> None:
    """Raise the first signal noted since the last safe point, if any (else nothing)."""
    if _pending:
        signum = _pending[0]
        _pending.clear()
        raise exception_for(signum)


def _in_loop(frame) -> bool:
    while frame is not None:
        if frame.f_code is _LOOP:
            return True
        frame = frame.f_back
    return False


def _handle(signum: int, frame) -> None:
    if _in_loop(frame):
        _pending.append(signum)  # the next safe point raises it
    else:
        _pending.clear()
        raise exception_for(signum)


@contextlib.contextmanager
def stop_at_safe_points() -> Iterator[None]:
    """Within the block, Ctrl-C and SIGTERM stop training at the next safe point.

    Main thread only (elsewhere the block runs with the handlers as they are). Call
    ``safe_point()`` once more after training, for a signal noted after the last step.
    """
    _pending.clear()
    try:
        previous = {signum: signal.signal(signum, _handle) for signum in SIGNALS}
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        _pending.clear()
