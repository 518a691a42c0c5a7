"""A held-out validation split of the training set, so that nothing is chosen on the test set.

``--val-size N`` (a count, or a fraction such as 0.1) holds N training images out of
training; they are evaluated after every epoch as ``val/main/loss`` and
``val/main/accuracy`` (``val/main/accuracy/<class>``), beside the test set's
``validation/...`` keys, which keep their names so that old logs, plots and tools read
the same. Early stopping and the Optuna example choose on ``val/...``.

The split is class-balanced and seeded (``--val-seed``, default 0, apart from ``--seed``
so that runs of different seeds hold out the same images): each class gives its share of
N (the remainders of the shares go to the classes with the largest fractional parts, the
lower label first on ties): the images of that class whose keys are smallest, an image's
key being the BLAKE2b hash (8 bytes, big-endian) of ``"<seed>:<index>"``. Defined by a hash
rather than a random generator's stream, the split is the same on every NumPy version.
``run.json`` records the count, the rule, the seed and the SHA-256 of the sorted held-out
indices (``record``): a resume computes the split again and is refused if any of them
differs, so it always trains on the same images.
"""

from __future__ import annotations

import hashlib
import numbers
from dataclasses import dataclass

import numpy as np
from chainer.datasets import SubDataset

from trainer.datasets import Split
from trainer.errors import OptionError

RULE = 'class-balanced'
"""The name of the rule ``split_indices`` follows; recorded, and part of what must match."""


@dataclass(frozen=True)
class HeldOut:
    """The training set divided into what trains and what is held out, as indices.

    No image is copied: ``train_part`` and ``val_part`` are views of a data set over the
    whole training split (Chainer's ``SubDataset``). Without a split, ``train_part``
    returns the data set itself, so the reference run is exactly as before.

    Args:
        size: images in the whole training split.
        indices: the held-out images' indices into it, sorted (empty: no split).
        seed: the seed the split was drawn with.
    """

    size: int
    indices: np.ndarray
    seed: int

    def __len__(self) -> int:
        """Images held out."""
        return len(self.indices)

    @property
    def n_train(self) -> int:
        """Images that train."""
        return self.size - len(self.indices)

    def train_part(self, dataset):
        """The images of ``dataset`` (the whole training split) that train."""
        if not len(self.indices):
            return dataset
        order = np.concatenate([self._kept(), self.indices])
        return SubDataset(dataset, 0, self.n_train, order=order)

    def val_part(self, dataset):
        """The held-out images of ``dataset`` (the whole training split), in index order."""
        order = np.concatenate([self.indices, self._kept()])
        return SubDataset(dataset, 0, len(self.indices), order=order)

    def _kept(self) -> np.ndarray:
        keep = np.ones(self.size, dtype=bool)
        keep[self.indices] = False
        return np.flatnonzero(keep)

    def record(self) -> dict | None:
        """What ``run.json`` keeps of the split (None without one): enough to check that a
        resume holds out the same images."""
        if not len(self.indices):
            return None
        digest = hashlib.sha256(np.asarray(self.indices, dtype='<i8').tobytes()).hexdigest()
        return {
            'rule': RULE,
            'seed': self.seed,
            'images': len(self.indices),
            'indices_sha256': digest,
        }


def check_size(value) -> int | float:
    """A ``--val-size``: a count (0 or more: 0 is no split) or a fraction in (0, 1).

    Takes the text of the flag or a number; raises ValueError whose message completes
    "argument --val-size ...".
    """
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f'must be a count or a fraction, got {text!r}') from None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f'must be a count or a fraction, got {value!r}')
    if isinstance(value, numbers.Integral):
        if value < 0:
            raise ValueError(f'must be 0 or more (0: no split), got {value}')
        return int(value)
    if not 0 < value < 1:
        raise ValueError(f'a fraction must be between 0 and 1, got {value}')
    return float(value)


def resolve_size(size: int | float, n_train: int) -> int:
    """The held-out count: ``size`` itself, or a fraction of ``n_train`` rounded (at least 1)."""
    if isinstance(size, float):
        return max(1, round(size * n_train))
    return size


def split_indices(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """The sorted indices of ``size`` images held out of ``labels``, class by class.

    Each class gives its share of ``size`` in proportion to its images; see the module's
    docstring for the exact rule (the same labels, size and seed give the same indices).
    """
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    shares = size * counts / len(labels)
    quotas = np.floor(shares).astype(np.int64)
    left = size - int(quotas.sum())
    by_remainder = sorted(range(len(classes)), key=lambda i: (-(shares[i] - quotas[i]), i))
    for i in by_remainder[:left]:
        quotas[i] += 1
    keys = image_keys(len(labels), seed)
    held = []
    for label, quota in zip(classes, quotas, strict=True):
        members = np.flatnonzero(labels == label)
        held.append(members[np.argsort(keys[members], kind='stable')[:quota]])
    return np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)


def image_keys(n: int, seed: int) -> np.ndarray:
    """Each image's sort key for the split: BLAKE2b of ``"<seed>:<index>"`` (uint64)."""
    return np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(f'{seed}:{i}'.encode(), digest_size=8).digest(), 'big')
            for i in range(n)
        ),
        dtype=np.uint64,
        count=n,
    )


def hold_out(train: Split, size: int | float, seed: int = 0) -> HeldOut:
    """Hold ``size`` images (a count or a fraction; 0: none) out of the split ``train``.

    Raises OptionError (naming ``--val-size``) when the split would leave a class, or the
    whole training set, without a training image.
    """
    count = resolve_size(check_size(size), len(train))
    if count == 0:
        return HeldOut(len(train), np.zeros(0, dtype=np.int64), seed)
    if count >= len(train):
        raise OptionError(
            f'argument --val-size: {count} images held out of a training set of {len(train)} '
            'leave none to train on'
        )
    indices = split_indices(train.labels, count, seed)
    held = np.bincount(train.labels[indices], minlength=int(train.labels.max()) + 1)
    emptied = np.flatnonzero(held == np.bincount(train.labels, minlength=len(held)))
    emptied = [label for label in emptied if held[label]]
    if emptied:
        raise OptionError(
            f'argument --val-size: holding out {count} of {len(train)} images leaves class '
            f'{emptied[0]} no training image; hold out fewer'
        )
    return HeldOut(len(train), indices, seed)
