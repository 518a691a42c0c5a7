"""The training command line: the reference flags, validated.

Values are checked by ``trainer.validators`` as they are parsed; the training Namespace is
converted once into ``TrainOptions``, whose cross-checks become the parser's one-line error.
The model's own flags are the keyword parameters of the chosen ``--arch``'s factory
(``registry.factory_options``): ``parse_args`` resolves ``--arch`` first, then adds them.
"""

import argparse
import contextlib
import copy
import sys
from collections.abc import Sequence

from trainer import recipes, registry, validators
from trainer.datasets import DATASETS
from trainer.distributed import COMMUNICATORS
from trainer.errors import ArchitectureError
from trainer.help_format import HelpFormatter
from trainer.holdout import check_size
from trainer.options import OptionError, TrainOptions, default_workers
from trainer.recipe import RECIPE
from trainer.transforms import PRESETS

_positive = validators.argtype(validators.positive)
_non_negative = validators.argtype(validators.non_negative)
_integer = validators.argtype(validators.integer)


def build_parser(description: str = 'Train a classifier on CIFAR.') -> argparse.ArgumentParser:
    """The parser of the reference flags plus the data, device, model and output options."""
    # No abbreviations: a model flag that one --arch has and another lacks (--init) would
    # otherwise be taken for the trainer's longer flag (--init-from).
    parser = argparse.ArgumentParser(
        description=description, formatter_class=HelpFormatter, allow_abbrev=False
    )
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
        "folder; default: download once into Chainer's dataset cache. With --dataset folder: "
        'a folder of train/<class>/<image> and test/<class>/<image>',
    )
    add(
        '--dataset',
        choices=sorted(DATASETS),
        default='cifar10',
        help='which CIFAR: its classes, its archive layout and its download',
    )
    add(
        '--skip-bad-images',
        action='store_true',
        help='with --dataset folder, leave out images that do not decode (counted) instead '
        'of stopping at the first',
    )
    add(
        '--preset',
        choices=PRESETS,
        default='122',
        help='122: resize 124-132, crop 122, test at 128 (the recipe); 32: pad-4 crops at 32',
    )
    add(
        '--arch',
        default=argparse.SUPPRESS,  # not given: the model's own (main.py: squeezenet)
        help=f'the model: {", ".join(registry.names())}, an import path package.module:Factory '
        '(from the current directory, as python -m) or path/to/file.py:Factory, called with '
        f'the class count; its keyword parameters become flags (default: {registry.DEFAULT_ARCH})',
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
    add(
        '--img-dir',
        help='folder of loss.jpg, accuracy.jpg and confusion.jpg (default: SAVE_PATH/img)',
    )
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
        '--val-size',
        type=validators.argtype(check_size),
        default=0,
        metavar='N',
        help='hold N training images out as a validation split (or a fraction, e.g. 0.1), '
        'class-balanced, evaluated each epoch as val/main/loss and val/main/accuracy beside '
        "the test set's validation/...; 0: train on all of them (the reference)",
    )
    add(
        '--val-seed',
        type=validators.argtype(validators.seed),
        default=0,
        help='seed of the validation split (apart from --seed, so runs of other seeds hold '
        'out the same images)',
    )
    add(
        '--early-stopping',
        metavar='KEY',
        help='stop once KEY (a logged value: val/main/loss, val/main/accuracy with --val-size, '
        'main/loss...) has not improved for --patience epochs; a loss must fall, an '
        "accuracy rise. The test set's validation/... keys need --select-on-test",
    )
    add(
        '--select-on-test',
        action='store_true',
        help='allow choosing on the test set (--early-stopping validation/...): its accuracy '
        'is then no longer an unbiased estimate',
    )
    add(
        '--init-from',
        type=existing,
        metavar='NPZ',
        help='fine-tune: start from the matching weights of a model.npz or snapshot_epoch_N '
        '(a new head where the class count differs); recorded in run.json',
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
    recipes.add_arguments(parser)  # issue 27: the tricks and --recipe
    return parser


def parse_args(
    argv: Sequence[str] | None = None, parser: argparse.ArgumentParser | None = None
) -> TrainOptions:
    """Parse and cross-check the flags; a bad value exits with a one-line message (status 2).

    ``--arch`` is resolved first, then its factory's keyword parameters are added as flags
    (``add_model_options``); the values given for them become ``model_options``.
    """
    parser = parser or build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    chosen = argparse.ArgumentParser(add_help=False)
    chosen.add_argument('--arch')
    arch = chosen.parse_known_args(argv)[0].arch or parser.get_default('arch')
    if arch in (None, argparse.SUPPRESS):
        arch = registry.DEFAULT_ARCH
    parser = copy.deepcopy(parser)  # the caller's parser stays as it was
    try:
        add_model_options(parser, arch)
    except ArchitectureError as error:
        parser.error(str(error))
    args = parser.parse_args(argv)
    model_options = {
        name.removeprefix(MODEL_DEST): vars(args).pop(name)
        for name in list(vars(args))
        if name.startswith(MODEL_DEST)
    }
    if args.progress is None:
        args.progress = sys.stdout.isatty()
    try:
        options = TrainOptions.make(args, model_options=model_options)
    except OptionError as error:
        parser.error(str(error))
    if options.lr < TINY_LR:
        print(
            f'warning: -lr {options.lr:g} is so small that lr x gradient falls below the '
            'float32 resolution of the weights: training will change nothing',
            file=sys.stderr,
        )
    return options


TINY_LR = 1e-8
"""Below this lr, updates (lr x a gradient of order 1) are under float32's resolution of
weights of order 0.01 (about 1e-9): a run would train with no effect."""


MODEL_DEST = 'model_option.'
"""Namespace prefix of the model's flags, apart from the trainer's own."""


def add_model_options(parser: argparse.ArgumentParser, arch: str) -> list[str]:
    """Add a flag per keyword parameter of ``arch``'s factory; return their names.

    Each defaults to the factory's own default (the flag is absent from the Namespace when
    not given); a bool is ``--name/--no-name``, a ``Literal`` has choices, and a factory
    that takes ``fast`` also gets ``--plain`` (``--no-fast``, the reference's old flag). A
    parameter whose flag the trainer already has keeps its default. Raises
    ArchitectureError for an ``arch`` that does not resolve.
    """
    options = registry.factory_options(registry.resolve(arch))
    group = parser.add_argument_group(
        f'options of --arch {arch}', "its factory's keyword parameters (default: the factory's)"
    )
    added = []
    for option in options:
        default = f'default: {option.default!r}'
        kwargs = {
            'dest': MODEL_DEST + option.name,
            'default': argparse.SUPPRESS,
            'help': f'{option.help} ({default})' if option.help else default,
        }
        if option.type is bool:
            kwargs['action'] = argparse.BooleanOptionalAction
        else:
            kwargs['type'] = _MODEL_TYPES[option.type]
            kwargs['choices'] = option.choices
            kwargs['metavar'] = option.name.upper() if option.choices is None else None
        try:
            group.add_argument(f'--{option.name}', **kwargs)
        except argparse.ArgumentError:
            continue  # the trainer's flag of that name wins
        added.append(option.name)
        if option.name == 'fast' and option.type is bool:
            with contextlib.suppress(argparse.ArgumentError):  # unless it has a `plain` too
                group.add_argument(
                    '--plain',
                    dest=MODEL_DEST + 'fast',
                    action='store_const',
                    const=False,
                    default=argparse.SUPPRESS,
                    help='the same as --no-fast: on the CPU, run the model as plain Chainer '
                    'functions instead of its fast path',
                )
    return added


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'must be a number, got {text!r}') from None


_MODEL_TYPES = {int: validators.argtype(validators.integer), float: _number, str: str}
