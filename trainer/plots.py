"""``loss.jpg`` and ``accuracy.jpg`` drawn from a run's log, with labeled axes.

Drawn from the whole log each time, so a resumed run's plots show every epoch; each image
is written to a temporary file and renamed, never left half-written. (Chainer's PlotReport
draws no axis labels and writes only under the trainer's out.)
"""

from functools import partial
from pathlib import Path

from trainer.run_folder import write_atomically

PLOTS = {
    'loss.jpg': ('loss', [('main/loss', 'train'), ('validation/main/loss', 'test')]),
    'accuracy.jpg': (
        'accuracy',
        [('main/accuracy', 'train'), ('validation/main/accuracy', 'test')],
    ),
}


def draw(folder: Path, log: list[dict]) -> None:
    """Draw every plot of PLOTS from ``log`` (LogReport entries) into ``folder``."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    folder.mkdir(parents=True, exist_ok=True)
    for file_name, (ylabel, series) in PLOTS.items():
        figure, axes = plt.subplots(figsize=(6, 4), dpi=100)
        for key, label in series:
            points = [(entry['epoch'], entry[key]) for entry in log if key in entry]
            if points:
                axes.plot(*zip(*points, strict=True), marker='.', label=label)
        axes.set_xlabel('epoch')
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylabel(ylabel)
        axes.grid(alpha=0.3)
        if axes.lines:
            axes.legend()
        figure.tight_layout()
        try:
            write_atomically(folder / file_name, partial(figure.savefig, format='jpeg'))
        finally:
            plt.close(figure)
