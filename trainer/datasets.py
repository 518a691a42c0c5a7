"""The data sets: CIFAR-10 / CIFAR-100 in the official python format, or a folder of images,
kept as uint8 in memory.

``chainer.datasets.get_cifar10`` converts the whole set to float32 (600 MB for
CIFAR-10 train); here images stay uint8 (N, 3, 32, 32) and are converted per batch by
the transforms. Sources: the official ``*.tar.gz`` archive, its extracted folder, or,
with no path, the official download through Chainer's download cache. A folder of
one's own images (``--dataset folder``) is read by ``trainer.folders`` into the same arrays.
"""

import io
import os
import pickle
import tarfile
import urllib.error
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainer.errors import DataError

CIFAR10_NAMES = tuple('airplane automobile bird cat deer dog frog horse ship truck'.split())
# CIFAR-100's fine_label_names in the official (label) order, which is alphabetical.
CIFAR100_NAMES = tuple(
    """
    apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus
    butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch
    crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo
    keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain
    mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain
    plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk
    skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank
    telephone television tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf
    woman worm
    """.split()
)


@dataclass(frozen=True)
class DatasetSpec:
    """Where a CIFAR data set comes from and how its official python archive is laid out.

    Args:
        url: the official download.
        folder: the folder inside the archive.
        train_members, test_members: the pickled batches of each split.
        meta_member: the batch holding the class names.
        label_key, names_key: the keys of the labels and of the class names.
        label_names: the class names in label order (also in the archive's metadata).
    """

    url: str
    folder: str
    train_members: tuple[str, ...]
    test_members: tuple[str, ...]
    meta_member: str
    label_key: bytes
    names_key: bytes
    label_names: tuple[str, ...]

    @property
    def n_classes(self) -> int:
        return len(self.label_names)


@dataclass(frozen=True)
class FolderSpec:
    """A folder of images, ``ROOT/train/<class>/<image>`` and ``ROOT/test/...``
    (``trainer.folders``): its classes are its subfolders, known once it is read."""

    label_names: tuple[str, ...] = ()

    @property
    def n_classes(self) -> None:
        return None


DATASETS = {
    'cifar10': DatasetSpec(
        url='https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz',
        folder='cifar-10-batches-py',
        train_members=tuple(f'data_batch_{i}' for i in range(1, 6)),
        test_members=('test_batch',),
        meta_member='batches.meta',
        label_key=b'labels',
        names_key=b'label_names',
        label_names=CIFAR10_NAMES,
    ),
    'cifar100': DatasetSpec(
        url='https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz',
        folder='cifar-100-python',
        train_members=('train',),
        test_members=('test',),
        meta_member='meta',
        label_key=b'fine_labels',
        names_key=b'fine_label_names',
        label_names=CIFAR100_NAMES,
    ),
    'folder': FolderSpec(),
}
"""Every data set the trainer reads, by its --dataset name: the one table of them."""
N_CLASSES = {name: spec.n_classes for name, spec in DATASETS.items() if spec.n_classes}
"""The class counts known before loading (a folder's come from its subfolders)."""


@dataclass(frozen=True)
class Split:
    """One split: images uint8 (N, 3, 32, 32) in RGB order, labels int32 (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Cifar:
    """A loaded data set: both splits and the class names (CIFAR's, or a folder's).

    ``val`` is a folder's optional ``val/`` split; ``skipped`` names the images left out
    as unreadable (``skip_bad_images``), each ``path: reason``.
    """

    train: Split
    test: Split
    label_names: list[str]
    val: Split | None = None
    skipped: tuple[str, ...] = ()

    @property
    def n_classes(self) -> int:
        return len(self.label_names)


def load_dataset(
    name: str = 'cifar10', path: str | os.PathLike | None = None, skip_bad_images: bool = False
) -> Cifar:
    """The data set ``name`` (``--dataset``) from ``path`` (``--data``): see ``load_cifar`` and
    ``trainer.folders.load_image_folder`` (which alone uses ``skip_bad_images``)."""
    if name != 'folder':
        return load_cifar(name, path)
    if path is None:
        raise DataError(
            '--dataset folder needs --data PATH: a folder holding train/<class>/<image> and '
            'test/<class>/<image>'
        )
    from trainer.folders import load_image_folder  # (it imports this module)

    return load_image_folder(path, skip_bad=skip_bad_images)


def load_cifar(name: str = 'cifar10', path: str | os.PathLike | None = None) -> Cifar:
    """Load CIFAR-10 or CIFAR-100 from ``path`` (archive or folder), or download it.

    Raises DataError with a one-line message for anything unusable: a missing path, a
    truncated or foreign file, wrong shapes or labels, or no network and no path.
    """
    if name not in N_CLASSES:
        raise DataError(f'unknown dataset {name!r}: choose one of {", ".join(N_CLASSES)}')
    spec = DATASETS[name]
    if path is None:
        path = download(name)
    path = Path(path)
    if not path.exists():
        raise DataError(f'{path}: no such file or directory')
    folder = spec.folder
    read = _archive_reader(path, folder) if path.is_file() else _folder_reader(path, folder)
    meta = read(spec.meta_member)
    try:
        names = meta[spec.names_key]
        label_names = [n.decode() if isinstance(n, bytes) else n for n in names]
        if not all(isinstance(n, str) for n in label_names):
            raise TypeError('not names')
    except (KeyError, TypeError, AttributeError, UnicodeDecodeError):
        raise DataError(f'{path}: {spec.meta_member} has no {spec.names_key.decode()}') from None
    if len(label_names) != spec.n_classes:
        raise DataError(
            f'{path}: {spec.meta_member} names {len(label_names)} classes, not {spec.n_classes}'
        )
    train = _split(path, read, spec.train_members, spec.label_key, spec.n_classes)
    test = _split(path, read, spec.test_members, spec.label_key, spec.n_classes)
    return Cifar(train, test, label_names)


def download(name: str) -> str:
    """Fetch the official archive into Chainer's download cache (once) and return its path."""
    import chainer

    url = DATASETS[name].url
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
            hint = ' (a folder of images? --dataset folder)' if (path / 'train').is_dir() else ''
            raise DataError(f'{path}: no {member} in {root} (not an extracted {folder}?){hint}')
        return _unpickle(path, member, file.read_bytes())

    return read


UNPICKLABLE = frozenset(
    (module, name)
    for numpy in ('numpy.core', 'numpy._core')  # NumPy 1 and NumPy 2 name them so
    for module, name in (
        (f'{numpy}.multiarray', '_reconstruct'),
        (f'{numpy}.multiarray', 'scalar'),
        (f'{numpy}.numeric', '_frombuffer'),
    )
) | {('numpy', 'ndarray'), ('numpy', 'dtype'), ('_codecs', 'encode')}
"""The only globals a CIFAR batch may name: what NumPy rebuilds its arrays and scalars with
(and ``_codecs.encode``, how protocol 2 spells bytes). Dicts, lists, bytes, str and ints
need none. Anything else (a class whose ``__reduce__`` runs a command) is refused unrun."""


class _BatchUnpickler(pickle.Unpickler):
    """An Unpickler that admits only ``UNPICKLABLE``: the official format, never code."""

    def find_class(self, module: str, name: str):
        if (module, name) in UNPICKLABLE:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f'it names {module}.{name}, which a CIFAR batch never does (refused unrun)'
        )


def _unpickle(path: Path, member: str, raw: bytes) -> dict:
    try:
        batch = _BatchUnpickler(io.BytesIO(raw), encoding='bytes').load()
    except Exception as error:  # any unpickling failure means a damaged or foreign file
        raise DataError(f'{path}: {member} is not a CIFAR batch ({error})') from None
    if not isinstance(batch, dict):
        raise DataError(f'{path}: {member} is not a CIFAR batch (a {type(batch).__name__})')
    return batch


def _split(path: Path, read, members: tuple[str, ...], label_key: bytes, n_classes: int) -> Split:
    images, labels = [], []
    for member in members:
        batch = read(member)
        if b'data' not in batch or label_key not in batch:
            raise DataError(f'{path}: {member} lacks data or {label_key.decode()}')
        try:
            data = np.asarray(batch[b'data'])
            label = np.asarray(batch[label_key])
        except (ValueError, TypeError) as error:  # ragged or otherwise not an array
            raise DataError(f'{path}: {member} data or labels are not arrays ({error})') from None
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise DataError(
                f'{path}: {member} data is {data.dtype} {data.shape}, not uint8 (N, 3072)'
            )
        if label.shape != (len(data),):
            raise DataError(f'{path}: {member} has {label.size} labels for {len(data)} images')
        if label.size and label.dtype.kind not in 'iu':
            raise DataError(
                f'{path}: {member} has labels of type {label.dtype} (the first: '
                f'{_first(label)}), not integers 0..{n_classes - 1}'
            )
        if label.size and (label.min() < 0 or label.max() >= n_classes):
            raise DataError(f'{path}: {member} has labels outside 0..{n_classes - 1}')
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(label.astype(np.int32))
    if not sum(len(label) for label in labels):
        raise DataError(f'{path}: no images in {", ".join(members)}')
    return Split(np.concatenate(images), np.concatenate(labels))


def _first(label: np.ndarray) -> str:
    return repr(label.flat[0].item() if hasattr(label.flat[0], 'item') else label.flat[0])
