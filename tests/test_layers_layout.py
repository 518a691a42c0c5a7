"""The layout of an activation: channels-last memory chooses the fast path, set once."""

import os
import subprocess
import sys
from pathlib import Path

import chainer
import chainer.links as L
import numpy as np

import layers
from layers import layout

ROOT = Path(__file__).resolve().parents[1]


def test_channels_last_keeps_values_shape_and_gradient(rng):
    x = chainer.Variable(rng.normal(size=(2, 3, 4, 5)))
    assert not layers.is_channels_last(x)
    y = layers.channels_last(x)
    assert layers.is_channels_last(y) and y.shape == x.shape
    np.testing.assert_array_equal(y.array, x.array)
    y.grad = np.ones(y.shape)
    y.backward()
    np.testing.assert_array_equal(x.grad, 1)
    assert layers.channels_last(y) is y  # already channels-last: nothing to do


def test_only_4d_numpy_arrays_are_channels_last():
    assert not layers.is_channels_last(np.zeros((2, 3), np.float32))
    assert not layers.is_channels_last(object())
    assert layers.channels_last(np.zeros((2, 3), np.float32)).shape == (2, 3)


def test_fast_path_off_keeps_every_unit_plain(rng):
    x = rng.normal(size=(2, 3, 4, 4)).astype(np.float32)
    with layers.fast_path(False):
        assert not layers.is_channels_last(layers.channels_last(x))
        # Chainer's own CPU convolution returns channels-last memory; it still stays plain
        y = L.Convolution2D(3, 4, 1)(x)
        assert layers.is_channels_last(y) and not layout.takes_fast_path(y)
    assert layout.takes_fast_path(y)


def test_views_between_the_layouts_are_differentiable(rng):
    x = layers.channels_last(rng.normal(size=(2, 3, 4, 5)))
    h = layout.to_nhwc(x)
    assert h.shape == (2, 4, 5, 3) and h.array.flags.c_contiguous
    assert np.shares_memory(h.array, x.array)  # a view, no copy
    y = layout.to_nchw(h * 2)
    y.grad = np.ones(y.shape)
    y.backward()
    assert layers.is_channels_last(y)


def test_importing_the_packages_changes_nothing_in_the_process():
    """No Numba, no threading variables, no allocator tuning until the fast path runs."""
    code = (
        'import os, sys, layers, squeeze_net\n'
        'from layers import runtime\n'
        "assert 'numba' not in sys.modules, 'numba imported'\n"
        "assert 'NUMBA_THREADING_LAYER' not in os.environ\n"
        'assert runtime.ALLOCATOR_TUNED is None\n'
        'import numpy as np\n'
        'model = squeeze_net.SqueezeNet(10)\n'
        "assert 'numba' not in sys.modules, 'numba imported by the model'\n"
        'model(np.zeros((1, 3, 32, 32), np.float32))\n'
        "assert 'numba' in sys.modules\n"
        "assert os.environ['NUMBA_THREADING_LAYER'] == runtime.preferred_layer()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith('NUMBA_')}
    done = subprocess.run(
        [sys.executable, '-c', code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
