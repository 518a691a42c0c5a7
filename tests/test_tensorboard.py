"""trainer.tensorboard: every logged number lands in the event file, once per epoch."""

import struct
import sys
from collections import defaultdict

import chainer
import chainer.links as L
import numpy as np
import pytest
from chainer import iterators, training
from chainer.datasets import TupleDataset
from chainer.training import extensions

from trainer.extras import MissingExtraError
from trainer.tensorboard import TensorBoardReport, scalars

EXTRA = 'needs tensorboardX (make install-extras)'


def read_scalars(logdir) -> dict:
    """tag -> [(step, value)] from the TFRecord event files of ``logdir``, in write order."""
    from tensorboardX.proto import event_pb2

    found = defaultdict(list)
    for path in sorted(logdir.glob('events.out.tfevents.*')):
        data, position = path.read_bytes(), 0
        while position < len(data):
            (length,) = struct.unpack('<Q', data[position : position + 8])
            position += 12  # the length and its CRC
            event = event_pb2.Event.FromString(data[position : position + length])
            position += length + 4  # the record and its CRC
            for value in event.summary.value:
                found[value.tag].append((event.step, value.simple_value))
    return dict(found)


def tiny_trainer(out, epochs=3):
    """A real Chainer trainer: a linear classifier, evaluation, LogReport each epoch."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    data = TupleDataset(x, y)
    model = L.Classifier(L.Linear(4, 2))
    optimizer = chainer.optimizers.SGD(0.1)
    optimizer.setup(model)
    updater = training.updaters.StandardUpdater(iterators.SerialIterator(data, 10), optimizer)
    trainer = training.Trainer(updater, (epochs, 'epoch'), out=str(out))
    test = iterators.SerialIterator(data, 20, repeat=False, shuffle=False)
    trainer.extend(extensions.Evaluator(test, model))
    trainer.extend(extensions.LogReport(filename=None))
    trainer.extend(extensions.observe_lr())
    return trainer


def test_every_logged_number_is_a_scalar_per_epoch(tmp_path):
    pytest.importorskip('tensorboardX', reason=EXTRA)
    trainer = tiny_trainer(tmp_path / 'out')
    trainer.extend(TensorBoardReport(tmp_path / 'tb'))
    trainer.run()
    log = trainer.get_extension('LogReport').log
    found = read_scalars(tmp_path / 'tb')
    keys = {k for k in log[0] if k != 'epoch'}
    assert keys >= {'main/loss', 'validation/main/accuracy', 'lr', 'iteration', 'elapsed_time'}
    assert set(found) == keys
    for key in keys:
        assert [step for step, _ in found[key]] == [1, 2, 3]
        np.testing.assert_allclose([v for _, v in found[key]], [e[key] for e in log], rtol=1e-6)


def test_only_finite_real_numbers_are_scalars():
    entry = {
        'epoch': 2,
        'main/loss': np.float32(0.5),
        'iteration': 10,
        'validation/confusion': [[1, 0], [0, 1]],
        'flag': True,
        'nan': float('nan'),
        'name': 'x',
    }
    assert scalars(entry) == {'main/loss': 0.5, 'iteration': 10.0}


class FakeTrainer:
    """What the extension reads of a trainer: its LogReport's log."""

    def __init__(self, log):
        self.log = log

    def get_extension(self, name):
        assert name == 'LogReport'
        return self


def test_a_resumed_run_appends_only_new_epochs(tmp_path):
    pytest.importorskip('tensorboardX', reason=EXTRA)
    log = [{'epoch': 1, 'main/loss': 3.0}, {'epoch': 2, 'main/loss': 2.0}]
    first = TensorBoardReport(tmp_path)
    trainer = FakeTrainer(log[:1])
    first.initialize(trainer)
    trainer.log = log
    first(trainer)
    first.finalize()
    resumed = TensorBoardReport(tmp_path)  # the same directory: epochs 1 and 2 are there
    trainer.log = log + [{'epoch': 3, 'main/loss': 1.0}]
    resumed.initialize(FakeTrainer(log))
    resumed(trainer)
    resumed.finalize()
    assert read_scalars(tmp_path)['main/loss'] == [(1, 3.0), (2, 2.0), (3, 1.0)]


def test_a_new_directory_gets_the_runs_history(tmp_path):
    pytest.importorskip('tensorboardX', reason=EXTRA)
    report = TensorBoardReport(tmp_path / 'new')
    report.initialize(FakeTrainer([{'epoch': 1, 'main/loss': 3.0}, {'epoch': 2, 'main/loss': 2.0}]))
    report.finalize()
    assert read_scalars(tmp_path / 'new')['main/loss'] == [(1, 3.0), (2, 2.0)]


def test_a_missing_tensorboardx_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'tensorboardX', None)
    with pytest.raises(MissingExtraError, match='TensorBoard logging needs the tensorboardX'):
        TensorBoardReport(tmp_path).initialize(FakeTrainer([]))
