"""Weights held still: what the fast path derives from parameters, kept between calls.

At inference the fast path derives the same things from a net's parameters on every call:
oneDNN's HWIO copy of each convolution's weights and each test-mode batch normalization's
scale and shift (0.3 ms of a 3 ms one-image SqueezeNet forward here). Within a
``FrozenWeights`` they are computed once per parameter array and kept, for as long as that
object lives: ``predict`` and ``serve`` hold one for their model
(``inference.ChainerForward``).

The holder promises that the parameters do not change in place while it is used: a
parameter given a new array (``to_device``, a link rebuilt) is noticed, since entries are
keyed by the array objects, but an optimizer step or ``load_npz`` into the same arrays is
not: call ``clear`` after one. Outside any ``FrozenWeights`` nothing is kept (training).
"""

import contextlib
from collections.abc import Callable, Iterator

import chainer

CONFIG_KEY = 'layers_frozen_weights'
"""The ``chainer.config`` entry holding the active cache (unset: none)."""

LIMIT = 4096
"""Entries kept at most; beyond, the cache starts over (parameters replaced many times)."""


class FrozenWeights:
    """A cache of values derived from parameters, active within ``with`` (thread-local, as
    ``chainer.config``); entries live until ``clear`` or the object goes."""

    def __init__(self) -> None:
        self.entries: dict = {}

    @contextlib.contextmanager
    def active(self) -> Iterator['FrozenWeights']:
        """Within it, the fast path reuses what it derived from the parameters before."""
        with chainer.using_config(CONFIG_KEY, self.entries):
            yield self

    def clear(self) -> None:
        """Forget every derived value (after the parameters were written in place)."""
        self.entries.clear()


def derived(name: str, arrays: tuple, make: Callable[[], object]):
    """``make()``, the ``name`` of these parameter ``arrays``: computed once while a
    ``FrozenWeights`` is active and reused while the same array objects come back; computed
    every call otherwise."""
    entries = getattr(chainer.config, CONFIG_KEY, None)
    if entries is None:
        return make()
    key = (name, *map(id, arrays))
    hit = entries.get(key)
    if hit is not None and all(a is b for a, b in zip(hit[0], arrays, strict=True)):
        return hit[1]
    if len(entries) >= LIMIT:
        entries.clear()
    value = make()
    entries[key] = (arrays, value)  # the arrays kept alive: their ids stay theirs
    return value
