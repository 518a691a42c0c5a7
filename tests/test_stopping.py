"""trainer.stopping: Chainer's EarlyStoppingTrigger on a real trainer, and its resume."""

import logging
import warnings

import chainer
import chainer.links as L
import numpy as np
import pytest
from chainer import iterators, training
from chainer.datasets import TupleDataset
from chainer.training import extension, extensions
from chainer.training.triggers import EarlyStoppingTrigger

from trainer.stopping import StoppingError, check_choice_key, make_early_stopping, mode_of

LOSSES = [5.0, 4.0, 3.0, 3.5, 3.2, 3.1, 2.0, 1.0]  # best at epoch 3, then 3 epochs worse


class Scripted(extension.Extension):
    """Reports ``values[epoch - 1]`` under ``key`` at each epoch's end, as an evaluator would."""

    trigger = (1, 'epoch')
    priority = extension.PRIORITY_WRITER

    def __init__(self, key, values):
        self.key, self.values = key, values

    def __call__(self, trainer):
        chainer.reporter.report({self.key: self.values[trainer.updater.epoch - 1]})


def tiny_trainer(stop, out, key='validation/main/loss', values=LOSSES):
    x = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    data = TupleDataset(x, (x[:, 0] > 0).astype(np.int32))
    optimizer = chainer.optimizers.SGD(0.01)
    optimizer.setup(L.Classifier(L.Linear(3, 2)))
    updater = training.updaters.StandardUpdater(iterators.SerialIterator(data, 10), optimizer)
    trainer = training.Trainer(updater, stop, out=str(out))  # never ./result
    trainer.extend(Scripted(key, values))
    trainer.extend(extensions.LogReport(filename=None))
    return trainer


def epochs_trained(trainer):
    return trainer.updater.epoch


def test_it_is_chainers_trigger_with_the_mode_from_the_key():
    trigger = make_early_stopping('validation/main/loss', patience=3, max_epochs=10)
    assert isinstance(trigger, EarlyStoppingTrigger)
    assert (trigger.monitor, trigger.patience, trigger.mode) == ('validation/main/loss', 3, 'min')
    assert trigger.get_training_length() == (10, 'epoch')
    assert mode_of('validation/main/accuracy') == 'max'
    assert mode_of('main/loss') == 'min'
    assert make_early_stopping('lr', 1, 5, mode='max').mode == 'max'


def test_stops_after_patience_epochs_without_improvement(tmp_path, caplog):
    trigger = make_early_stopping('validation/main/loss', patience=3, max_epochs=8)
    trainer = tiny_trainer(trigger, tmp_path)
    with caplog.at_level(logging.INFO, logger='trainer.stopping'):
        trainer.run()
    assert epochs_trained(trainer) == 6  # best at 3; 4, 5 and 6 are worse
    assert caplog.messages == [
        'early stopping after epoch 6 of 8: validation/main/loss has not improved for 3 '
        'epochs (--patience 3; best 3, in epoch 3)'
    ]
    assert [p.name for p in tmp_path.iterdir()] == ['log']  # LogReport's, here, not ./result


def test_an_accuracy_must_rise(tmp_path):
    accuracies = [0.1, 0.5, 0.4, 0.6, 0.55, 0.5, 0.7, 0.8]
    trigger = make_early_stopping('validation/main/accuracy', patience=2, max_epochs=8)
    trainer = tiny_trainer(trigger, tmp_path, 'validation/main/accuracy', accuracies)
    trainer.run()
    assert epochs_trained(trainer) == 6 and trigger.best == 0.6


def test_stops_at_max_epochs_while_improving(tmp_path, caplog):
    trigger = make_early_stopping('validation/main/loss', patience=1, max_epochs=3)
    trainer = tiny_trainer(trigger, tmp_path)
    with caplog.at_level(logging.INFO, logger='trainer.stopping'):
        trainer.run()
    assert caplog.messages == []  # the epochs asked for: no early stop to announce
    assert epochs_trained(trainer) == 3


def test_a_resumed_run_stops_where_an_uninterrupted_one_does(tmp_path):
    whole = tiny_trainer(
        make_early_stopping('validation/main/loss', patience=3, max_epochs=8), tmp_path
    )
    whole.run()
    first = tiny_trainer(
        make_early_stopping('validation/main/loss', patience=3, max_epochs=4), tmp_path
    )
    first.run()  # stopped by its epoch limit after epoch 4, one worse epoch counted
    chainer.serializers.save_npz(str(tmp_path / 'snapshot'), first)
    resumed = tiny_trainer(
        make_early_stopping('validation/main/loss', patience=3, max_epochs=8), tmp_path
    )
    chainer.serializers.load_npz(str(tmp_path / 'snapshot'), resumed)
    log = resumed.get_extension('LogReport').log
    assert [entry['epoch'] for entry in log] == [1, 2, 3, 4]
    assert resumed.stop_trigger.resume(log, resumed.updater.iteration) is False
    assert (resumed.stop_trigger.best, resumed.stop_trigger.count) == (3.0, 1)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # no "not in observation" warning at the restart
        resumed.run()
    assert epochs_trained(resumed) == epochs_trained(whole) == 6


def test_a_run_that_had_stopped_stops_again_at_once(tmp_path):
    trigger = make_early_stopping('validation/main/loss', patience=3, max_epochs=20)
    log = [{'epoch': i + 1, 'validation/main/loss': v} for i, v in enumerate(LOSSES[:6])]
    log.insert(2, {'epoch': 2.5})  # an entry without the key is not a check
    assert trigger.resume(log, iteration=12) is True
    trainer = tiny_trainer(trigger, tmp_path)
    trainer.run()
    assert epochs_trained(trainer) == 0


@pytest.mark.parametrize(
    ('key', 'patience', 'mode', 'message'),
    [
        ('lr', 3, None, 'cannot tell whether it should fall or rise'),
        ('main/loss', 0, None, '--patience 0: must be 1 or more'),
        ('main/loss', 2, 'down', "mode 'down': choose min or max"),
    ],
)
def test_unusable_settings_are_one_line(key, patience, mode, message):
    with pytest.raises(StoppingError, match=message):
        make_early_stopping(key, patience, 10, mode)


@pytest.mark.parametrize(
    ('key', 'has_val', 'message'),
    [
        ('validation/main/loss', True, 'that is the test set.*watch val/main/loss'),
        ('validation/main/accuracy', False, 'hold out a split with --val-size'),
        ('val/main/loss', False, 'this run has no validation split'),
    ],
)
def test_choosing_on_the_test_set_or_a_missing_split_is_refused(key, has_val, message):
    with pytest.raises(StoppingError, match=message):
        check_choice_key(key, has_val)


def test_the_split_the_training_set_or_the_test_set_when_asked_are_allowed():
    check_choice_key('val/main/accuracy', has_val=True)
    check_choice_key('main/loss', has_val=False)
    check_choice_key('validation/main/loss', has_val=False, select_on_test=True)
