"""``layers.graph.apply``: a fast-path node's forward without ``FunctionNode.apply`` where no
graph is built, Chainer's own apply wherever something could observe the difference."""

import chainer
import numpy as np
import pytest
from chainer.utils import type_check

from layers import graph
from layers.conv_nhwc import Branch, ConvolutionsNHWC


@pytest.fixture
def conv(rng):
    x = rng.normal(size=(2, 5, 5, 4)).astype(np.float32)
    w = chainer.Parameter(rng.normal(size=(6, 4, 3, 3)).astype(np.float32))
    return x, w


def test_without_a_graph_the_forward_runs_directly(conv, monkeypatch):
    x, w = conv
    applied = []
    monkeypatch.setattr(ConvolutionsNHWC, 'apply', lambda *a: applied.append(1))
    with chainer.no_backprop_mode():
        (y,) = graph.apply(ConvolutionsNHWC((Branch(1, 1, bias=False),)), (x, w))
    assert applied == [] and isinstance(y, chainer.Variable) and not y.requires_grad
    monkeypatch.undo()
    with chainer.no_backprop_mode():
        (expected,) = ConvolutionsNHWC((Branch(1, 1, bias=False),)).apply((x, w))
    np.testing.assert_array_equal(y.array, expected.array)


def test_a_graph_or_a_hook_goes_through_apply(conv):
    x, w = conv
    (y,) = graph.apply(ConvolutionsNHWC((Branch(1, 1, bias=False),)), (x, w))
    assert y.creator is not None  # a graph: Chainer's apply built it
    timer = chainer.function_hooks.TimerHook()
    with chainer.no_backprop_mode(), timer:
        graph.apply(ConvolutionsNHWC((Branch(1, 1, bias=False),)), (x, w))
    assert [name for name, _ in timer.call_history] == ['ConvolutionsNHWC']


def test_the_type_checks_still_run(conv):
    x, w = conv
    with chainer.no_backprop_mode(), pytest.raises(type_check.InvalidType):
        graph.apply(ConvolutionsNHWC((Branch(1, 1, bias=False),)), (x[..., :3], w))
