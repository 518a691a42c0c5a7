"""The reference command line and its validation."""

import os
import re
from typing import Literal

import pytest

from trainer import registry
from trainer.cli import parse_args


def test_reference_defaults():
    args = parse_args([])
    assert (args.save_path, args.epoch, args.batch, args.gpu, args.start_epoch) == (
        './',
        300,
        64,
        -1,
        1,
    )
    assert (args.train_batch_divide, args.test_batch_divide, args.lr) == (1, 1, 0.1)
    assert (args.dataset, args.preset, args.plot_dir) == ('cifar10', '122', './img')
    # issue 24, 13: the plots go inside the run folder (the reference's -p ./ keeps ./img)
    assert parse_args(['-p', 'runs/a']).plot_dir == os.path.join('runs/a', 'img')
    assert parse_args(['-p', 'runs/a', '--img-dir', 'pics']).plot_dir == 'pics'
    assert args.load_model is None and args.load_optimizer is None and args.load_log is None


def test_both_reference_command_lines():
    short = parse_args('-e 300 -b 64 -g 0 -lr 0.1'.split())
    full = parse_args('-p ./ -e 300 -b 64 -g 0 -s 1 -trb 1 -teb 1 -lr 0.1'.split())
    assert vars(short) == vars(full)
    assert (full.gpu, full.lr) == (0, 0.1)
    longs = parse_args(
        '--save_path out --epoch 3 --batch 8 --train_batch_divide 2 --test_batch_divide 4 '
        '--lr 0.05 --dataset cifar100 --preset 32 --seed 1 --img-dir pics --workers 0'.split()
    )
    assert (longs.save_path, longs.epoch, longs.batch, longs.train_batch_divide) == (
        'out',
        3,
        8,
        2,
    )
    assert (longs.test_batch_divide, longs.lr, longs.dataset, longs.seed) == (
        4,
        0.05,
        'cifar100',
        1,
    )


@pytest.mark.parametrize(
    'argv, message',
    [
        ('-b 0', 'argument -b/--batch: must be a positive integer, got 0'),
        ('-b -3', 'argument -b/--batch: must be a positive integer, got -3'),
        ('-e 0', 'argument -e/--epoch: must be a positive integer, got 0'),
        ('-e x', "argument -e/--epoch: must be an integer, got 'x'"),
        ('-b 64 -trb 3', 'argument -b/--batch: 64 is not divisible by -trb/--train_batch_divide 3'),
        ('--dataset mnist', "argument --dataset: invalid choice: 'mnist'"),
        ('-lr 0', 'argument -lr/--lr: must be a positive number, got 0'),
        ('-lr nan', 'argument -lr/--lr: must be a positive number, got nan'),
        ('-g -2', 'argument -g/--gpu: must be -1 (CPU) or a GPU id, got -2'),
        ('-m missing.npz', 'argument -m/--load_model: no such file: missing.npz'),
        ('-e 5 -s 6', 'argument -s/--start_epoch: 6 is past -e 5'),
        ('--workers -1', 'argument --workers: must be 0 or more, got -1'),
    ],
)
def test_bad_values_are_refused_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv.split())
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def user_net(n_classes: int, width: int = 8, mode: Literal['a', 'b'] = 'a', fast: bool = True):
    """A user's factory.

    Args:
        n_classes: number of classes.
        width: channels.
    """


def test_the_model_flags_are_the_factorys_keywords(capsys):
    registry.register('user-net', user_net)
    options = parse_args(['--arch', 'user-net', '--width', '4', '--mode', 'b', '--plain'])
    assert options.arch == 'user-net'
    assert options.model_options == {'width': 4, 'mode': 'b', 'fast': False}
    assert parse_args(['--arch', 'user-net']).model_options == {}  # the factory's defaults
    assert parse_args(['--arch', 'user-net', '--no-fast']).model_options == {'fast': False}
    with pytest.raises(SystemExit):
        parse_args(['--arch', 'user-net', '--help'])
    assert re.search(r'--width WIDTH +channels \(default: 8\)', capsys.readouterr().out)


@pytest.mark.parametrize(
    'argv, message',
    [
        (['--arch', 'user-net', '--mode', 'c'], "argument --mode: invalid choice: 'c'"),
        (['--arch', 'user-net', '--width', 'x'], "argument --width: must be an integer, got 'x'"),
        (['--arch', 'chainer.links:Linear', '--plain'], 'unrecognized arguments: --plain'),
        (['--init', 'he', '--arch', 'user-net'], 'unrecognized arguments: --init he'),
        (['--arch', 'nonesuch'], '--arch nonesuch: not a registered architecture'),
    ],
)
def test_a_bad_model_flag_is_the_parsers_one_line(argv, message, capsys):
    registry.register('user-net', user_net)
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err.splitlines()[-1]


def test_squeezenets_flags_keep_the_reference_spellings():
    assert parse_args(['--init', 'he', '--plain']).model_options == {'init': 'he', 'fast': False}
    assert parse_args([]).model_options == {} and parse_args([]).arch is None


def test_a_bad_value_of_a_literal_option_is_refused_by_the_parser(tmp_path, capsys):
    """SqueezeNet's init is a Literal: its choices are the parser's (one line, status 2)."""
    import main

    with pytest.raises(SystemExit) as stop:
        main.main(['--init', 'bogus', '-p', str(tmp_path / 'run'), '--workers', '0'])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "argument --init: invalid choice: 'bogus'" in err and "'he'" in err


def test_a_bad_value_the_factory_refuses_is_one_line(tmp_path, capsys):
    from trainer import registry

    with pytest.raises(registry.ArchitectureError) as error:
        registry.build('squeezenet', 10, init='bogus')  # from Python: the factory refuses
    assert str(error.value) == (
        "--arch squeezenet --init bogus: unknown initializer 'bogus': choose one of orthonormal, he"
    )


def test_the_validation_split_and_fine_tuning_flags(tmp_path):
    default = parse_args([])
    assert (default.val_size, default.val_seed, default.select_on_test) == (0, 0, False)
    assert default.init_from is None
    weights = tmp_path / 'model.npz'
    weights.write_bytes(b'')
    args = parse_args(
        ['--val-size', '0.1', '--val-seed', '3', '--early-stopping', 'val/main/loss']
        + ['--init-from', str(weights)]
    )
    assert (args.val_size, args.val_seed, args.early_stopping) == (0.1, 3, 'val/main/loss')
    assert args.init_from == str(weights)
    assert parse_args(['--val-size', '5000']).val_size == 5000
    test_set = parse_args(['--early-stopping', 'validation/main/loss', '--select-on-test'])
    assert test_set.select_on_test


@pytest.mark.parametrize(
    'argv, message',
    [
        ('--val-size 2.5', 'argument --val-size: a fraction must be between 0 and 1, got 2.5'),
        ('--val-size -1', 'argument --val-size: must be 0 or more (0: no split), got -1'),
        ('--val-seed -1', 'argument --val-seed: must be in 0..4294967295, got -1'),
        ('--early-stopping validation/main/loss', 'argument --early-stopping validation/main/loss'),
        ('--early-stopping val/main/accuracy', 'this run has no validation split'),
        ('--init-from nonesuch.npz', 'argument --init-from: no such file: nonesuch.npz'),
    ],
)
def test_bad_split_and_fine_tuning_flags_are_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv.split())
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err.splitlines()[-1]


def test_issue24_10_a_vanishing_lr_is_a_warning(capsys):
    assert parse_args(['-lr', '1e-30']).lr == 1e-30
    assert capsys.readouterr().err == (
        'warning: -lr 1e-30 is so small that lr x gradient falls below the float32 '
        'resolution of the weights: training will change nothing\n'
    )
    parse_args(['-lr', '0.001'])
    assert capsys.readouterr().err == ''


def test_issue24_16_help_says_each_default_once_and_keeps_the_description(capsys):
    from trainer.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser('Train: python main.py -e 3\n\nPredict: python main.py predict').parse_args(
            ['--help']
        )
    text = ' '.join(capsys.readouterr().out.split('\n'))
    assert 'Train: python main.py -e 3  Predict:' in text  # two lines, not one paragraph
    assert '(default: None)' not in text
    assert ' '.join(text.split()).count('(default: SAVE_PATH/img)') == 1
    assert 'which CIFAR' in text and '(default: cifar10)' in ' '.join(text.split())
