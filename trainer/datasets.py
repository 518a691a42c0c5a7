"""CIFAR-10 / CIFAR-100 in the official python format, kept as uint8 in memory.

``chainer.datasets.get_cifar10`` converts the whole set to float32 (600 MB for
CIFAR-10 train); here images stay uint8 (N, 3, 32, 32) and are converted per batch by
the transforms. Sources: the official ``*.tar.gz`` archive, its extracted folder, or,
with no path, the official download through Chainer's download cache.
"""

import io
import os
import pickle
import tarfile
import urllib.error
from dataclasses import dataclass
from pathlib import Path

import numpy as np

URLS = {
    'cifar10': 'https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz',
    'cifar100': 'https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz',
}
# Per data set: the folder inside the archive, train and test members, the metadata
# member, and the keys of the labels and of the label names.
LAYOUTS = {
    'cifar10': (
        'cifar-10-batches-py',
        [f'data_batch_{i}' for i in range(1, 6)],
        ['test_batch'],
        'batches.meta',
        b'labels',
        b'label_names',
    ),
    'cifar100': (
        'cifar-100-python',
        ['train'],
        ['test'],
        'meta',
        b'fine_labels',
        b'fine_label_names',
    ),
}
N_CLASSES = {'cifar10': 10, 'cifar100': 100}


class DataError(ValueError):
    """The data set could not be read; the message names the path and what is wrong."""


@dataclass(frozen=True)
class Split:
    """One split: images uint8 (N, 3, 32, 32) in RGB order, labels int32 (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Cifar:
    """A loaded CIFAR data set: both splits and the class names."""

    train: Split
    test: Split
    label_names: list[str]

    @property
    def n_classes(self) -> int:
        return len(self.label_names)


def load_cifar(name: str = 'cifar10', path: str | os.PathLike | None = None) -> Cifar:
    """Load CIFAR-10 or CIFAR-100 from ``path`` (archive or folder), or download it.

    Raises DataError with a one-line message for anything unusable: a missing path, a
    truncated or foreign file, wrong shapes or labels, or no network and no path.
    """
    if name not in LAYOUTS:
        raise DataError(f'unknown dataset {name!r}: choose one of {", ".join(LAYOUTS)}')
    if path is None:
        path = download(name)
    path = Path(path)
    if not path.exists():
        raise DataError(f'{path}: no such file or directory')
    folder, train_members, test_members, meta_member, label_key, names_key = LAYOUTS[name]
    read = _archive_reader(path, folder) if path.is_file() else _folder_reader(path, folder)
    meta = read(meta_member)
    try:
        label_names = [n.decode() if isinstance(n, bytes) else n for n in meta[names_key]]
    except (KeyError, TypeError, AttributeError):
        raise DataError(f'{path}: {meta_member} has no {names_key.decode()}') from None
    if len(label_names) != N_CLASSES[name]:
        raise DataError(
            f'{path}: {meta_member} names {len(label_names)} classes, not {N_CLASSES[name]}'
        )
    train = _split(path, read, train_members, label_key, N_CLASSES[name])
    test = _split(path, read, test_members, label_key, N_CLASSES[name])
    return Cifar(train, test, label_names)


def download(name: str) -> str:
    """Fetch the official archive into Chainer's download cache (once) and return its path."""
    import chainer

    url = URLS[name]
    try:
        return chainer.dataset.cached_download(url)
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, 'reason', error)
        raise DataError(
            f'could not download {url} ({reason}); with no network, pass --data PATH to a '
            f'local {Path(url).name} or its extracted folder'
        ) from None


def _archive_reader(path: Path, folder: str):
    try:
        archive = tarfile.open(path, 'r:*')
        names = {m.name: m for m in archive.getmembers() if m.isfile()}
    except (tarfile.TarError, EOFError, OSError, ValueError) as error:
        reason = str(error).splitlines()[0].rstrip(':')
        raise DataError(f'{path}: not a readable CIFAR archive ({reason})') from None

    def read(member: str) -> dict:
        info = names.get(f'{folder}/{member}')
        if info is None:
            raise DataError(f'{path}: no {folder}/{member} in the archive (not {folder}?)')
        try:
            raw = archive.extractfile(info).read()
        except (tarfile.TarError, EOFError, OSError) as error:
            raise DataError(f'{path}: truncated or corrupt archive ({error})') from None
        return _unpickle(path, member, raw)

    return read


def _folder_reader(path: Path, folder: str):
    root = path / folder if (path / folder).is_dir() else path

    def read(member: str) -> dict:
        file = root / member
        if not file.is_file():
            raise DataError(f'{path}: no {member} in {root} (not an extracted {folder}?)')
        return _unpickle(path, member, file.read_bytes())

    return read


def _unpickle(path: Path, member: str, raw: bytes) -> dict:
    try:
        batch = pickle.load(io.BytesIO(raw), encoding='bytes')
    except Exception as error:  # any unpickling failure means a damaged or foreign file
        raise DataError(f'{path}: {member} is not a CIFAR batch ({error})') from None
    if not isinstance(batch, dict):
        raise DataError(f'{path}: {member} is not a CIFAR batch (a {type(batch).__name__})')
    return batch


def _split(path: Path, read, members: list[str], label_key: bytes, n_classes: int) -> Split:
    images, labels = [], []
    for member in members:
        batch = read(member)
        if b'data' not in batch or label_key not in batch:
            raise DataError(f'{path}: {member} lacks data or {label_key.decode()}')
        data = np.asarray(batch[b'data'])
        label = np.asarray(batch[label_key])
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise DataError(
                f'{path}: {member} data is {data.dtype} {data.shape}, not uint8 (N, 3072)'
            )
        if label.shape != (len(data),):
            raise DataError(f'{path}: {member} has {label.size} labels for {len(data)} images')
        if label.size and (label.min() < 0 or label.max() >= n_classes):
            raise DataError(f'{path}: {member} has labels outside 0..{n_classes - 1}')
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(label.astype(np.int32))
    return Split(np.concatenate(images), np.concatenate(labels))
