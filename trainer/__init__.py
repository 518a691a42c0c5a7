"""Generic Chainer training for CIFAR-style image classifiers.

``train(model, options)`` trains any ``chainer.Link`` mapping images to logits with the
reference recipe; ``build_parser`` / ``parse_args`` give its command line. The pieces it
is built from are public too.
"""

import chainer_compat  # noqa: F401  (first: lets Chainer import on current stacks)
from trainer.cli import build_parser, parse_args
from trainer.datasets import N_CLASSES, Cifar, DataError, Split, load_cifar
from trainer.devices import DeviceError, get_device
from trainer.evaluator import ClassificationEvaluator
from trainer.extensions import NonFiniteGuard, NonFiniteLossError, PlotLog, WriteLog
from trainer.run import build_trainer, set_seed, train
from trainer.schedules import StepSchedule, resolve_milestones, step_lr
from trainer.transforms import (
    PadCropFlip,
    ResizeCropFlip,
    ResizeNormalize,
    make_transforms,
    normalize,
)
from trainer.updaters import AccumulatingUpdater

__all__ = [
    'AccumulatingUpdater',
    'ClassificationEvaluator',
    'Cifar',
    'DataError',
    'DeviceError',
    'N_CLASSES',
    'NonFiniteGuard',
    'NonFiniteLossError',
    'PadCropFlip',
    'PlotLog',
    'WriteLog',
    'ResizeCropFlip',
    'ResizeNormalize',
    'Split',
    'StepSchedule',
    'build_parser',
    'build_trainer',
    'get_device',
    'load_cifar',
    'make_transforms',
    'normalize',
    'parse_args',
    'resolve_milestones',
    'set_seed',
    'step_lr',
    'train',
]
