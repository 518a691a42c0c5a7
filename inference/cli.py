"""The command lines of ``predict`` and ``export``, and the model flags ``serve`` shares.

``add_model_arguments`` is the one definition of the flags that say which model to load;
``load_from_args`` turns their parsed values into a Predictor, so each command converts
its Namespace once, here at the edge.
"""

import argparse

from inference.loading import BACKENDS, load_predictor
from inference.predictor import DEFAULT_TOP, Predictor
from trainer import validators
from trainer.datasets import DATASETS
from trainer.help_format import HelpFormatter
from trainer.transforms import PRESETS
from trainer.tta import flip_averaged

_positive = validators.argtype(validators.positive)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of predict and serve that say which model to load and how it was trained.

    ``--arch``, ``--dataset`` and ``--preset`` default to what the run's ``run.json`` beside
    the weights says (else squeezenet, cifar10, 122); a flag that contradicts it is refused.
    """
    add = parser.add_argument
    add(
        '-m',
        '--model',
        required=True,
        help='model.npz or snapshot_epoch_N written by training, or a .onnx file written by '
        'main.py export',
    )
    add(
        '--backend',
        choices=BACKENDS,
        help='chainer: the weights in Chainer; onnx: an exported model in ONNX Runtime, on '
        'the CPU (needs `make install-extras`) (default: onnx for a .onnx file, else chainer)',
    )
    add(
        '--preset',
        choices=PRESETS,
        help="the preset the model was trained with (default: the run's, else 122): its test "
        'transform is applied after resizing each image to 32x32',
    )
    add(
        '--dataset',
        choices=sorted(DATASETS),
        help="the class names (default: the run's, else cifar10)",
    )
    add('--arch', help="the model (default: the run's, else squeezenet); see main.py --help")
    add(
        '-g',
        '--gpu',
        type=validators.argtype(validators.integer, -1),
        default=-1,
        help='GPU id, -1 for the CPU',
    )
    add(  # issue 27
        '--tta',
        action='store_true',
        help='test-time augmentation: the mean of the logits of each image and its mirror '
        'image (the averaged weights of --ema-decay: -m RUN/model_ema.npz)',
    )
    add('--top', type=_positive, default=DEFAULT_TOP, help='classes to show per image')


def build_predict_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The command line of ``predict``: a model and image files."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description='Print the most probable classes of each image file (any size, PNG or '
        'JPEG, any colour mode): resized to 32x32 like CIFAR, then preprocessed like the test '
        'set. Exit status 1 if any input failed.',
        formatter_class=HelpFormatter,
    )
    add_model_arguments(parser)
    parser.add_argument('images', nargs='+', help='image files')
    parser.add_argument('--json', action='store_true', help='print a JSON list instead of lines')
    return parser


def build_export_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The command line of ``export``: weights in, an ONNX file out."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description='Export a trained model to ONNX (onnx-chainer), checked against Chainer '
        'before it is written; predict and serve run it with --backend onnx. Needs '
        '`make install-extras`.',
        formatter_class=HelpFormatter,
    )
    add = parser.add_argument
    add('-m', '--model', required=True, help='model.npz or snapshot_epoch_N written by training')
    add('-o', '--output', required=True, help='the ONNX file to write')
    add(
        '--preset',
        choices=PRESETS,
        help="the preset the model was trained with (default: the run's, else 122)",
    )
    add(
        '--dataset',
        choices=sorted(DATASETS),
        help="the class names (default: the run's, else cifar10)",
    )
    add('--arch', help="the model (default: the run's, else squeezenet)")
    return parser


def load_from_args(args: argparse.Namespace) -> Predictor:
    """The Predictor that ``add_model_arguments``' flags name (``load_predictor``)."""
    predictor = load_predictor(
        args.model, args.arch, args.dataset, args.preset, args.gpu, args.backend
    )
    if getattr(args, 'tta', False):  # issue 27
        predictor.forward = flip_averaged(predictor.forward)
    return predictor
