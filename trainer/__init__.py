"""Generic Chainer training for CIFAR-style image classifiers.

``train(model, options, **overrides)`` trains any ``chainer.Link`` mapping images to logits
with the reference recipe (``RECIPE``) in a run folder (``trainer.run_folder``);
``parse_args`` gives its command line. Prediction (the ``inference`` package) and the HTTP
service (``serving``) use the models it writes; the trainer imports neither. Every error a
user can cause is a ``UserError`` with a one-line message.
"""

import chainer_compat  # noqa: F401  (first: lets Chainer import on current stacks)

# isort: split
from trainer.cli import build_parser, parse_args
from trainer.datasets import DATASETS, N_CLASSES, Cifar, Split, load_cifar, load_dataset
from trainer.devices import get_device
from trainer.errors import (
    ArchitectureError,
    DataError,
    DeviceError,
    ImageError,
    MissingExtraError,
    ModelFileError,
    NonFiniteLossError,
    OptionError,
    RunFolderError,
    StoppingError,
    UserError,
)
from trainer.evaluator import ClassificationEvaluator
from trainer.extensions import NonFiniteGuard, StartAt, log_extras
from trainer.finetune import InitFrom, init_from
from trainer.holdout import HeldOut, hold_out
from trainer.options import TrainOptions
from trainer.recipe import RECIPE, Recipe
from trainer.registry import register
from trainer.run_folder import RunFolder, SaveEpoch, load_weights
from trainer.schedules import StepSchedule, resolve_milestones, step_lr
from trainer.training import (
    build_trainer,
    make_iterators,
    make_optimizer,
    make_val_iterator,
    set_seed,
    train,
)
from trainer.transforms import (
    PadCropFlip,
    ResizeCropFlip,
    ResizeNormalize,
    make_transforms,
    normalize,
)
from trainer.updaters import AccumulatingUpdater

# isort: split
# issue 27: the tricks beside the reference recipe (each off by default; --recipe modern)
from trainer.ema import WeightAverage
from trainer.losses import classifier_loss, soft_cross_entropy
from trainer.mixing import BatchAugment
from trainer.recipes import RECIPES, Tricks
from trainer.schedules import CosineSchedule, cosine_lr
from trainer.tta import FlipAveraged

__all__ = [
    'AccumulatingUpdater',
    'ArchitectureError',
    'ClassificationEvaluator',
    'Cifar',
    'DATASETS',
    'DataError',
    'DeviceError',
    'HeldOut',
    'ImageError',
    'InitFrom',
    'MissingExtraError',
    'ModelFileError',
    'N_CLASSES',
    'NonFiniteGuard',
    'NonFiniteLossError',
    'OptionError',
    'PadCropFlip',
    'RECIPE',
    'Recipe',
    'ResizeCropFlip',
    'ResizeNormalize',
    'RunFolder',
    'RunFolderError',
    'SaveEpoch',
    'Split',
    'StartAt',
    'StepSchedule',
    'StoppingError',
    'TrainOptions',
    'UserError',
    'build_parser',
    'build_trainer',
    'get_device',
    'hold_out',
    'init_from',
    'load_cifar',
    'load_dataset',
    'load_weights',
    'log_extras',
    'make_iterators',
    'make_optimizer',
    'make_transforms',
    'make_val_iterator',
    'normalize',
    'parse_args',
    'register',
    'resolve_milestones',
    'set_seed',
    'step_lr',
    'train',
]
__all__ += [  # issue 27
    'BatchAugment',
    'CosineSchedule',
    'FlipAveraged',
    'RECIPES',
    'Tricks',
    'WeightAverage',
    'classifier_loss',
    'cosine_lr',
    'soft_cross_entropy',
]
