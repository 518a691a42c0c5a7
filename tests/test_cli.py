"""The reference command line and its validation."""

import pytest

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
    assert (args.dataset, args.preset, args.img_dir) == ('cifar10', '122', 'img')
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
