"""Puts the tricks of a run (``trainer.recipes.Tricks``) into the trainer's pieces.

``trainer.training`` calls each function at the one place its piece is made; with every
trick off (the reference recipe) each returns the piece it was given, untouched, so the
reference run computes exactly what it did before.
"""

import dataclasses
import math

import chainer
import chainer.links as L

from trainer import precision
from trainer.ema import AverageEvaluator, WeightAverage
from trainer.losses import classifier_loss, hard_accuracy
from trainer.mixing import BatchAugment
from trainer.recipes import Tricks
from trainer.schedules import CosineSchedule, StepSchedule
from trainer.tta import FlipAveraged


def soft_targets(tricks: Tricks) -> bool:
    """Whether the training batches carry soft targets (mixup or cutmix)."""
    return bool(tricks.mixup or tricks.cutmix)


def classifier(model: chainer.Link, tricks: Tricks) -> L.Classifier:
    """``L.Classifier(model)``, with the smoothed / soft-target loss when a trick needs it."""
    if not (tricks.label_smoothing or soft_targets(tricks)):
        return L.Classifier(model)
    return L.Classifier(
        model, lossfun=classifier_loss(tricks.label_smoothing), accfun=hard_accuracy
    )


def tune_optimizer(
    optimizer: chainer.Optimizer,
    tricks: Tricks,
    lr: float,
    epochs: int,
    steps_per_epoch: float,
    weight_decay: float,
) -> chainer.Optimizer:
    """The cosine schedule in place of the step one, and clipping before weight decay.

    Clipping comes first (as ``clip_grad_norm_`` before PyTorch's step), so it measures
    the gradients of the loss alone; ``weight_decay`` is the rate of the recipe's
    ``WeightDecay`` hook, added again after it. Returns ``optimizer``.
    """
    if tricks.schedule == 'cosine':
        optimizer.remove_hook(StepSchedule.name)
        optimizer.add_hook(
            CosineSchedule(
                lr,
                total_steps=math.ceil(epochs * steps_per_epoch),
                warmup_steps=math.ceil(tricks.warmup * steps_per_epoch),
            )
        )
    if tricks.clip_grad:
        decay = chainer.optimizer_hooks.WeightDecay
        optimizer.remove_hook(decay.name)
        optimizer.add_hook(chainer.optimizer_hooks.GradientClipping(tricks.clip_grad))
        optimizer.add_hook(decay(weight_decay))
    return optimizer


def train_converter(converter, tricks: Tricks, n_classes: int, seed: int | None):
    """``converter``, or a ``BatchAugment`` around it for cutout, mixup and cutmix."""
    if not (tricks.cutout or soft_targets(tricks)):
        return converter
    return BatchAugment(converter, n_classes, tricks.cutout, tricks.mixup, tricks.cutmix, seed)


def evaluated(model: chainer.Link, tricks: Tricks) -> chainer.Link:
    """What the evaluator runs: ``model``, or its flip average with ``--tta``."""
    return FlipAveraged(model) if tricks.tta else model


def extend(
    trainer: chainer.training.Trainer, model: chainer.Link, tricks: Tricks, evaluator
) -> None:
    """The weight average and its evaluation (a copy of ``evaluator``'s settings)."""
    if not tricks.ema_decay:
        return
    average = WeightAverage(model, tricks.ema_decay)
    trainer.extend(average)
    trainer.extend(
        AverageEvaluator(
            evaluator.get_iterator('main'),
            evaluated(average.average, tricks),
            evaluator.label_names,
            divide=evaluator.divide,
            device=evaluator.device,
            progress_bar=evaluator.show_progress,
            comm=evaluator.comm,
            converter=evaluator.converter,
        )
    )


def settings(tricks: Tricks) -> dict:
    """The tricks as ``run.json`` records them (a defining setting of the run)."""
    return dataclasses.asdict(tricks)


def mixed16(model: chainer.Link, optimizer, converter, on: bool):
    """With ``on`` (``--mixed16``): the model in mixed16, loss scaling, float16 inputs.

    Called after any ``-m``/``-o`` loading (float32 weights load, then are cast);
    ``optimizer`` may be ChainerMN's wrapper, which passes attributes on to the optimizer.
    Returns the converter the updater and the evaluator use.
    """
    if not on:
        return converter
    precision.to_mixed16(model)
    precision.scale_dynamically(optimizer)
    return precision.Float16Input(converter)
