"""Where an activation lives in memory: the layout that chooses each unit's path.

An activation always has Chainer's logical shape (N, C, H, W). Its memory is either
Chainer's own (C-contiguous, NCHW) or channels-last (NHWC memory seen through an NCHW
view), PyTorch's ``channels_last``. A net converts its input once with ``channels_last``
where it enters; every unit of ``layers`` then sees a channels-last NumPy activation and
runs its CPU fast path (``layers.nhwc``: NHWC kernels on the same Chainer links), and
returns channels-last activations for the next one. On any other array (NCHW memory, CuPy)
the same units run Chainer's plain functions. So a net's ``forward`` is written once, in
NCHW terms, and the layout of its input picks the path.

Chainer's own functions accept channels-last activations and give the same numbers (NumPy
follows the strides), so a net may mix them in; one that returns NCHW memory (``F.concat``,
``F.dropout``) leaves the units after it on the plain path, so ``layers`` offers
layout-keeping versions of those (``layers.functions``).

The fast path's modules (Numba, the threading and allocator set-up of ``layers.runtime``)
are imported when a unit first takes it (``ops``): importing ``layers`` changes nothing in
the process. ``fast_path(False)`` switches the fast path off (a net's ``fast=False``).
"""

import contextlib
import importlib
from collections.abc import Iterator
from types import ModuleType

import chainer
import numpy as np
from chainer import function_node

_FAST: ModuleType | None = None


def _array(x):
    return x.array if isinstance(x, chainer.Variable) else x


def is_channels_last(x) -> bool:
    """True for a 4-D NumPy activation (array or Variable) whose memory is NHWC."""
    a = _array(x)
    return isinstance(a, np.ndarray) and a.ndim == 4 and a.transpose(0, 2, 3, 1).flags.c_contiguous


CONFIG_KEY = 'cpu_fast_path'
"""The ``chainer.config`` entry that ``fast_path(False)`` sets (unset: on)."""


@contextlib.contextmanager
def fast_path(enabled: bool = True) -> Iterator[None]:
    """Within it, units take the CPU fast path on channels-last activations (the default),
    or, with ``enabled=False``, always Chainer's plain functions: a net's ``fast`` switch.

    Needed because Chainer's own CPU convolution returns channels-last memory, so a
    channels-last activation alone does not say that the plain path was not wanted.
    """
    with chainer.using_config(CONFIG_KEY, bool(enabled)):
        yield


def takes_fast_path(x) -> bool:
    """Whether a unit given ``x`` runs its NHWC kernels: channels-last, and not switched off."""
    return getattr(chainer.config, CONFIG_KEY, True) and is_channels_last(x)


def ops() -> ModuleType:
    """``layers.nhwc``, imported on first use (which configures Numba's threads first)."""
    global _FAST
    if _FAST is None:
        _FAST = importlib.import_module('layers.nhwc')
    return _FAST


class ChannelsLast(function_node.FunctionNode):
    """The same values with NHWC memory (the gradient passes through unchanged)."""

    def forward_cpu(self, inputs):
        (x,) = inputs
        return (ops().nhwc_copy(x).transpose(0, 3, 1, 2),)

    def backward(self, indexes, grad_outputs):
        return grad_outputs


def channels_last(x) -> chainer.Variable:
    """``x`` with channels-last memory, for a net's input: the units after it take the CPU
    fast path. Other arrays (CuPy, not 4-D), channels-last ones, and any input within
    ``fast_path(False)`` pass unchanged."""
    a = _array(x)
    off = not getattr(chainer.config, CONFIG_KEY, True)
    if off or not isinstance(a, np.ndarray) or a.ndim != 4 or is_channels_last(a):
        return x if isinstance(x, chainer.Variable) else chainer.Variable(x)
    return ChannelsLast().apply((x,))[0]


class ToNHWC(function_node.FunctionNode):
    """A channels-last (N, C, H, W) activation as the C-contiguous (N, H, W, C) array the
    kernels take: a view, copied only when the memory is not channels-last."""

    def forward_cpu(self, inputs):
        (x,) = inputs
        return (np.ascontiguousarray(x.transpose(0, 2, 3, 1)),)

    def backward(self, indexes, grad_outputs):
        return (to_nchw(grad_outputs[0]),)


class ToNCHW(function_node.FunctionNode):
    """An (N, H, W, C) kernel output as the (N, C, H, W) view a net sees: no copy."""

    def forward_cpu(self, inputs):
        (h,) = inputs
        return (h.transpose(0, 3, 1, 2),)

    def backward(self, indexes, grad_outputs):
        return (to_nhwc(grad_outputs[0]),)


def to_nhwc(x) -> chainer.Variable:
    """The kernels' (N, H, W, C) view of a channels-last activation, differentiably (with
    no graph being built, the view alone: no node's overhead at inference)."""
    if not chainer.config.enable_backprop:
        return chainer.Variable(np.ascontiguousarray(_array(x).transpose(0, 2, 3, 1)))
    return ToNHWC().apply((x,))[0]


def to_nchw(h) -> chainer.Variable:
    """The net's (N, C, H, W) view of a kernel's (N, H, W, C) output, differentiably (with
    no graph being built, the view alone)."""
    if not chainer.config.enable_backprop:
        return chainer.Variable(_array(h).transpose(0, 3, 1, 2))
    return ToNCHW().apply((h,))[0]
