"""The reference command line, validated at parse time."""

import argparse
import os
import sys
from collections.abc import Sequence

from trainer.datasets import LAYOUTS
from trainer.distributed import COMMUNICATORS, CPU_COMMUNICATORS
from trainer.transforms import PRESETS


def _positive(text: str) -> int:
    value = _integer(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f'must be a positive integer, got {text}')
    return value


def _non_negative(text: str) -> int:
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f'must be 0 or more, got {text}')
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'must be an integer, got {text!r}') from None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'must be a number, got {text!r}') from None
    if not value > 0 or value == float('inf'):
        raise argparse.ArgumentTypeError(f'must be a positive number, got {text}')
    return value


def _existing_file(text: str) -> str:
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(f'no such file: {text}')
    return text


def build_parser(description: str = 'Train a classifier on CIFAR.') -> argparse.ArgumentParser:
    """The parser of the reference flags plus the data, device and output options."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    add = parser.add_argument
    add('-p', '--save_path', default='./', help='folder of log.json, snapshots, model.npz')
    add('-e', '--epoch', type=_positive, default=300, help='epochs to train')
    add(
        '-b',
        '--batch',
        type=_positive,
        default=64,
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
        help='first epoch to run, to continue a run from -m/-o/-l (a snapshot overrides it)',
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
    add('-lr', '--lr', type=_positive_float, default=0.1, help='initial learning rate')
    add('-m', '--load_model', type=_existing_file, help='model weights (npz) to start from')
    add('-o', '--load_optimizer', type=_existing_file, help='optimizer state (npz) to start from')
    add('-l', '--load_log', type=_existing_file, help='log.json of the epochs before -s')
    add(
        '--data',
        help='cifar-10-python.tar.gz / cifar-100-python.tar.gz or the extracted '
        "folder; default: download once into Chainer's dataset cache",
    )
    add('--dataset', choices=sorted(LAYOUTS), default='cifar10')
    add(
        '--preset',
        choices=PRESETS,
        default='122',
        help='122: resize 124-132, crop 122, test at 128 (the recipe); 32: pad-4 crops at 32',
    )
    add('--seed', type=_non_negative, help='seed of the shuffling, augmentation and init')
    add('--img-dir', default='img', help='folder of loss.jpg and accuracy.jpg')
    add(
        '--workers',
        type=_non_negative,
        default=min(os.cpu_count() or 1, 16),
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
        '--progress',
        action=argparse.BooleanOptionalAction,
        default=None,
        help='progress bars while training and testing (default: when stdout is a terminal)',
    )
    return parser


def parse_args(
    argv: Sequence[str] | None = None, parser: argparse.ArgumentParser | None = None
) -> argparse.Namespace:
    """Parse and cross-check the flags; a bad value exits with a one-line message."""
    parser = parser or build_parser()
    args = parser.parse_args(argv)
    if args.batch % args.train_batch_divide:
        parser.error(
            f'argument -b/--batch: {args.batch} is not divisible by '
            f'-trb/--train_batch_divide {args.train_batch_divide}'
        )
    if args.gpu < -1:
        parser.error(f'argument -g/--gpu: must be -1 (CPU) or a GPU id, got {args.gpu}')
    if args.communicator not in (None, *CPU_COMMUNICATORS) and args.gpu < 0:
        parser.error(
            f'argument --communicator: {args.communicator} needs GPUs (-g 0); on the CPU use naive'
        )
    if args.progress is None:
        args.progress = sys.stdout.isatty()
    if args.start_epoch > args.epoch:
        parser.error(f'argument -s/--start_epoch: {args.start_epoch} is past -e {args.epoch}')
    return args
