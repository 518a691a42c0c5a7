"""The training recipe: every knob of the reproduction in one table, each with its reason.

The reference (nutszebra/squeeze_net with nutszebra/trainer) trains SqueezeNet with simple
bypass the DenseNet way (Huang et al. 2017, arXiv 1608.06993: "the way of optimization and
hyperparameters are same as in" DenseNet, says its README). The trainer, the transforms,
the benchmark and the README's table all read ``RECIPE``; the command-line flags that
override a field (``-e``, ``-b``, ``-lr``) take their defaults from it. The model's own knobs
(SqueezeNet's dropout and initialization) are its factory's defaults, not the trainer's.
"""

import dataclasses
from dataclasses import dataclass, field


def _knob(default, why: str):
    return field(default=default, metadata={'why': why})


@dataclass(frozen=True)
class Recipe:
    """The reference recipe; ``dataclasses.replace(RECIPE, ...)`` makes a variant."""

    epochs: int = _knob(300, 'the reference command line (`-e 300`)')
    batch: int = _knob(64, 'the reference command line (`-b 64`): images per SGD step')
    lr: float = _knob(0.1, 'DenseNet; the reference command line (`-lr 0.1`)')
    momentum: float = _knob(0.9, "DenseNet's MomentumSGD (the reference's OptimizerDense)")
    weight_decay: float = _knob(1e-4, "DenseNet's weight decay (the reference's OptimizerDense)")
    milestones: tuple[float, ...] = _knob(
        (0.5, 0.75), 'DenseNet: lr divided at 50 % and 75 % of the epochs (150 and 225 of 300)'
    )
    lr_divisor: float = _knob(10.0, 'DenseNet: the lr is divided by 10 at each milestone')
    train_resize: tuple[int, int] = _knob(
        (124, 132), 'the reference augmentation: resize to s x s, s uniform in this range'
    )
    train_crop: int = _knob(122, 'the reference augmentation: a random crop of this side')
    flip: float = _knob(0.5, 'the reference augmentation: horizontal flip probability')
    test_size: int = _knob(128, 'the reference test transform: resize to this side')
    norm_eps: float = _knob(
        10.0, 'per-image normalization (x - mean) / sqrt(var + eps) on the 0-255 scale'
    )
    quick_pad: int = _knob(
        4, '`--preset 32` only (not the reference): zero-pad 4, random 32x32 crop, test at 32'
    )


RECIPE = Recipe()
"""The reference's recipe, the defaults of every flag and of the benchmark."""


def describe(recipe: Recipe = RECIPE) -> list[tuple[str, object, str]]:
    """(field, value, reason) for every knob, in order: the README's recipe table."""
    return [
        (f.name, getattr(recipe, f.name), f.metadata['why']) for f in dataclasses.fields(recipe)
    ]


def markdown_table(recipe: Recipe = RECIPE) -> str:
    """The recipe as the README's markdown table (a test keeps the README in step)."""
    rows = ['| knob | value | why |', '|---|---|---|']
    rows += [f'| `{name}` | {value!r} | {why} |' for name, value, why in describe(recipe)]
    return '\n'.join(rows)
