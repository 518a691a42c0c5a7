"""``layers.workspace``: scratch slots, and large arrays from buffers nothing else uses."""

import chainer_compat  # noqa: F401  (first: it lets Chainer import on NumPy 2)

# isort: split
import chainer
import chainer.links as L
import numpy as np
import pytest

from layers import workspace
from squeeze_net import SqueezeNet


@pytest.fixture(autouse=True)
def empty_pool(monkeypatch):
    monkeypatch.setattr(workspace, 'LARGE', 1 << 12)  # 4 KiB: a tiny model's arrays count
    workspace.release()
    yield
    workspace.release()


def large(shape=(64, 64, 8)):
    return workspace.array(shape, np.float32)  # 128 KiB


def test_counts_references_as_the_pool_expects():
    assert workspace.POOLING  # CPython 3.11 and 3.12, the tested stacks


def test_small_arrays_come_from_the_allocator():
    a = workspace.array((4, 4), np.float32)
    assert a.flags.c_contiguous and a.flags.owndata and a.shape == (4, 4)
    assert not workspace._buffers


def test_a_buffer_in_use_is_never_handed_out_again():
    a = large()
    a[...] = 1
    b = large()
    assert not np.shares_memory(a, b)
    view = a.reshape(-1)[::2]  # a view keeps the buffer in use after the array is gone
    del a
    c = large()
    assert not np.shares_memory(view, c) and not np.shares_memory(b, c)
    c[...] = 2
    assert (view == 1).all()


def test_a_buffer_nothing_refers_to_is_reused_for_a_smaller_array():
    a = large((64, 64, 8))
    address = a.__array_interface__['data'][0]
    del a
    b = large((64, 64, 5))  # at least half the buffer's size: reused
    assert b.__array_interface__['data'][0] == address
    assert b.shape == (64, 64, 5) and b.flags.c_contiguous and b.dtype == np.float32
    del b
    c = large((64, 64, 3))  # under half: a buffer of its own
    assert c.__array_interface__['data'][0] != address


def test_at_most_keep_free_unused_buffers_stay():
    arrays = [large((64, 64, 8 + i)) for i in range(5)]
    assert len(workspace._buffers) == 5
    del arrays
    kept = large((64, 64, 40))  # fits none of them: they are dropped down to KEEP_FREE - 1
    assert len(workspace._unused()) == workspace.KEEP_FREE - 1
    assert len(workspace._buffers) == workspace.KEEP_FREE
    workspace.release()  # drops the unused ones, never one in use
    assert len(workspace._buffers) == 1
    assert np.shares_memory(kept, workspace._buffers[0])


def test_a_kept_gradient_survives_later_steps(rng):
    """A leaf's .grad and the outputs a caller keeps are never overwritten by later steps."""
    model = SqueezeNet(10)
    x = chainer.Variable(rng.normal(size=(2, 3, 32, 32)).astype(np.float32))
    t = np.array([1, 2], np.int32)
    classifier = L.Classifier(model)
    loss = classifier(x, t)
    loss.backward()
    kept_grad, kept_logits = x.grad.copy(), classifier.y.array.copy()
    grad_array, logits = x.grad, classifier.y
    assert grad_array is not None and workspace._buffers  # the step used the pool
    for _ in range(2):
        classifier.cleargrads()
        other = chainer.Variable(rng.normal(size=x.shape).astype(np.float32))
        classifier(other, t).backward()
    np.testing.assert_array_equal(grad_array, kept_grad)
    np.testing.assert_array_equal(logits.array, kept_logits)
