"""Train a small VGG-style net on CIFAR with the generic trainer, the way main.py trains SqueezeNet.

    python examples/train_vgg.py -e 30 -b 128 --preset 32 -g 0

Same flags, outputs (run.json, log.json, snapshots, model.npz, plots) and resuming as
main.py: the trainer only needs a link that maps images to logits. The preset defaults to
'32' here. Without this script, main.py trains, predicts with and serves the same net:

    python main.py --arch examples.train_vgg:VGG --preset 32 -e 30 -p runs/vgg
    python main.py predict -m runs/vgg/model.npz cat.jpg
"""

import itertools
import logging
import sys

import trainer  # first: it lets Chainer import on current stacks

# isort: split
import chainer
import chainer.functions as F
import chainer.links as L

import layers
from layers import ConvBNReLU
from trainer import registry


class VGG(chainer.Chain):
    """Three blocks of two Conv-BN-ReLU units and 2x2 max pooling, then dropout and a dense head.

    Global average pooling before the head makes it work at any input size from 8x8 up, so
    both presets train it (32x32, or 122/128 with preset '122'). Written once with the
    generic units and functions of ``layers``: the input taken channels-last makes every
    one of them run its CPU fast path (NHWC activations, GEMM convolutions, fused BN + ReLU).

    Args:
        n_classes: number of classes.
        channels: output channels of the three blocks.
        dropout: dropout ratio before the head, active only when ``chainer.config.train``.
        fast: take the CPU fast path on NumPy arrays (False: Chainer's plain functions).
    """

    def __init__(
        self,
        n_classes: int = 10,
        channels: tuple = (64, 128, 256),
        dropout: float = 0.5,
        fast: bool = True,
    ) -> None:
        super().__init__()
        self.dropout = dropout
        self.fast = fast
        widths = [3, *(c for c in channels for _ in range(2))]
        with self.init_scope():
            self.convs = chainer.ChainList(
                *(ConvBNReLU(c_in, c_out, 3, pad=1) for c_in, c_out in itertools.pairwise(widths))
            )
            self.head = L.Linear(channels[-1], n_classes)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        with layers.fast_path(self.fast):
            h = layers.channels_last(x)
            for i, unit in enumerate(self.convs):
                h = unit(h)
                if i % 2 == 1:
                    h = layers.max_pooling_2d(h, 2)
            h = layers.global_average_pooling_2d(h)
            return self.head(F.dropout(h, self.dropout))


def main(argv: list[str] | None = None) -> list:
    """Parse the trainer's flags, train a VGG and return the log entries."""
    # --arch vgg by default: its keyword parameters become flags (--dropout, --no-fast...),
    # and run.json records VGG's import path (examples.train_vgg:VGG), which predict rebuilds
    trainer.register('vgg', VGG)
    parser = trainer.build_parser(__doc__)
    parser.set_defaults(preset='32', arch='vgg')
    options = trainer.parse_args(argv, parser)
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    trainer.set_seed(options.seed)  # before the model exists, so its initial weights follow it
    try:
        data = trainer.load_dataset(options.dataset, options.data, options.skip_bad_images)
        model = registry.build(options.arch, data.n_classes, **options.model_options)
        command = ['train_vgg.py', *(sys.argv[1:] if argv is None else argv)]
        return trainer.train(model, options, data, command=command)
    except trainer.UserError as error:  # every error a user can cause: one line
        sys.exit(f'error: {error}')


if __name__ == '__main__':
    main()
