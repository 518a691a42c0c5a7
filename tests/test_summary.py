"""main.py summarize: per-run figures, mean ± sd over runs, settings compared, one-line errors."""

import json
import math
from pathlib import Path

import pytest

import main
from trainer.errors import RunFolderError
from trainer.summary import accuracy, format_text, summarize

SETTINGS = {
    'arch': 'squeezenet',
    'dataset': 'cifar10',
    'class_names': ['a', 'b'],
    'train_images': 100,
    'test_images': 40,
    'preset': '32',
    'batch': 20,
    'lr': 0.1,
    'seed': 0,
}


def write_run(
    folder: Path, accuracies, settings=None, val=None, rate=100.0, step=10.0, ema=None
) -> Path:
    """A run folder whose log has these test accuracies (and val and EMA ones), one per epoch."""
    folder.mkdir(parents=True)
    log = []
    for epoch, value in enumerate(accuracies, 1):
        entry = {
            'epoch': epoch,
            'iteration': 5 * epoch,
            'main/accuracy': value - 0.05,
            'validation/main/accuracy': value,
            'train/images_per_sec': rate + epoch,
            'elapsed_time': step * epoch,
        }
        if val is not None:
            entry['val/main/accuracy'] = val[epoch - 1]
        if ema is not None:
            entry['validation_ema/main/accuracy'] = ema[epoch - 1]
        log.append(entry)
    (folder / 'log.json').write_text(json.dumps(log))
    if settings is not False:
        record = {'format': 1, 'settings': {**SETTINGS, **(settings or {})}, 'sessions': []}
        (folder / 'run.json').write_text(json.dumps(record))
    return folder


def test_figures_of_each_run_and_their_spread(tmp_path):
    a = write_run(tmp_path / 'a', [0.5, 0.7, 0.6], {'seed': 1})
    b = write_run(tmp_path / 'b', [0.4, 0.8, 0.8], {'seed': 2}, rate=200.0, step=20.0)
    summary = summarize([a, b], target=0.7)
    first, second = summary.runs
    assert (first.final_test, first.best_test, first.best_test_epoch) == (0.6, 0.7, 2)
    assert (second.best_test, second.best_test_epoch) == (0.8, 2)  # the first epoch of the best
    assert first.images_per_sec == 102.0 and second.wall_time == 60.0
    assert (first.target_time, first.target_epoch) == (20.0, 2)
    assert (second.target_time, second.target_epoch) == (40.0, 2)
    spread = summary.spread['final_test']
    assert spread.n == 2 and math.isclose(spread.mean, 0.7)
    assert math.isclose(spread.std, math.sqrt(2 * 0.1**2))  # sample sd (n - 1)
    assert summary.spread['best_val'].n == 0
    assert summary.differing == {'seed': [1, 2]} and not summary.shared


def test_text_and_json(tmp_path, capsys):
    a = write_run(tmp_path / 'a', [0.5, 0.7])
    b = write_run(tmp_path / 'b', [0.6, 0.9], {'lr': 0.05})
    assert main.main(['summarize', str(a), str(b), '--target', '85%']) == 0
    text = capsys.readouterr().out
    assert 'mean ± sd (2 runs)' in text and '80.00 ± 14.14 %' in text
    assert '0:20 (epoch 2)' in text and 'not reached' in text and 'to 85.00 %' in text
    assert 'settings differ: lr (0.1 / 0.05)' in text
    assert main.main(['summarize', str(a), str(b), '--json']) == 0
    result = json.loads(capsys.readouterr().out)
    assert [run['final_test'] for run in result['runs']] == [0.7, 0.9]
    assert result['spread']['best_test']['n'] == 2 and result['differing'] == {'lr': [0.1, 0.05]}
    assert result['shared'] is False and result['target'] is None
    assert main.main(['summarize', str(a), str(b), '--markdown']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith('| run | epochs | final test |') and lines[1].startswith('|---|--:|')
    assert lines[2].startswith(f'| {a} | 2 | 70.00 % |') and len(lines[2].split('|')) == 9
    assert lines[4].startswith('| **mean ± sd (2 runs)** |  | **80.00 ± 14.14 %** |')
    assert lines[-1] == 'settings differ: lr (0.1 / 0.05)'
    with pytest.raises(SystemExit):
        main.main(['summarize', str(a), '--json', '--markdown'])


def test_one_run_and_a_validation_split(tmp_path):
    run = write_run(tmp_path / 'a', [0.5, 0.7, 0.6], val=[0.55, 0.65, 0.75])
    summary = summarize([run / 'log.json'])
    [only] = summary.runs
    assert (only.best_val, only.best_val_epoch, only.test_at_best_val) == (0.75, 3, 0.6)
    assert summary.spread['final_test'].std is None
    text = format_text(summary)
    assert 'best val' in text and 'test there' in text and '60.00 %' in text
    assert 'settings' not in text  # nothing to compare with one run


def test_runs_with_the_same_settings_and_one_without_a_record(tmp_path):
    a = write_run(tmp_path / 'a', [0.5])
    b = write_run(tmp_path / 'b', [0.6])
    assert summarize([a, b]).shared
    c = write_run(tmp_path / 'c', [0.7], settings=False)
    summary = summarize([a, b, c])
    assert not summary.shared and summary.unrecorded == [str(c)]
    assert f'no run.json (settings unknown): {c}' in format_text(summary)


@pytest.mark.parametrize(
    'make, message',
    [
        (lambda t: [t / 'nowhere'], 'nowhere: no such run folder'),
        (lambda t: [_mkdir(t / 'empty')], 'empty: no log.json (not a run folder'),
        (lambda t: [_log(t / 'bad', '{"a": 1}')], 'bad/log.json: not a log of this trainer'),
        (lambda t: [_log(t / 'none', '[]')], 'none/log.json: no finished epoch yet'),
        (lambda t: [_log(t / 'n', '[{"epoch": 1}]')], 'n/log.json: no test accuracy'),
        (lambda t: [write_run(t / 'a', [0.5])] * 2, 'given twice'),
        (
            lambda t: [
                write_run(t / 'a', [0.5]),
                write_run(t / 'b', [0.5], {'dataset': 'cifar100'}),
            ],
            'runs of different data sets: ',
        ),
        (
            lambda t: [
                write_run(t / 'a', [0.5]),
                write_run(t / 'b', [0.5], {'dataset': 'folder', 'class_names': ['x', 'y']}),
            ],
            'has dataset cifar10, ',
        ),
    ],
)
def test_wrong_input_is_one_line(tmp_path, make, message, capsys):
    runs = make(tmp_path)
    with pytest.raises(RunFolderError, match='.') as error:
        summarize(runs)
    assert message in str(error.value) and '\n' not in str(error.value)
    assert main.main(['summarize', *map(str, runs)]) == 1
    assert capsys.readouterr().err.strip().count('\n') == 0


def test_accuracy_flag_takes_fractions_and_percentages():
    assert accuracy('0.93') == accuracy('93') == accuracy('93%') == pytest.approx(0.93)
    with pytest.raises(Exception, match='between 0 and 100'):
        accuracy('120')
    with pytest.raises(SystemExit):
        main.main(['summarize'])


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def _log(folder: Path, text: str) -> Path:
    folder.mkdir()
    (folder / 'log.json').write_text(text)
    return folder


def test_the_averaged_weights_accuracy_where_a_run_kept_them(tmp_path):
    a = write_run(tmp_path / 'a', [0.5, 0.7], {'seed': 1}, ema=[0.4, 0.75])
    b = write_run(tmp_path / 'b', [0.6, 0.6], {'seed': 2}, ema=[0.65, 0.55])
    summary = summarize([a, b])
    assert [(r.final_ema, r.best_ema) for r in summary.runs] == [(0.75, 0.75), (0.55, 0.65)]
    assert math.isclose(summary.spread['final_ema'].mean, 0.65)
    text = format_text(summary)
    assert 'final EMA' in text and 'best EMA' in text and '65.00 ± 14.14 %' in text
    plain = format_text(summarize([write_run(tmp_path / 'c', [0.5])]))
    assert 'EMA' not in plain


def test_tables_of_settings_are_compared_entry_by_entry(tmp_path):
    tricks = {'mixup': 0.0, 'ema_decay': 0.0, 'tta': False}
    a = write_run(tmp_path / 'a', [0.5], {'tricks': tricks})
    b = write_run(tmp_path / 'b', [0.6], {'tricks': {**tricks, 'mixup': 0.8, 'tta': True}})
    summary = summarize([a, b])
    assert summary.differing == {'tricks.mixup': [0.0, 0.8], 'tricks.tta': [False, True]}
    assert 'settings differ: tricks.mixup (0.0 / 0.8), tricks.tta (false / true)' in format_text(
        summary
    )
