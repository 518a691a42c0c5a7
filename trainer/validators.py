"""Value checks shared by every command line and the HTTP service.

Each check takes the text as given and returns the value, or raises ValueError whose
message completes "<name> ..." (``must be a positive integer, got 0``). ``argtype`` turns a
check into an argparse ``type``; the service calls the checks directly.
"""

import argparse
import math
import os
from collections.abc import Callable

SEED_MAX = 2**32 - 1  # NumPy's legacy seed range, which np.random.seed and Chainer use


def integer(text: str, low: int | None = None, high: int | None = None) -> int:
    """An integer, optionally within [low, high]."""
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise ValueError(f'must be an integer, got {text!r}') from None
    if low is not None and high is not None and not low <= value <= high:
        raise ValueError(f'must be in {low}..{high}, got {text}')
    if low is not None and value < low:
        wanted = 'a positive integer' if low == 1 else f'{low} or more'
        raise ValueError(f'must be {wanted}, got {text}')
    if high is not None and value > high:
        raise ValueError(f'must be {high} or less, got {text}')
    return value


def positive(text: str) -> int:
    """An integer of 1 or more."""
    return integer(text, 1)


def non_negative(text: str) -> int:
    """An integer of 0 or more."""
    return integer(text, 0)


def seed(text: str) -> int:
    """A seed NumPy accepts: 0..2**32-1."""
    return integer(text, 0, SEED_MAX)


def positive_float(text: str) -> float:
    """A finite number above 0."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ValueError(f'must be a number, got {text!r}') from None
    if not value > 0 or math.isinf(value):
        raise ValueError(f'must be a positive number, got {text}')
    return value


def existing_file(text: str) -> str:
    """The path of an existing file."""
    if not os.path.isfile(text):
        raise ValueError(f'no such file: {text}')
    return text


def argtype(check: Callable[[str], object], *bounds) -> Callable[[str], object]:
    """``check`` as an argparse type (its ValueError becomes argparse's one-line error)."""

    def parse(text: str):
        try:
            return check(text, *bounds)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = check.__name__
    return parse
