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


def test_a_cosine_schedule_and_its_warm_up_mark_no_drop():
    # --recipe modern at 15 epochs, as logged: warm-up, then the cosine down to about 0
    rates = [0.05, 0.1, 0.09855, 0.09428, 0.08743, 0.07841, 0.06775, 0.05605, 0.04398]
    rates += [0.03228, 0.02161, 0.01259, 0.005731, 0.001456, 2.392e-09]
    log = [{'epoch': i + 1, 'lr': lr} for i, lr in enumerate(rates)]
    assert plots.lr_drops(log) == []
    steps = [0.1] * 4 + [0.01] * 2 + [0.001] * 2  # the step schedule of 8 epochs
    assert plots.lr_drops([{'epoch': i + 1, 'lr': lr} for i, lr in enumerate(steps)]) == [4, 6]


def test_the_averaged_weights_have_their_test_curve(tmp_path, monkeypatch):
    figures, plt = capture(monkeypatch)
    log = [{**entry, 'validation_ema/main/accuracy': 0.3} for entry in LOG]
    plots.draw(tmp_path, log)
    axes = dict(figures)['accuracy.jpg'].axes[0]
    labels = [text.get_text() for text in axes.get_legend().get_texts()]
    assert labels[:3] == ['train', 'test', 'test, averaged weights']
    plt.close('all')


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
