"""trainer.ema: the average against a hand computation; its evaluator's keys."""

import chainer
import chainer.links as L
import numpy as np
import pytest

from trainer.ema import EMA_NAME, WeightAverage, average_into, check_decay
from trainer.run_folder import EMA_PREFIX


class Net(chainer.Chain):
    def __init__(self):
        super().__init__()
        with self.init_scope():
            self.fc = L.Linear(3, 2)
            self.bn = L.BatchNormalization(2)

    def forward(self, x):
        return self.bn(self.fc(x))


def test_two_steps_equal_the_hand_computation(rng):
    model = Net()
    ema = WeightAverage(model, 0.9)
    w0, mean0 = model.fc.W.array.copy(), model.bn.avg_mean.copy()
    w1, w2 = rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    m1, m2 = np.array([1.0, 2.0]), np.array([3.0, -1.0])
    for w, m, n in ((w1, m1, 5), (w2, m2, 7)):
        model.fc.W.array[...] = w
        model.bn.avg_mean[...] = m
        model.bn.N = n
        ema(None)
    expected_w = 0.9 * (0.9 * w0 + 0.1 * w1) + 0.1 * w2
    expected_mean = 0.9 * (0.9 * mean0 + 0.1 * m1) + 0.1 * m2
    np.testing.assert_allclose(ema.average.fc.W.array, expected_w, rtol=1e-6)
    np.testing.assert_allclose(ema.average.bn.avg_mean, expected_mean, rtol=1e-6)
    assert ema.average.bn.N == 7  # an integer is copied, not averaged
    assert ema.average.fc.W.array is not model.fc.W.array


def test_a_lazy_parameter_takes_the_first_value():
    model, average = L.Linear(None, 2), L.Linear(None, 2)
    model(np.zeros((1, 3), np.float32))
    average_into(average, model, 0.5)
    np.testing.assert_array_equal(average.W.array, model.W.array)


def test_the_snapshot_keeps_the_average_where_the_run_folder_looks():
    assert EMA_PREFIX == f'extensions/{EMA_NAME}/average/'
    ema = WeightAverage(Net(), 0.5)
    arrays = chainer.serializers.npz.serialize(ema)
    assert 'average/fc/W' in arrays and 'average/bn/avg_var' in arrays


@pytest.mark.parametrize('decay', [0, 1, -0.1, 1.5, True, 'x'])
def test_a_decay_outside_0_1_is_refused(decay):
    with pytest.raises(ValueError, match=r'must be a number in \(0, 1\)'):
        check_decay(decay)
