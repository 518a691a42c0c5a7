"""How much the results of several runs vary: ``main.py summarize RUN [RUN ...]``.

One run's final accuracy is not a result (airbench reports the mean of many runs; re-runs
of CIFAR repos differ from their READMEs by 0.3 to 1.8 points). ``summarize`` reads each
run folder's ``log.json`` and ``run.json`` (``trainer.run_folder``) and gives, per run and
as mean ± standard deviation over the runs: the final and best test accuracy and the epoch
of the best (and the same for a held-out validation split, where the log has one, and the
final and best test accuracy of the averaged weights, where the run kept them), the
training images/s, the wall time, and the time and epoch at which the test accuracy first
reached ``target``. It says whether the runs share their settings and names the keys that
differ. Runs of different data sets are refused: their accuracies do not average.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from trainer.errors import RunFolderError
from trainer.run_folder import LOG_FILE, RUN_FILE

# The test set's accuracy as logged (``validation/...``, Chainer's evaluator's name for it;
# ``test/...`` should the keys be renamed), and a held-out validation split's.
TEST_KEYS = ('test/main/accuracy', 'validation/main/accuracy')
VAL_KEYS = ('val/main/accuracy',)
# The test accuracy of the averaged weights (``--ema-decay``), where the run kept them.
EMA_KEYS = ('test_ema/main/accuracy', 'validation_ema/main/accuracy')
# Settings that say which data set a run measured: runs must agree on them.
DATA_KEYS = ('dataset', 'class_names', 'test_images')
# Settings every run has its own of, and that say nothing about the recipe.
OWN_KEYS = ()


@dataclass(frozen=True)
class RunSummary:
    """One run's figures (accuracies as fractions, times in seconds; None: not logged).

    Args:
        path: the run folder.
        epochs: epochs finished.
        final_test, best_test, best_test_epoch: the last epoch's test accuracy, the best
            and its epoch.
        final_val, best_val, best_val_epoch: the same for a validation split, if logged.
        test_at_best_val: the test accuracy at the epoch of the best validation accuracy
            (the number to report when the epoch is chosen).
        final_ema, best_ema: the averaged weights' final and best test accuracy, if logged.
        images_per_sec: mean training images/s over the epochs.
        wall_time: elapsed time at the last epoch (all sessions of a resumed run).
        target_time, target_epoch: when the test accuracy first reached the target.
        settings: run.json's settings (empty without a run.json).
    """

    path: str
    epochs: int
    final_test: float
    best_test: float
    best_test_epoch: int
    final_val: float | None
    best_val: float | None
    best_val_epoch: int | None
    test_at_best_val: float | None
    final_ema: float | None
    best_ema: float | None
    images_per_sec: float | None
    wall_time: float | None
    target_time: float | None
    target_epoch: int | None
    settings: dict


@dataclass(frozen=True)
class Spread:
    """Mean and sample standard deviation of a figure over the runs that have it."""

    mean: float | None
    std: float | None
    n: int


@dataclass(frozen=True)
class Summary:
    """Every run's figures, their spread over the runs, and how the settings compare.

    Args:
        runs: each run's figures, in the order given.
        spread: figure name (a ``RunSummary`` field) -> its ``Spread``.
        target: the accuracy of ``target_time`` (None: not asked).
        differing: setting -> its value in each run, for the settings that differ.
        unrecorded: runs without a ``run.json`` (their settings are unknown).
    """

    runs: list[RunSummary]
    spread: dict[str, Spread]
    target: float | None
    differing: dict[str, list]
    unrecorded: list[str]

    @property
    def shared(self) -> bool:
        """True when every run has a record and they agree on every setting."""
        return not self.differing and not self.unrecorded


ACCURACIES = (
    'final_test', 'best_test', 'final_val', 'best_val', 'test_at_best_val', 'final_ema', 'best_ema'
)  # fmt: skip
"""The figures that are accuracies (shown in %)."""

FIGURES = (
    'final_test',
    'best_test',
    'best_test_epoch',
    'final_val',
    'best_val',
    'best_val_epoch',
    'test_at_best_val',
    'final_ema',
    'best_ema',
    'images_per_sec',
    'wall_time',
    'target_time',
    'target_epoch',
)


def summarize(runs: list[str | os.PathLike], target: float | None = None) -> Summary:
    """Summarize the run folders ``runs`` (or their ``log.json`` files).

    Raises RunFolderError with one line for a path that is not a finished run (no folder,
    no ``log.json``, no finished epoch, no test accuracy), a run given twice, or runs of
    different data sets.
    """
    if not runs:
        raise RunFolderError('no run folders given')
    if target is not None and not 0 < target <= 1:
        raise RunFolderError(f'target accuracy {target} is not in (0, 1]')
    folders = [_folder(Path(run)) for run in runs]
    seen = {}
    for folder in folders:
        key = folder.resolve()
        if key in seen:
            raise RunFolderError(f'{folder}: given twice (as {seen[key]} too)')
        seen[key] = folder
    summaries = [read_run(folder, target) for folder in folders]
    _check_same_data(summaries)
    spread = {name: _spread([getattr(s, name) for s in summaries]) for name in FIGURES}
    recorded = [s for s in summaries if s.settings]
    unrecorded = [s.path for s in summaries if not s.settings]
    return Summary(summaries, spread, target, _differing(recorded), unrecorded)


def read_run(folder: Path, target: float | None = None) -> RunSummary:
    """One run's figures from its ``log.json`` (and ``run.json``, if there is one)."""
    log = _read_log(folder)
    test_key = _key(log, TEST_KEYS)
    if test_key is None:
        raise RunFolderError(f'{folder / LOG_FILE}: no test accuracy ({TEST_KEYS[-1]}) logged')
    tests = [(e['epoch'], e[test_key]) for e in log if test_key in e]
    best_test_epoch, best_test = max(tests, key=lambda pair: (pair[1], -pair[0]))
    val_key = _key(log, VAL_KEYS)
    vals = [(e['epoch'], e[val_key]) for e in log if val_key in e] if val_key else []
    best_val_epoch, best_val = max(vals, key=lambda p: (p[1], -p[0])) if vals else (None, None)
    by_epoch = {e['epoch']: e for e in log}
    test_at_best_val = by_epoch[best_val_epoch].get(test_key) if vals else None
    ema_key = _key(log, EMA_KEYS)
    emas = [e[ema_key] for e in log if ema_key in e] if ema_key else []
    rates = [e['train/images_per_sec'] for e in log if 'train/images_per_sec' in e]
    reached = next((e for e in log if target is not None and e.get(test_key, 0) >= target), None)
    return RunSummary(
        path=str(folder),
        epochs=log[-1]['epoch'],
        final_test=tests[-1][1],
        best_test=best_test,
        best_test_epoch=best_test_epoch,
        final_val=vals[-1][1] if vals else None,
        best_val=best_val,
        best_val_epoch=best_val_epoch,
        test_at_best_val=test_at_best_val,
        final_ema=emas[-1] if emas else None,
        best_ema=max(emas) if emas else None,
        images_per_sec=sum(rates) / len(rates) if rates else None,
        wall_time=log[-1].get('elapsed_time'),
        target_time=reached.get('elapsed_time') if reached else None,
        target_epoch=reached['epoch'] if reached else None,
        settings=_read_settings(folder),
    )


def _folder(path: Path) -> Path:
    """The run folder of ``path`` (a run folder, or its log.json or run.json)."""
    if path.is_file() and path.name in (LOG_FILE, RUN_FILE):
        path = path.parent
    if not path.exists():
        raise RunFolderError(f'{path}: no such run folder')
    if not path.is_dir():
        raise RunFolderError(f'{path}: not a run folder (give the folder of a run, -p)')
    return path


def _read_log(folder: Path) -> list[dict]:
    path = folder / LOG_FILE
    if not path.is_file():
        raise RunFolderError(
            f'{folder}: no {LOG_FILE} (not a run folder, or no epoch has finished yet)'
        )
    try:
        log = json.loads(path.read_text())
        if not isinstance(log, list) or not all(
            isinstance(e, dict) and isinstance(e.get('epoch'), int) for e in log
        ):
            raise ValueError('not a list of epochs')
    except (OSError, ValueError) as error:
        raise RunFolderError(f'{path}: not a log of this trainer ({error})') from None
    if not log:
        raise RunFolderError(f'{path}: no finished epoch yet')
    return log


def _read_settings(folder: Path) -> dict:
    path = folder / RUN_FILE
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text())
        settings = record['settings']
        if not isinstance(settings, dict):
            raise ValueError('no settings')
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise RunFolderError(f'{path}: not a run record of this trainer ({error})') from None
    return settings


def _key(log: list[dict], keys: tuple[str, ...]) -> str | None:
    return next((key for key in keys if any(key in entry for entry in log)), None)


def _check_same_data(runs: list[RunSummary]) -> None:
    """Refuse runs that measured different data sets (one line, naming two of them)."""
    recorded = [run for run in runs if run.settings]
    for key in DATA_KEYS:
        values = [(run, run.settings.get(key)) for run in recorded if key in run.settings]
        for run, value in values[1:]:
            first, first_value = values[0]
            if value != first_value:
                raise RunFolderError(
                    f'runs of different data sets: {first.path} has {key} '
                    f'{_short(first_value)}, {run.path} has {_short(value)}; summarize runs '
                    'of one data set'
                )


def _differing(runs: list[RunSummary]) -> dict[str, list]:
    """Setting -> each run's value, for the settings that differ; a setting that is a table
    (``tricks``, ``model_options``) is compared entry by entry (``tricks.mixup``)."""
    flat = [_flatten(run.settings) for run in runs]
    keys = sorted({key for settings in flat for key in settings} - set(OWN_KEYS))
    return {
        key: [settings.get(key) for settings in flat]
        for key in keys
        if any(settings.get(key) != flat[0].get(key) for settings in flat)
    }


def _flatten(settings: dict) -> dict:
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            flat.update({f'{key}.{inner}': v for inner, v in value.items()})
        else:
            flat[key] = value
    return flat


def _spread(values: list) -> Spread:
    values = [v for v in values if v is not None]
    if not values:
        return Spread(None, None, 0)
    mean = sum(values) / len(values)
    if len(values) < 2:
        return Spread(mean, None, 1)
    variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return Spread(mean, math.sqrt(variance), len(values))


def _short(value, width: int = 60) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= width else text[: width - 3] + '...'


# --- output -----------------------------------------------------------------------------


def format_json(summary: Summary) -> str:
    """The summary as JSON: runs, spread, target, shared, differing, unrecorded."""
    return json.dumps(
        {
            'runs': [asdict(run) for run in summary.runs],
            'spread': {name: asdict(s) for name, s in summary.spread.items()},
            'target': summary.target,
            'shared': summary.shared,
            'differing': summary.differing,
            'unrecorded': summary.unrecorded,
        },
        indent=1,
    )


def format_text(summary: Summary) -> str:
    """A table: one row per run, then mean ± sd over the runs, then how the settings compare."""
    header, rows, spread = _table(summary)
    table = [header, *rows, spread]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = [
        '  '.join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in table
    ]
    lines.insert(1, '  '.join('-' * w for w in widths))
    lines.insert(len(lines) - 1, '  '.join('-' * w for w in widths))
    lines.append(_settings_text(summary))
    return '\n'.join(line.rstrip() for line in lines)


def format_markdown(summary: Summary) -> str:
    """The text table as Markdown (for a README), the spread row in bold, then the settings
    line as a paragraph."""
    header, rows, spread = _table(summary)
    spread = [f'**{cell}**' if cell else '' for cell in spread]
    lines = [
        '| ' + ' | '.join(header) + ' |',
        '|' + '|'.join(['---'] + ['--:'] * (len(header) - 1)) + '|',
        *('| ' + ' | '.join(_escape(cell) for cell in row) + ' |' for row in [*rows, spread]),
    ]
    settings = _settings_text(summary)
    return '\n'.join(lines) + (f'\n\n{settings}' if settings else '')


def _escape(cell: str) -> str:
    return cell.replace('|', '\\|')


def _table(summary: Summary) -> tuple[list[str], list[list[str]], list[str]]:
    """The header, one row of cells per run and the mean ± sd row."""
    has_val = summary.spread['best_val'].n > 0
    columns = [
        ('epochs', lambda r: str(r.epochs), None),
        ('final test', lambda r: _pct(r.final_test), 'final_test'),
        ('best test', lambda r: _pct(r.best_test), 'best_test'),
        ('at epoch', lambda r: str(r.best_test_epoch), 'best_test_epoch'),
    ]
    if has_val:
        columns += [
            ('final val', lambda r: _pct(r.final_val), 'final_val'),
            ('best val', lambda r: _pct(r.best_val), 'best_val'),
            ('at epoch', lambda r: _int(r.best_val_epoch), 'best_val_epoch'),
            ('test there', lambda r: _pct(r.test_at_best_val), 'test_at_best_val'),
        ]
    if summary.spread['final_ema'].n > 0:
        columns += [
            ('final EMA', lambda r: _pct(r.final_ema), 'final_ema'),
            ('best EMA', lambda r: _pct(r.best_ema), 'best_ema'),
        ]
    columns += [
        ('images/s', lambda r: _num(r.images_per_sec), 'images_per_sec'),
        ('wall time', lambda r: _time(r.wall_time), 'wall_time'),
    ]
    if summary.target is not None:
        columns.append(
            (f'to {_pct(summary.target)}', lambda r: _reached(r), 'target_time'),
        )
    rows = [[run.path] + [show(run) for _, show, _ in columns] for run in summary.runs]
    n = len(summary.runs)
    spread = [f'mean ± sd ({n} run{"s" if n != 1 else ""})']
    for _, _, name in columns:
        spread.append(_spread_text(name, summary.spread.get(name), n))
    return ['run'] + [title for title, _, _ in columns], rows, spread


def _spread_text(name: str | None, spread: Spread | None, runs: int) -> str:
    if name is None or spread is None or spread.mean is None:
        return ''
    if name in ACCURACIES:
        mean, std = 100 * spread.mean, None if spread.std is None else 100 * spread.std
        text = f'{mean:.2f}' + ('' if std is None else f' ± {std:.2f}') + ' %'
    elif name == 'wall_time' or name == 'target_time':
        text = _time(spread.mean) + ('' if spread.std is None else f' ± {_time(spread.std)}')
    else:
        text = f'{spread.mean:.1f}' + ('' if spread.std is None else f' ± {spread.std:.1f}')
    if spread.n < runs:
        text += f' ({spread.n} of {runs})'
    return text


def _settings_text(summary: Summary) -> str:
    if len(summary.runs) < 2:
        return ''
    parts = []
    if summary.differing:
        keys = ', '.join(
            f'{key} ({" / ".join(_short(v, 20) for v in values)})'
            for key, values in summary.differing.items()
        )
        parts.append(f'settings differ: {keys}')
    elif len(summary.runs) > len(summary.unrecorded):
        parts.append('settings: the same in every recorded run')
    if summary.unrecorded:
        parts.append(f'no {RUN_FILE} (settings unknown): {", ".join(summary.unrecorded)}')
    return '\n'.join(parts)


def _pct(value: float | None) -> str:
    return '-' if value is None else f'{100 * value:.2f} %'


def _int(value: int | None) -> str:
    return '-' if value is None else str(value)


def _num(value: float | None) -> str:
    return '-' if value is None else f'{value:.1f}'


def _time(seconds: float | None) -> str:
    if seconds is None:
        return '-'
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f'{hours}:{minutes:02d}:{secs:02d}' if hours else f'{minutes}:{secs:02d}'


def _reached(run: RunSummary) -> str:
    if run.target_time is None:
        return 'not reached' if run.target_epoch is None else f'epoch {run.target_epoch}'
    return f'{_time(run.target_time)} (epoch {run.target_epoch})'


# --- the command line -------------------------------------------------------------------


def accuracy(text: str) -> float:
    """An accuracy flag's value: a fraction (0.93) or a percentage (93 or 93%)."""
    try:
        value = float(text.rstrip('%'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is not an accuracy (0.93, 93 or 93%)') from None
    value = value / 100 if text.endswith('%') or value > 1 else value
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f'{text!r} is not an accuracy between 0 and 100 %')
    return value


def build_parser(prog: str = 'summarize') -> argparse.ArgumentParser:
    """The flags of ``main.py summarize``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description='Final and best accuracies, their epochs, images/s and wall time of each '
        'run, and mean ± standard deviation over the runs.',
    )
    parser.add_argument('runs', nargs='+', metavar='RUN', help='run folders (-p of each run)')
    parser.add_argument(
        '--target',
        type=accuracy,
        help='also the wall time and epoch at which the test accuracy first reached this '
        '(0.93, 93 or 93%%)',
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument(
        '--json', dest='format', action='store_const', const='json', help='print JSON'
    )
    output.add_argument(
        '--markdown',
        dest='format',
        action='store_const',
        const='markdown',
        help='print the table as Markdown (for a README)',
    )
    return parser
