"""trainer.holdout: the held-out validation split, unit by unit and through main.py."""

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import write_cifar10

import main
from trainer import holdout
from trainer.datasets import Split, load_cifar
from trainer.errors import OptionError


def labels_of(counts):
    """Labels with ``counts[c]`` images of class c, interleaved."""
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(counts)]).astype(np.int32)
    return np.random.default_rng(1).permutation(labels)


def split_of(labels):
    return Split(np.zeros((len(labels), 3, 32, 32), np.uint8), np.asarray(labels, np.int32))


def test_the_split_is_class_balanced_seeded_sorted_and_disjoint():
    labels = labels_of([100] * 10)
    indices = holdout.split_indices(labels, 50, seed=0)
    assert len(indices) == 50 and len(set(indices)) == 50
    assert list(indices) == sorted(indices)
    assert np.bincount(labels[indices], minlength=10).tolist() == [5] * 10
    assert np.array_equal(indices, holdout.split_indices(labels, 50, seed=0))
    assert not np.array_equal(indices, holdout.split_indices(labels, 50, seed=1))


def test_uneven_classes_give_shares_with_the_remainders_to_the_largest_fractions():
    labels = labels_of([50, 30, 20])  # 10 % of each: 5, 3, 2
    assert np.bincount(labels[holdout.split_indices(labels, 10, 0)]).tolist() == [5, 3, 2]
    # 7 images: shares 3.5, 2.1, 1.4 -> 3, 2, 1 and one left, to the largest fraction (0.5)
    assert np.bincount(labels[holdout.split_indices(labels, 7, 0)]).tolist() == [4, 2, 1]


def test_the_rule_is_pinned_so_a_resume_recomputes_the_same_split():
    """A fixed split's indices and recorded hash: a change of the rule would refuse old runs,
    and the keys are a hash, not a generator's stream that a NumPy version may change."""
    labels = np.arange(1000) % 10
    held = holdout.hold_out(split_of(labels), 100, seed=0)
    assert held.indices[:5].tolist() == [3, 18, 24, 29, 31]
    assert held.record() == {
        'rule': 'class-balanced',
        'seed': 0,
        'images': 100,
        'indices_sha256': 'a5c6ad4bdede8925cb4ad4766f9b5a9aba5a10a7c82f863c2e6119b34a62886a',
    }
    digest = hashlib.blake2b(b'0:3', digest_size=8).digest()
    assert holdout.image_keys(4, 0)[3] == int.from_bytes(digest, 'big')


def test_the_parts_cover_the_training_set_once_without_copying():
    labels = labels_of([10] * 10)
    held = holdout.hold_out(split_of(labels), 0.2, seed=3)
    assert (len(held), held.n_train) == (20, 80)
    dataset = list(range(100))
    train, val = held.train_part(dataset), held.val_part(dataset)
    assert sorted([*train, *val]) == dataset
    assert list(val) == held.indices.tolist()
    no_split = holdout.hold_out(split_of(labels), 0)
    assert no_split.train_part(dataset) is dataset and no_split.record() is None


@pytest.mark.parametrize(
    'value, expected',
    [('5000', 5000), ('0', 0), ('0.1', 0.1), (20, 20), (0.25, 0.25)],
)
def test_a_size_is_a_count_or_a_fraction(value, expected):
    assert holdout.check_size(value) == expected
    assert type(holdout.check_size(value)) is type(expected)


@pytest.mark.parametrize(
    'value, message',
    [
        ('-1', 'must be 0 or more'),
        ('1.5', 'a fraction must be between 0 and 1'),
        ('ten', 'must be a count or a fraction'),
        (True, 'must be a count or a fraction'),
    ],
)
def test_a_bad_size_is_one_line(value, message):
    with pytest.raises(ValueError, match=message):
        holdout.check_size(value)


def test_a_split_that_leaves_nothing_to_train_is_refused():
    with pytest.raises(OptionError, match='leave none to train on'):
        holdout.hold_out(split_of(labels_of([5, 5])), 10)
    with pytest.raises(OptionError, match='leaves class 1 no training image'):
        holdout.hold_out(split_of(labels_of([2, 1])), 2)  # shares 1.33 and 0.67: 1 and 1


# --- through main.py ---------------------------------------------------------------------


def argv(out: Path, data: Path, *extra: str) -> list[str]:
    return [
        '-p', str(out), '-b', '20', '--preset', '32', '--workers', '0', '--seed', '0',
        '--img-dir', str(out / 'img'), '--data', str(data), '--no-progress', *extra,
    ]  # fmt: skip


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return write_cifar10(tmp_path_factory.mktemp('data'), learnable=True)


@pytest.fixture(scope='module')
def val_run(tmp_path_factory, data):
    """Two epochs with 20 of the 100 training images held out."""
    out = tmp_path_factory.mktemp('val') / 'run'
    assert main.main(argv(out, data, '-e', '2', '--val-size', '20')) == 0
    return out


def read(out: Path, name: str):
    return json.loads((out / name).read_text())


def test_the_held_out_split_is_logged_beside_the_test_set(val_run):
    log = read(val_run, 'log.json')
    for entry in log:
        assert {'val/main/loss', 'val/main/accuracy', 'val/main/accuracy/truck'} <= set(entry)
        assert {'validation/main/loss', 'validation/main/accuracy'} <= set(entry)  # the test set
        assert sum(map(sum, entry['validation/confusion'])) == 40  # still the test set's
        per_class = [v for k, v in entry.items() if k.startswith('val/main/accuracy/')]
        assert set(per_class) <= {0.0, 0.5, 1.0}  # two held-out images per class
    assert [entry['iteration'] for entry in log] == [4, 8]  # 80 training images, batch 20


def test_run_json_records_the_split(val_run, data):
    settings = read(val_run, 'run.json')['settings']
    assert settings['val_size'] == 20 and settings['train_images'] == 100
    assert settings['val_split']['images'] == 20 and settings['val_split']['seed'] == 0
    labels = load_cifar('cifar10', data).train.labels
    assert settings['val_split'] == holdout.hold_out(split_of(labels), 20).record()


def test_the_plots_show_the_validation_curve(val_run, monkeypatch):
    from test_plots import capture

    from trainer import plots

    figures, plt = capture(monkeypatch)
    plots.draw(val_run / 'img', read(val_run, 'log.json'))
    for name in ('loss.jpg', 'accuracy.jpg'):
        legend = dict(figures)[name].axes[0].get_legend()
        assert [text.get_text() for text in legend.get_texts()][:3] == [
            'train',
            'validation',
            'test',
        ]
    plt.close('all')


def test_a_resume_keeps_the_split_and_another_size_is_refused(val_run, data, tmp_path, capsys):
    import shutil

    out = tmp_path / 'run'
    shutil.copytree(val_run, out)
    assert main.main(argv(out, data, '-e', '3', '--val-size', '30')) == 1
    assert 'this run was made with val_size 20, not 30' in capsys.readouterr().err
    assert main.main(argv(out, data, '-e', '3')) == 1
    assert 'val_size 20, not 0' in capsys.readouterr().err
    assert main.main(argv(out, data, '-e', '3', '--val-size', '20', '--val-seed', '1')) == 1
    assert 'this run was made with val_split' in capsys.readouterr().err
    assert main.main(argv(out, data, '-e', '3', '--val-size', '0.2')) == 0  # the same 20
    assert [entry['iteration'] for entry in read(out, 'log.json')] == [4, 8, 12]


def test_the_default_trains_on_every_image_and_logs_no_split(tiny_run):
    settings = read(tiny_run, 'run.json')['settings']
    assert settings['val_size'] == 0 and 'val_split' not in settings
    assert not [key for key in read(tiny_run, 'log.json')[0] if key.startswith('val/')]


def test_early_stopping_watches_the_split(data, tmp_path):
    out = tmp_path / 'run'
    extra = ('-e', '2', '--val-size', '0.2', '--early-stopping', 'val/main/loss')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        assert main.main(argv(out, data, *extra)) == 0
    assert not [w for w in caught if 'not in observation' in str(w.message)]  # it was there
    assert len(read(out, 'log.json')) == 2


def status_of(argv_: list[str]) -> int:
    """main.main's exit status, the parser's (2) included."""
    try:
        return main.main(argv_)
    except SystemExit as exit_:
        return exit_.code


@pytest.mark.parametrize(
    'extra, message',
    [
        (['--early-stopping', 'validation/main/loss'], 'that is the test set'),
        (['--early-stopping', 'validation/main/accuracy', '--val-size', '20'], 'watch val/main/'),
        (['--early-stopping', 'val/main/loss'], 'this run has no validation split'),
        (['--val-size', '1.5'], 'argument --val-size: a fraction must be between 0 and 1'),
        (['--val-size', '100'], 'argument --val-size: 100 images held out'),
    ],
)
def test_choosing_on_the_test_set_or_a_missing_split_is_refused(
    data, tmp_path, capsys, extra, message
):
    status = status_of(argv(tmp_path / 'run', data, '-e', '1', *extra))
    assert status == (1 if 'held out' in message else 2)
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1]


def test_the_test_set_can_be_chosen_on_when_asked(data, tmp_path):
    extra = ('-e', '1', '--early-stopping', 'validation/main/loss', '--select-on-test')
    assert main.main(argv(tmp_path / 'run', data, *extra)) == 0
