"""The training tricks beyond the reference recipe, and the presets that set them.

Each trick is off in the reference (``--recipe reference``, the default: the run is the
reproduction, bit for bit) and is one flag; ``--recipe modern`` turns them on together
with the values timm and airbench use for CIFAR. A flag given on the command line wins
over the preset's value. ``Tricks`` is the table: every knob with its reason, as
``trainer.recipe.Recipe`` is for the reference; the resolved values go into ``run.json``.
"""

import argparse
import dataclasses
from dataclasses import dataclass, field

SCHEDULES = ('step', 'cosine')


def _knob(default, why: str):
    return field(default=default, metadata={'why': why})


@dataclass(frozen=True)
class Tricks:
    """The tricks of a run; the defaults are the reference's (all off)."""

    label_smoothing: float = _knob(0.0, 'off: the reference trains on one-hot targets')
    schedule: str = _knob('step', "the reference's step schedule (trainer.recipe)")
    warmup: float = _knob(0.0, 'off: the reference starts at the full rate')
    clip_grad: float = _knob(0.0, 'off: the reference does not clip gradients')
    ema_decay: float = _knob(0.0, 'off: the reference evaluates and saves the raw weights')
    tta: bool = _knob(False, 'off: the reference evaluates each test image once')
    cutout: float = _knob(0.0, 'off: not in the reference augmentation')
    mixup: float = _knob(0.0, 'off: the reference trains on the images as they are')
    cutmix: float = _knob(0.0, 'off: the reference trains on the images as they are')


MODERN_WHY = {
    'label_smoothing': (0.1, 'timm (`--smoothing 0.1`) and Szegedy et al. 2016'),
    'schedule': ('cosine', "timm's default (`--sched cosine`): the rate falls to 0 at the end"),
    'warmup': (
        2.0,
        'epochs of linear warm-up (timm uses 5 of 300; airbench warms up over the first '
        'quarter of its short run): 2 suits both 15 and 300 epochs',
    ),
    'clip_grad': (
        5.0,
        'a global-norm guard against early spikes (the warm-up and the mixed targets); '
        'our choice, above the norm of steady training',
    ),
    'ema_decay': (
        0.999,
        'about the last 1000 updates (1.3 epochs at -b 64); timm uses 0.9998 for '
        "ImageNet's longer epochs",
    ),
    'tta': (True, 'airbench: the mean of the logits of the image and its mirror image'),
    'cutout': (0.0, 'off: cutmix replaces it (DeVries & Taylor 2017 used half the side)'),
    'mixup': (0.8, "timm's `--mixup 0.8` (Beta's alpha), switched per batch with cutmix"),
    'cutmix': (1.0, "timm's `--cutmix 1.0`, CutMix's (Yun et al. 2019) alpha for CIFAR"),
}

RECIPES = {
    'reference': Tricks(),
    'modern': Tricks(**{name: value for name, (value, _) in MODERN_WHY.items()}),
}
"""The presets of ``--recipe``."""

TRICKS = tuple(f.name for f in dataclasses.fields(Tricks))


def check_trick(name: str, value) -> None:
    """ValueError with the reason if ``value`` is not usable for the trick ``name``."""
    if name == 'schedule':
        if value not in SCHEDULES:
            raise ValueError(f'invalid choice {value!r} (choose from {", ".join(SCHEDULES)})')
        return
    if name == 'tta':
        if not isinstance(value, bool):
            raise ValueError(f'must be true or false, got {value!r}')
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise ValueError(f'must be a number, got {value!r}')
    if name == 'label_smoothing' and not 0 <= value < 1:
        raise ValueError(f'must be in [0, 1), got {value}')
    if name == 'ema_decay' and not 0 <= value < 1:
        raise ValueError(f'must be in (0, 1) (0: off), got {value}')
    if name == 'cutout' and not 0 <= value <= 1:
        raise ValueError(f'must be a fraction of the image side in [0, 1], got {value}')
    if value < 0 or value == float('inf'):
        raise ValueError(f'must be 0 or a positive number, got {value}')


def resolve(recipe: str, **given) -> Tricks:
    """The preset ``recipe`` with the values ``given`` (None: the preset's) put in."""
    return dataclasses.replace(RECIPES[recipe], **{k: v for k, v in given.items() if v is not None})


def markdown_table(recipe: str = 'modern') -> str:
    """A preset as a markdown table, each knob with its reason (docs/training.md)."""
    rows = ['| knob | value | why |', '|---|---|---|']
    if recipe == 'modern':
        rows += [f'| `{n}` | {v!r} | {why} |' for n, (v, why) in MODERN_WHY.items()]
    else:
        rows += [
            f'| `{f.name}` | {getattr(RECIPES[recipe], f.name)!r} | {f.metadata["why"]} |'
            for f in dataclasses.fields(Tricks)
        ]
    return '\n'.join(rows)


FLAGS = {
    'recipe': '--recipe',
    'label_smoothing': '--label-smoothing',
    'schedule': '--schedule',
    'warmup': '--warmup',
    'clip_grad': '--clip-grad',
    'ema_decay': '--ema-decay',
    'tta': '--tta',
    'cutout': '--cutout',
    'mixup': '--mixup',
    'cutmix': '--cutmix',
    'mixed16': '--mixed16',
}
"""The command-line flag of each option of this module (for the one-line errors)."""


def check_options(options) -> None:
    """OptionError naming the flag for the first unusable trick of ``options``.

    ``options`` has ``recipe``, the ``TRICKS`` (None: the recipe's), ``mixed16`` and ``gpu``.
    """
    from trainer.errors import OptionError

    if options.recipe not in RECIPES:
        raise OptionError(
            f'argument --recipe: invalid choice {options.recipe!r} (choose from '
            f'{", ".join(RECIPES)})'
        )
    for name in TRICKS:
        value = getattr(options, name)
        if value is not None:
            try:
                check_trick(name, value)
            except ValueError as error:
                raise OptionError(f'argument {FLAGS[name]}: {error}') from None
    if options.mixed16 and options.gpu < 0:
        raise OptionError(
            'argument --mixed16: float16 training needs a GPU (-g 0); on the CPU train in '
            'float32 (leave --mixed16 out)'
        )
    if options.mixed16:
        tricks = resolve(options.recipe, **{n: getattr(options, n) for n in TRICKS})
        for name, why in (
            ('clip_grad', 'would clip the scaled gradients'),
            ('ema_decay', 'would average in float16, too coarse for it'),
        ):
            if getattr(tricks, name):
                raise OptionError(
                    f'argument --mixed16: {FLAGS[name]} {why}; give {FLAGS[name]} 0 with it'
                )


def _number_for(name: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'must be a number, got {text!r}') from None
        try:
            check_trick(name, value)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        return value

    parse.__name__ = name
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of this module, in a group of their own (``trainer.cli`` adds them)."""
    group = parser.add_argument_group(
        'training tricks',
        'each off in the reference recipe; --recipe modern turns them on together, and a '
        'flag given wins over the preset (see docs/training.md)',
    )
    add = group.add_argument
    add('--recipe', choices=tuple(RECIPES), default='reference', help='the preset of tricks')
    add(
        '--label-smoothing',
        type=_number_for('label_smoothing'),
        metavar='S',
        help='targets (1 - S) one-hot + S / classes, S in [0, 1)',
    )
    add('--schedule', choices=SCHEDULES, help='learning-rate schedule: step (the recipe) or cosine')
    add(
        '--warmup',
        type=_number_for('warmup'),
        metavar='EPOCHS',
        help='with --schedule cosine: epochs of linear warm-up to -lr',
    )
    add(
        '--clip-grad',
        type=_number_for('clip_grad'),
        metavar='NORM',
        help='clip the gradients to this global L2 norm (0: off)',
    )
    add(
        '--ema-decay',
        type=_number_for('ema_decay'),
        metavar='D',
        help='keep an exponential moving average of the weights and BN statistics with '
        'decay D in (0, 1), evaluated as validation_ema/* and saved as model_ema.npz (0: off)',
    )
    add(
        '--tta',
        action=argparse.BooleanOptionalAction,
        help='evaluate on the mean of the logits of each image and its mirror image',
    )
    add(
        '--cutout',
        type=_number_for('cutout'),
        metavar='SIDE',
        help='erase a square of SIDE (a fraction of the image side) in each training image',
    )
    add('--mixup', type=_number_for('mixup'), metavar='ALPHA', help="mixup with Beta's ALPHA")
    add('--cutmix', type=_number_for('cutmix'), metavar='ALPHA', help="cutmix with Beta's ALPHA")
    add(
        '--mixed16',
        action='store_true',
        help='GPU only: float16 computation with float32 weights and dynamic loss scaling '
        "(Chainer's mixed16); never the default",
    )
