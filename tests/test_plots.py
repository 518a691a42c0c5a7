"""The plots drawn from a log."""

from PIL import Image

from trainer import plots

LOG = [
    {'epoch': 1, 'main/loss': 2.0, 'validation/main/loss': 2.1, 'main/accuracy': 0.2},
    {'epoch': 2, 'main/loss': 1.5, 'validation/main/loss': 1.7, 'main/accuracy': 0.4,
     'validation/main/accuracy': 0.35, 'validation/confusion': [[1, 0], [0, 1]]},
]  # fmt: skip


def test_plots_are_jpegs_with_every_epoch(tmp_path):
    plots.draw(tmp_path / 'img', LOG)
    for name in ('loss.jpg', 'accuracy.jpg'):
        with Image.open(tmp_path / 'img' / name) as image:
            assert image.format == 'JPEG' and image.size == (600, 400)
    # a log of one epoch without test figures still draws
    plots.draw(tmp_path / 'img', LOG[:1])
