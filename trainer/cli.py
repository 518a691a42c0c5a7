"""The training command line: the reference flags, validated.

Values are checked by ``trainer.validators`` as they are parsed; the training Namespace is
converted once into ``TrainOptions``, whose cross-checks become the parser's one-line error.
"""

import argparse
import sys
from collections.abc import Sequence

from layers import INITIALIZERS
from trainer import registry, validators
from trainer.datasets import DATASETS
from trainer.distributed import COMMUNICATORS
from trainer.help_format import HelpFormatter
from trainer.options import OptionError, TrainOptions, default_workers
from trainer.recipe import RECIPE
from trainer.transforms import PRESETS

_positive = validators.argtype(validators.positive)
_non_negative = validators.argtype(validators.non_negative)
_integer = validators.argtype(validators.integer)


def build_parser(description: str = 'Train a classifier on CIFAR.') -> argparse.ArgumentParser:
    """The parser of the reference flags plus the data, device, model and output options."""
    parser = argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)
    add = parser.add_argument
    add('-p', '--save_path', default='./', help='run folder: run.json, log.json, snapshots')
    add('-e', '--epoch', type=_positive, default=RECIPE.epochs, help='epochs to train')
    add(
        '-b',
        '--batch',
        type=_positive,
        default=RECIPE.batch,
        help='images per SGD step; with --communicator per process, so a step uses N x b',
    )
    add(
        '-g',
        '--gpu',
        type=_integer,
        default=-1,
        help='GPU id, -1 for the CPU; with --communicator any id >= 0 means GPUs: each '
        'process uses the GPU numbered by its rank on its node',
    )
    add(
        '-s',
        '--start_epoch',
        type=_positive,
        default=1,
        help='first epoch to run, to continue from -m (and -o, -l) in a new run folder',
    )
    add(
        '-trb',
        '--train_batch_divide',
        type=_positive,
        default=1,
        help='split each training batch into this many sub-batches, accumulating gradients',
    )
    add(
        '-teb',
        '--test_batch_divide',
        type=_positive,
        default=1,
        help='split each test batch into this many forward passes',
    )
    add(
        '--eval-batch',
        type=_positive,
        help='images per evaluation batch (default: -b); results do not depend on it',
    )
    add(
        '-lr',
        '--lr',
        type=validators.argtype(validators.positive_float),
        default=RECIPE.lr,
        help='initial learning rate',
    )
    existing = validators.argtype(validators.existing_file)
    add('-m', '--load_model', type=existing, help='model weights (npz) to start from')
    add('-o', '--load_optimizer', type=existing, help='optimizer state (npz) to start from')
    add('-l', '--load_log', type=existing, help='log.json of the epochs before -s')
    add(
        '--data',
        help='cifar-10-python.tar.gz / cifar-100-python.tar.gz or the extracted '
        "folder; default: download once into Chainer's dataset cache",
    )
    add('--dataset', choices=sorted(DATASETS), default='cifar10')
    add(
        '--preset',
        choices=PRESETS,
        default='122',
        help='122: resize 124-132, crop 122, test at 128 (the recipe); 32: pad-4 crops at 32',
    )
    add(
        '--arch',
        default=registry.DEFAULT_ARCH,
        help=f'the model: {", ".join(registry.names())}, or an import path package.module:Factory '
        '(called with the class count)',
    )
    add(
        '--init',
        choices=INITIALIZERS,
        help="the convolutions' initialization: orthonormal (the reference trainer's, "
        "SqueezeNet's default) or he (He-normal)",
    )
    add(
        '--plain',
        action='store_true',
        help='on the CPU, run the model as plain Chainer functions instead of its fast path',
    )
    add(
        '--tf32',
        action=argparse.BooleanOptionalAction,
        default=True,
        help='on GPUs that have it (Ampere and later), TF32 math for float32 convolutions and '
        'matrix products, as PyTorch does by default',
    )
    add(
        '--seed',
        type=validators.argtype(validators.seed),
        help='seed of the initialization, shuffling and augmentation (0..2**32-1)',
    )
    add('--img-dir', default='img', help='folder of loss.jpg and accuracy.jpg')
    add(
        '--workers',
        type=_non_negative,
        default=default_workers(),
        help='augmentation processes (0: in the training process)',
    )
    add('--keep', type=_positive, default=3, help='snapshots to keep')
    add(
        '--communicator',
        choices=COMMUNICATORS,
        help='train data-parallel over MPI with this ChainerMN communicator, one process per '
        'GPU: mpiexec -n N python main.py ... (pure_nccl for GPUs, naive for the CPU; '
        'needs `make install-mpi`)',
    )
    add(
        '--tensorboard',
        nargs='?',
        const='',
        metavar='DIR',
        help='also write every logged figure as TensorBoard scalars to DIR (without DIR: '
        'SAVE_PATH/tensorboard); needs `make install-extras`',
    )
    add(
        '--early-stopping',
        metavar='KEY',
        help='stop once KEY (a logged value: validation/main/loss, validation/main/accuracy, '
        'main/loss...) has not improved for --patience epochs; a loss must fall, an '
        'accuracy rise',
    )
    add(
        '--patience',
        type=_positive,
        default=10,
        help='epochs without improvement before --early-stopping stops the run',
    )
    add(
        '--progress',
        action=argparse.BooleanOptionalAction,
        default=None,
        help='progress bars while training and testing (default: when stdout is a terminal)',
    )
    return parser


def parse_args(
    argv: Sequence[str] | None = None, parser: argparse.ArgumentParser | None = None
) -> TrainOptions:
    """Parse and cross-check the flags; a bad value exits with a one-line message (status 2)."""
    parser = parser or build_parser()
    args = parser.parse_args(argv)
    if args.progress is None:
        args.progress = sys.stdout.isatty()
    try:
        return TrainOptions.make(args)
    except OptionError as error:
        parser.error(str(error))
