"""The plots of a run, drawn from its log: ``loss.jpg``, ``accuracy.jpg``, ``confusion.jpg``.

Drawn from the whole log each time, so a resumed run's plots show every epoch; each image
is written to a temporary file and renamed, never left half-written. Made to be read at a
glance: the loss axis is logarithmic (a test loss of 100+ in the first epochs no longer
flattens the rest into a line), the x axis shows whole epochs even for a one-epoch run,
the epochs where the lr drops are marked, and the confusion matrix of the last evaluated
epoch is an image of its own. With a held-out split (``--val-size``) its curve, labelled
validation, is drawn beside the train and test curves, and with averaged weights
(``--ema-decay``) their test curve too. (Chainer's PlotReport draws no axis
labels and writes only under the trainer's out.)
"""

from functools import partial
from pathlib import Path

from trainer.run_folder import write_atomically

# (key, label): the test set's keys are validation/..., the held-out split's val/...
CURVES = {
    'loss.jpg': (
        'loss',
        [
            ('main/loss', 'train'),
            ('val/main/loss', 'validation'),
            ('validation/main/loss', 'test'),
            ('validation_ema/main/loss', 'test, averaged weights'),
        ],
        'log',
    ),
    'accuracy.jpg': (
        'accuracy',
        [
            ('main/accuracy', 'train'),
            ('val/main/accuracy', 'validation'),
            ('validation/main/accuracy', 'test'),
            ('validation_ema/main/accuracy', 'test, averaged weights'),
        ],
        'linear',
    ),
}
CONFUSION = 'confusion.jpg'
PER_CLASS = 'validation/main/accuracy/'


def draw(folder: Path, log: list[dict]) -> None:
    """Draw every plot from ``log`` (LogReport entries) into ``folder``."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    for file_name, (ylabel, series, scale) in CURVES.items():
        figure, axes = plt.subplots(figsize=(6, 4), dpi=100)
        _curves(axes, log, series, ylabel, scale)
        _save(plt, figure, folder / file_name)
    confusion = [entry for entry in log if 'validation/confusion' in entry]
    if confusion:
        figure = _confusion(plt, confusion[-1])
        _save(plt, figure, folder / CONFUSION)


def lr_drops(log: list[dict]) -> list[int]:
    """Epochs after which the lr was divided by about 10 (the next epoch ran at a fifth to
    a twentieth of it): the step schedule's drops; a cosine schedule's gradual fall (or its
    warm-up) marks nothing."""
    rates = [(entry['epoch'], entry['lr']) for entry in log if 'lr' in entry]
    return [
        epoch
        for (epoch, lr), (_, next_lr) in zip(rates, rates[1:], strict=False)
        if lr > 0 and 0.05 <= next_lr / lr <= 0.2
    ]


def _curves(axes, log: list[dict], series: list, ylabel: str, scale: str) -> None:
    from matplotlib.ticker import FormatStrFormatter, MaxNLocator, NullFormatter

    values = []
    for key, label in series:
        points = [(entry['epoch'], entry[key]) for entry in log if key in entry]
        if points:
            axes.plot(*zip(*points, strict=True), marker='.', label=label)
            values += [value for _, value in points]
    if scale == 'log' and values and min(values) > 0:
        axes.set_yscale('log')
        if max(values) / min(values) < 100:  # under two decades: plain numbers as ticks
            axes.yaxis.set_major_locator(MaxNLocator(nbins=8))
            axes.yaxis.set_major_formatter(FormatStrFormatter('%.3g'))
            axes.yaxis.set_minor_formatter(NullFormatter())
    last = max((entry['epoch'] for entry in log), default=1)
    axes.set_xlim(0.5, last + 0.5)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    for i, epoch in enumerate(lr_drops(log)):
        axes.axvline(
            epoch + 0.5,
            color='grey',
            linestyle='--',
            linewidth=1,
            label='lr / 10' if i == 0 else None,
        )
    axes.set_xlabel('epoch')
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3, which='both')
    if axes.lines:
        axes.legend()


def _confusion(plt, entry: dict):
    """The confusion matrix of one log entry as counts, rows true class, columns predicted."""
    import numpy as np

    matrix = np.asarray(entry['validation/confusion'])
    n = len(matrix)
    names = [key[len(PER_CLASS) :] for key in entry if key.startswith(PER_CLASS)]
    if len(names) != n:
        names = [str(i) for i in range(n)]
    side = min(max(4.0, 0.5 * n + 2), 24.0)
    figure, axes = plt.subplots(figsize=(side, side), dpi=100)
    axes.imshow(matrix, cmap='Blues')
    if n <= 20:
        axes.set_xticks(range(n), names, rotation=90)
        axes.set_yticks(range(n), names)
        threshold = matrix.max() / 2
        for row in range(n):
            for column in range(n):
                colour = 'white' if matrix[row, column] > threshold else 'black'
                axes.text(
                    column, row, matrix[row, column], ha='center', va='center', color=colour,
                    fontsize=8,
                )  # fmt: skip
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    axes.set_title(f'epoch {entry.get("epoch")}: test accuracy {accuracy:.1%}')
    axes.set_xlabel('predicted')
    axes.set_ylabel('true class')
    figure.tight_layout()
    return figure


def _save(plt, figure, path: Path) -> None:
    figure.tight_layout()
    try:
        write_atomically(path, partial(figure.savefig, format='jpeg'))
    finally:
        plt.close(figure)
