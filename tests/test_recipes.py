"""trainer.recipes: the presets, their table, the flags and their one-line errors."""

import dataclasses

import pytest

from trainer import recipes
from trainer.cli import parse_args
from trainer.errors import OptionError
from trainer.options import TrainOptions


def test_the_reference_has_every_trick_off():
    tricks = TrainOptions().tricks
    assert tricks == recipes.Tricks()
    assert not any(
        [tricks.label_smoothing, tricks.warmup, tricks.clip_grad, tricks.ema_decay, tricks.tta]
    )
    assert tricks.schedule == 'step' and not (tricks.cutout or tricks.mixup or tricks.cutmix)


def test_the_modern_preset_gives_every_knob_a_value_and_a_reason():
    assert set(recipes.MODERN_WHY) == set(recipes.TRICKS)
    assert all(why for _, why in recipes.MODERN_WHY.values())
    assert all(f.metadata['why'] for f in dataclasses.fields(recipes.Tricks))
    modern = TrainOptions(recipe='modern').tricks
    assert modern.schedule == 'cosine' and modern.ema_decay == 0.999 and modern.tta
    for name in recipes.TRICKS:
        recipes.check_trick(name, getattr(modern, name))


def test_a_flag_given_wins_over_the_preset():
    options = parse_args(['--recipe', 'modern', '--label-smoothing', '0', '--no-tta'])
    assert options.tricks.label_smoothing == 0.0 and options.tricks.tta is False
    assert options.tricks.schedule == 'cosine'
    options = parse_args(['--schedule', 'cosine', '--warmup', '3', '--ema-decay', '0.99'])
    assert (options.tricks.schedule, options.tricks.warmup) == ('cosine', 3.0)
    assert options.tricks.ema_decay == 0.99 and options.recipe == 'reference'


def test_the_docs_show_the_modern_table():
    from pathlib import Path

    text = Path(__file__).parents[1].joinpath('docs', 'training.md').read_text()
    assert recipes.markdown_table('modern') in text


@pytest.mark.parametrize(
    'argv, message',
    [
        (['--ema-decay', '1'], r'argument --ema-decay: must be in \(0, 1\) \(0: off\), got 1.0'),
        (['--ema-decay', '-0.5'], r'argument --ema-decay: must be in \(0, 1\)'),
        (['--label-smoothing', '1'], r'argument --label-smoothing: must be in \[0, 1\), got 1.0'),
        (['--label-smoothing', 'x'], "argument --label-smoothing: must be a number, got 'x'"),
        (['--warmup', '-1'], 'argument --warmup: must be 0 or a positive number, got -1.0'),
        (['--clip-grad', '-2'], 'argument --clip-grad: must be 0 or a positive number'),
        (['--cutout', '1.5'], 'argument --cutout: must be a fraction of the image side'),
        (['--mixup', '-1'], 'argument --mixup: must be 0 or a positive number'),
        (['--schedule', 'linear'], "argument --schedule: invalid choice: 'linear'"),
        (['--recipe', 'airbench'], "argument --recipe: invalid choice: 'airbench'"),
        (['--mixed16'], 'argument --mixed16: float16 training needs a GPU'),
    ],
)
def test_a_bad_flag_is_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv)
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    import re

    assert re.search(message, lines[-1]), lines[-1]


@pytest.mark.parametrize(
    'keywords, message',
    [
        ({'ema_decay': 1.0}, r'argument --ema-decay: must be in \(0, 1\)'),
        ({'label_smoothing': -0.1}, r'argument --label-smoothing: must be in \[0, 1\)'),
        ({'warmup': -1}, 'argument --warmup: must be 0 or a positive number, got -1'),
        ({'schedule': 'linear'}, "argument --schedule: invalid choice 'linear'"),
        ({'recipe': 'x'}, "argument --recipe: invalid choice 'x'"),
        ({'tta': 1}, 'argument --tta: must be true or false'),
        ({'mixed16': True}, r'argument --mixed16: float16 training needs a GPU \(-g 0\)'),
    ],
)
def test_a_bad_keyword_is_one_option_error(keywords, message):
    with pytest.raises(OptionError, match=message):
        TrainOptions(**keywords)


@pytest.mark.parametrize(
    'keywords, message',
    [
        ({'recipe': 'modern'}, 'argument --mixed16: --clip-grad would clip the scaled gradients'),
        ({'ema_decay': 0.99}, 'argument --mixed16: --ema-decay would average in float16'),
    ],
)
def test_mixed16_refuses_the_tricks_it_would_break(keywords, message):
    with pytest.raises(OptionError, match=message):
        TrainOptions(mixed16=True, gpu=0, **keywords)
    TrainOptions(mixed16=True, gpu=0, recipe='modern', clip_grad=0, ema_decay=0)
