"""The one set of value checks (command lines and HTTP queries)."""

import argparse

import pytest

from trainer import validators


@pytest.mark.parametrize(
    'check, text, value',
    [
        (validators.positive, '3', 3),
        (validators.non_negative, '0', 0),
        (validators.seed, '4294967295', 2**32 - 1),
        (validators.positive_float, '1e-3', 1e-3),
    ],
)
def test_good_values(check, text, value):
    assert check(text) == value


@pytest.mark.parametrize(
    'check, text, message',
    [
        (validators.positive, '0', 'must be a positive integer, got 0'),
        (validators.positive, 'x', "must be an integer, got 'x'"),
        (validators.non_negative, '-1', 'must be 0 or more, got -1'),
        (validators.seed, '-1', 'must be in 0..4294967295, got -1'),
        (validators.positive_float, 'inf', 'must be a positive number, got inf'),
        (validators.positive_float, 'nan', 'must be a positive number, got nan'),
    ],
)
def test_bad_values_say_why(check, text, message):
    with pytest.raises(ValueError, match=message):
        check(text)


def test_argtype_turns_the_error_into_argparse_s():
    parse = validators.argtype(validators.integer, 0, 65535)
    assert parse('80') == 80
    with pytest.raises(argparse.ArgumentTypeError, match='must be in 0..65535, got 70000'):
        parse('70000')
