"""Loading CIFAR in the official format, and the errors for unusable data."""

import dataclasses
import os
import pickle
import re
import tarfile
import urllib.error

import chainer
import numpy as np
import pytest
from conftest import write_cifar10

from trainer import datasets
from trainer.datasets import load_cifar
from trainer.errors import DataError


def test_archive_and_folder_give_the_same_uint8_data(tmp_path):
    archive = write_cifar10(tmp_path / 'a')
    folder = write_cifar10(tmp_path / 'b', archive=False)
    a = load_cifar('cifar10', archive)
    for path in (folder, folder / 'cifar-10-batches-py'):
        b = load_cifar('cifar10', path)
        np.testing.assert_array_equal(a.train.images, b.train.images)
        np.testing.assert_array_equal(a.test.labels, b.test.labels)
    assert a.train.images.dtype == np.uint8
    assert a.train.images.shape == (100, 3, 32, 32)
    assert a.test.images.shape == (40, 3, 32, 32)
    assert a.train.labels.dtype == np.int32
    assert a.label_names[:2] == ['airplane', 'automobile'] and a.n_classes == 10


def test_pixels_are_in_official_plane_order(tmp_path):
    archive = write_cifar10(tmp_path)
    with tarfile.open(archive) as tar:
        raw = pickle.load(tar.extractfile('cifar-10-batches-py/data_batch_1'), encoding='bytes')
    data = load_cifar('cifar10', archive)
    np.testing.assert_array_equal(data.train.images[0, 1].ravel(), raw[b'data'][0, 1024:2048])
    assert data.train.labels[0] == raw[b'labels'][0]


def test_cifar100_layout(tmp_path):
    folder = tmp_path / 'cifar-100-python'
    folder.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (('train', 30), ('test', 10)):
        batch = {
            b'data': rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b'fine_labels': list(rng.integers(0, 100, n)),
            b'coarse_labels': list(rng.integers(0, 20, n)),
        }
        (folder / split).write_bytes(pickle.dumps(batch))
    names = [f'class{i}'.encode() for i in range(100)]
    (folder / 'meta').write_bytes(pickle.dumps({b'fine_label_names': names}))
    data = load_cifar('cifar100', tmp_path)
    assert data.n_classes == 100 and len(data.train) == 30 and len(data.test) == 10


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match='no such file or directory'):
        load_cifar('cifar10', tmp_path / 'nothing.tar.gz')


def test_truncated_archive(tmp_path):
    archive = write_cifar10(tmp_path)
    cut = tmp_path / 'cut.tar.gz'
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataError, match='cut.tar.gz: (truncated|not a readable)'):
        load_cifar('cifar10', cut)


def test_not_an_archive(tmp_path):
    junk = tmp_path / 'junk.tar.gz'
    junk.write_bytes(b'hello' * 100)
    with pytest.raises(DataError, match='junk.tar.gz: not a readable CIFAR archive'):
        load_cifar('cifar10', junk)


def test_archive_of_something_else(tmp_path):
    other = tmp_path / 'other.tar.gz'
    (tmp_path / 'x.txt').write_text('x')
    with tarfile.open(other, 'w:gz') as tar:
        tar.add(tmp_path / 'x.txt', arcname='x.txt')
    with pytest.raises(DataError, match='no cifar-10-batches-py/batches.meta'):
        load_cifar('cifar10', other)


def test_cifar10_archive_read_as_cifar100(tmp_path):
    with pytest.raises(DataError, match='cifar-100-python'):
        load_cifar('cifar100', write_cifar10(tmp_path))


def test_wrong_shapes_and_labels(tmp_path):
    folder = write_cifar10(tmp_path, archive=False) / 'cifar-10-batches-py'
    good = (folder / 'test_batch').read_bytes()
    batch = pickle.loads(good)
    batch[b'data'] = batch[b'data'][:, :100]
    (folder / 'test_batch').write_bytes(pickle.dumps(batch))
    with pytest.raises(DataError, match=r'test_batch data is uint8 \(40, 100\)'):
        load_cifar('cifar10', folder)
    batch = pickle.loads(good)
    batch[b'labels'][0] = 10
    (folder / 'test_batch').write_bytes(pickle.dumps(batch))
    with pytest.raises(DataError, match='labels outside 0..9'):
        load_cifar('cifar10', folder)
    batch = pickle.loads(good)
    batch[b'labels'] = batch[b'labels'][:-1]
    (folder / 'test_batch').write_bytes(pickle.dumps(batch))
    with pytest.raises(DataError, match='39 labels for 40 images'):
        load_cifar('cifar10', folder)
    (folder / 'test_batch').write_bytes(b'not a pickle')
    with pytest.raises(DataError, match='test_batch is not a CIFAR batch'):
        load_cifar('cifar10', folder)


class _Runs:
    """A pickled object whose unpickling runs a command (issue 24, 9)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


@pytest.mark.parametrize(
    'change, message',
    [
        (
            lambda b: b.update({b'labels': ['cat'] * len(b[b'labels'])}),
            "labels of type <U3 (the first: 'cat')",
        ),
        (
            lambda b: b.update({b'labels': [float('nan')] * 40}),
            'labels of type float64 (the first: nan), not integers 0..9',
        ),
        (lambda b: b.update({b'labels': [1.5] * 40}), 'labels of type float64 (the first: 1.5)'),
        (lambda b: b.update({b'labels': [[1], [2, 3]] * 20}), 'data or labels are not arrays'),
        (
            lambda b: b.update({b'data': np.zeros((0, 3072), np.uint8), b'labels': []}),
            'no images in test_batch',
        ),
    ],
)
def test_issue24_9_crafted_labels_and_sizes_are_one_line(tmp_path, change, message):
    folder = write_cifar10(tmp_path, archive=False) / 'cifar-10-batches-py'
    batch = pickle.loads((folder / 'test_batch').read_bytes())
    change(batch)
    (folder / 'test_batch').write_bytes(pickle.dumps(batch))
    with pytest.raises(DataError, match=re.escape(message)):
        load_cifar('cifar10', folder)


@pytest.mark.parametrize('protocol', [2, 4, 5])
def test_issue24_9_a_pickle_that_would_run_code_is_refused_unrun(tmp_path, protocol):
    marker = tmp_path / 'ran'
    folder = write_cifar10(tmp_path / 'data', archive=False) / 'cifar-10-batches-py'
    batch = pickle.loads((folder / 'test_batch').read_bytes())
    batch[b'batch_label'] = _Runs(marker)
    (folder / 'test_batch').write_bytes(pickle.dumps(batch, protocol=protocol))
    with pytest.raises(DataError, match=r'test_batch is not a CIFAR batch \(it names \w+\.system'):
        load_cifar('cifar10', folder)
    assert not marker.exists()


@pytest.mark.parametrize('protocol', [2, 3, 4, 5])
def test_issue24_9_the_official_format_still_loads_in_every_protocol(tmp_path, protocol):
    folder = write_cifar10(tmp_path, archive=False) / 'cifar-10-batches-py'
    batch = pickle.loads((folder / 'test_batch').read_bytes())
    batch[b'labels'] = np.asarray(batch[b'labels'], np.int64)  # as arrays, too
    batch[b'filenames'] = [b'a.png', 'b.png']
    (folder / 'test_batch').write_bytes(pickle.dumps(batch, protocol=protocol))
    assert len(load_cifar('cifar10', folder).test) == 40


def test_unknown_dataset():
    with pytest.raises(DataError, match="unknown dataset 'mnist'"):
        load_cifar('mnist', '.')


def test_download_uses_chainers_cache(tmp_path, monkeypatch):
    archive = write_cifar10(tmp_path / 'data')
    seen = []

    def cached_download(url):
        seen.append(url)
        return str(archive)

    monkeypatch.setattr(chainer.dataset, 'cached_download', cached_download)
    assert len(load_cifar('cifar10').train) == 100
    assert seen == [datasets.DATASETS['cifar10'].url]


def test_no_network_and_no_path(monkeypatch, tmp_path):
    monkeypatch.setenv('CHAINER_DATASET_ROOT', str(tmp_path))

    def offline(url):
        raise urllib.error.URLError('Name or service not known')

    monkeypatch.setattr(chainer.dataset, 'cached_download', offline)
    with pytest.raises(DataError, match='could not download .* pass --data PATH'):
        load_cifar('cifar10')


def test_no_network_real_downloader(monkeypatch, tmp_path):
    """Chainer's own downloader against a refused port gives the same one-line error."""
    monkeypatch.setenv('CHAINER_DATASET_ROOT', str(tmp_path))
    spec = dataclasses.replace(
        datasets.DATASETS['cifar10'], url='http://127.0.0.1:9/cifar-10-python.tar.gz'
    )
    monkeypatch.setitem(datasets.DATASETS, 'cifar10', spec)
    with pytest.raises(DataError, match='could not download http://127.0.0.1:9/'):
        load_cifar('cifar10')
