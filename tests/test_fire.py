"""The Fire module."""

import chainer
import numpy as np

from squeeze_net import Fire


def test_fire_concatenates_expand1_then_expand3(rng):
    fire = Fire(8, 3, 5, 7)
    x = rng.normal(size=(2, 8, 6, 6)).astype(np.float32)
    with chainer.using_config('train', False):
        y = fire(x).array
        h = fire.squeeze(x)
        np.testing.assert_allclose(y[:, :5], fire.expand1(h).array, rtol=1e-6)
        np.testing.assert_allclose(y[:, 5:], fire.expand3(h).array, rtol=1e-6)
    assert y.shape == (2, 12, 6, 6)
    assert fire.out_channels == 12


def test_initializer_reaches_every_convolution():
    fire = Fire(8, 3, 5, 7, initialW=chainer.initializers.Constant(0.5))
    for unit in (fire.squeeze, fire.expand1, fire.expand3):
        assert np.all(unit.conv.W.array == 0.5)
