"""The plots drawn from a log: readable at a glance."""

import numpy as np
from PIL import Image

from trainer import plots

NAMES = ['cat', 'dog']
LOG = [
    {'epoch': 1, 'main/loss': 2.0, 'validation/main/loss': 166.0, 'main/accuracy': 0.2, 'lr': 0.1},
    {'epoch': 2, 'main/loss': 1.5, 'validation/main/loss': 1.7, 'main/accuracy': 0.4, 'lr': 0.1,
     'validation/main/accuracy': 0.35, 'validation/confusion': [[3, 1], [2, 4]],
     'validation/main/accuracy/cat': 0.75, 'validation/main/accuracy/dog': 0.66},
    {'epoch': 3, 'main/loss': 1.0, 'validation/main/loss': 1.2, 'main/accuracy': 0.6,
     'lr': 0.010000000000000002, 'validation/main/accuracy': 0.5},
]  # fmt: skip


def test_plots_are_jpegs(tmp_path):
    plots.draw(tmp_path / 'img', LOG)
    for name in ('loss.jpg', 'accuracy.jpg'):
        with Image.open(tmp_path / 'img' / name) as image:
            assert image.format == 'JPEG' and image.size == (600, 400)
    with Image.open(tmp_path / 'img' / 'confusion.jpg') as image:
        assert image.format == 'JPEG'
    assert not [p for p in (tmp_path / 'img').iterdir() if p.suffix == '.tmp']


def test_lr_drops_are_found_despite_rounding():
    assert plots.lr_drops(LOG) == [2]
    assert plots.lr_drops(LOG[:2]) == []


def capture(monkeypatch):
    """The axes of the figures draw() makes, instead of saving them."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    figures = []
    monkeypatch.setattr(
        plots, '_save', lambda plt_, figure, path: figures.append((path.name, figure))
    )
    return figures, plt


def test_the_loss_axis_is_logarithmic_and_epochs_are_whole(tmp_path, monkeypatch):
    figures, plt = capture(monkeypatch)
    plots.draw(tmp_path, LOG)
    axes = dict(figures)['loss.jpg'].axes[0]
    assert axes.get_yscale() == 'log'
    assert axes.get_xlim() == (0.5, 3.5)
    assert [line.get_xdata()[0] for line in axes.lines if line.get_linestyle() == '--'] == [2.5]
    plt.close('all')


def test_one_epoch_has_one_whole_tick(tmp_path, monkeypatch):
    figures, plt = capture(monkeypatch)
    plots.draw(tmp_path, LOG[:1])
    axes = dict(figures)['accuracy.jpg'].axes[0]
    ticks = [t for t in axes.get_xticks() if 0.5 <= t <= 1.5]
    assert ticks == [1.0]
    plt.close('all')


def test_the_confusion_matrix_is_the_last_evaluated_epoch(tmp_path, monkeypatch):
    figures, plt = capture(monkeypatch)
    plots.draw(tmp_path, LOG)
    axes = dict(figures)['confusion.jpg'].axes[0]
    np.testing.assert_array_equal(axes.images[0].get_array(), [[3, 1], [2, 4]])
    assert [t.get_text() for t in axes.get_xticklabels()] == NAMES
    assert 'epoch 2' in axes.get_title() and '70.0%' in axes.get_title()
    plt.close('all')
