"""Differentiable backward passes for the fast nodes, through Chainer's own functions.

A fast node computes its gradients with NumPy and compiled loops, which Chainer cannot
differentiate again. When a backward pass runs with ``enable_double_backprop=True``
(``chainer.config.enable_backprop`` is then on inside ``backward``), the node instead
rebuilds its function from Chainer's differentiable functions on the same inputs and
returns ``chainer.grad`` of that: the plain composition's gradients, graph included.
Each input is first aliased by an identity, so that a variable passed at two positions
(the same activation into two convolutions of one node) gets at each position only the
gradient through that position, as Chainer expects of a node's backward.
"""

from collections.abc import Callable, Sequence

import chainer
import chainer.functions as F


def wants_graph() -> bool:
    """True inside a backward pass whose gradients must themselves be differentiable."""
    return bool(chainer.config.enable_backprop)


def plain_grads(
    plain: Callable[..., Sequence[chainer.Variable]],
    inputs: Sequence[chainer.Variable | None],
    indexes: Sequence[int],
    grad_outputs: Sequence[chainer.Variable | None],
) -> tuple:
    """Gradients of ``plain(*inputs)`` for ``inputs[i]``, i in ``indexes``.

    They are themselves differentiable (a graph) when the caller asked for double backprop.
    """
    double = wants_graph()
    with chainer.using_config('enable_backprop', True):  # the plain graph must be built
        aliases = [None if v is None else F.identity(v) for v in inputs]
        outputs = list(plain(*aliases))
        pairs = [(y, g) for y, g in zip(outputs, grad_outputs, strict=True) if g is not None]
        grads = chainer.grad(
            [y for y, _ in pairs],
            [aliases[i] for i in indexes],
            grad_outputs=[g for _, g in pairs],
            enable_double_backprop=double,
        )
    return tuple(grads)
