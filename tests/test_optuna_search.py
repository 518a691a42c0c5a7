"""examples/optuna_search.py: trials through build_trainer, weight decay applied, pruning,
chosen on the held-out validation split (the test set only when asked)."""

import json

import pytest
from conftest import write_cifar10

pytest.importorskip('optuna', reason='needs optuna (make install-extras)')
pytest.importorskip('optuna_integration', reason='needs optuna-integration (make install-extras)')

import optuna  # noqa: E402

import trainer  # noqa: E402
from examples import optuna_search  # noqa: E402


@pytest.fixture(scope='module')
def archive(tmp_path_factory):
    return write_cifar10(tmp_path_factory.mktemp('data'))


def options(tmp_path, archive, **overrides):
    values = dict(
        save_path=str(tmp_path / 'search'),
        data=str(archive),
        epoch=1,
        batch=50,
        preset='32',
        workers=0,
        seed=0,
        val_size=20,
    )
    return trainer.TrainOptions.make(**{**values, **overrides})


def test_trials_complete_with_the_sampled_lr_and_weight_decay(tmp_path, archive, capsys):
    argv = ['--trials', '2', '--epochs', '1', '-b', '50', '--data', str(archive)]
    argv += ['--val-size', '0', '--select-on-test']  # chosen on the test set, as asked
    assert optuna_search.main(argv + ['-p', str(tmp_path / 'search')]) == 0
    out = capsys.readouterr().out  # the trainer's epoch lines, then the JSON summary
    result = json.loads(out[out.index('{\n "best"') :])
    assert result['trials'] == {'COMPLETE': 2}
    best = result['best']
    assert optuna_search.LR[0] <= best['lr'] <= optuna_search.LR[1]
    assert optuna_search.WEIGHT_DECAY[0] <= best['weight_decay'] <= optuna_search.WEIGHT_DECAY[1]
    trial = tmp_path / 'search' / f'trial_{best["number"]}'
    log = json.loads((trial / 'log.json').read_text())
    assert best['accuracy'] == log[-1]['validation/main/accuracy']


def test_the_pruning_extension_reports_each_epoch_and_prunes(tmp_path, archive):
    study = optuna_search.search(
        options(tmp_path, archive, epoch=3),
        trials=2,
        pruner=optuna.pruners.ThresholdPruner(lower=1.1),  # no accuracy reaches it
    )
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.PRUNED] * 2
    for t in study.trials:
        assert list(t.intermediate_values) == [1]  # reported after epoch 1, then pruned
        log = json.loads((tmp_path / 'search' / f'trial_{t.number}' / 'log.json').read_text())
        assert [entry['epoch'] for entry in log] == [1]


def test_a_folder_with_earlier_trials_is_refused(tmp_path, archive):
    (tmp_path / 'search' / 'trial_0').mkdir(parents=True)
    with pytest.raises(trainer.OptionError, match='holds the trials of an earlier search'):
        optuna_search.search(options(tmp_path, archive), trials=1)


def test_by_default_the_search_chooses_on_the_held_out_split(tmp_path, archive, capsys):
    argv = ['--trials', '1', '--epochs', '1', '-b', '30', '--data', str(archive)]
    assert optuna_search.main(argv + ['-p', str(tmp_path / 'search')]) == 0
    out = capsys.readouterr().out
    best = json.loads(out[out.index('{\n "best"') :])['best']
    assert best['chosen_on'] == 'val/main/accuracy'
    trial = tmp_path / 'search' / f'trial_{best["number"]}'
    log = json.loads((trial / 'log.json').read_text())
    assert best['accuracy'] == log[-1]['val/main/accuracy']
    assert log[-1]['iteration'] == 3  # 90 of the 100 images train (10 % held out), batch 30


def test_a_search_without_a_split_is_refused_unless_asked(tmp_path, archive):
    with pytest.raises(trainer.OptionError, match='needs a validation split to choose on'):
        optuna_search.search(options(tmp_path, archive, val_size=0), trials=1)
    test_set = options(tmp_path, archive, val_size=0, select_on_test=True)
    assert optuna_search.choice_key(test_set) == 'validation/main/accuracy'
