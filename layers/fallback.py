"""Differentiable backward passes for the fast nodes, through Chainer's own functions.

A fast node computes its gradients with NumPy and compiled loops, which Chainer cannot
differentiate again. When a backward pass runs with ``enable_double_backprop=True``
(``chainer.config.enable_backprop`` is then on inside ``backward``), the node instead
rebuilds its function from Chainer's differentiable functions on the same inputs and
returns ``chainer.grad`` of that: the plain composition's gradients, graph included.
"""

from collections.abc import Callable, Sequence

import chainer


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
        outputs = list(plain(*inputs))
        pairs = [(y, g) for y, g in zip(outputs, grad_outputs, strict=True) if g is not None]
        grads = chainer.grad(
            [y for y, _ in pairs],
            [inputs[i] for i in indexes],
            grad_outputs=[g for _, g in pairs],
            enable_double_backprop=double,
        )
    return tuple(grads)
