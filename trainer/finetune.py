"""Fine-tuning: start a run from a trained model's weights (``--init-from``).

``init_from(model, path, n_classes)`` loads every array of a ``model.npz`` or a snapshot
into ``model`` whose name and shape match. The arrays that differ only in their class
count (the head of a model trained on another data set: SqueezeNet's ``conv10/conv``, a
ResNet's ``head``) keep the fresh initialization of ``model``, layer by layer: a layer
with one such array is new as a whole. Anything else that does not fit (an array missing
or unknown, a shape that differs elsewhere, another precision, NaN) is another
architecture, one ModelFileError line, and nothing is loaded.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import chainer
import numpy as np
from chainer.serializers import npz

from trainer.errors import ModelFileError
from trainer.run_folder import key_mismatch, model_arrays, read_npz, read_record_beside


@dataclass(frozen=True)
class InitFrom:
    """What ``init_from`` did: the layers loaded and the layers left new.

    Args:
        path: the weights file.
        kind: 'model' (a model.npz) or 'snapshot'.
        loaded: the layers (link paths, a whole sub-tree by its top) loaded from the file.
        new: the layers re-initialised because their class count differs.
        file_classes: the file's class count when the head differs, else None.
    """

    path: str
    kind: str
    loaded: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    file_classes: int | None = None

    def lines(self, n_classes: int) -> list[str]:
        """Two lines for the user: the layers loaded, the layers new (if any)."""
        lines = [f'--init-from {self.path}: loaded {_listing(self.loaded)}']
        if self.new:
            lines.append(
                f'--init-from {self.path}: new (the file has {self.file_classes} classes, '
                f'this run {n_classes}): {_listing(self.new)}'
            )
        return lines


def init_from(model: chainer.Link, path: str | os.PathLike, n_classes: int) -> InitFrom:
    """Load the matching weights of ``path`` into ``model``; a new head where the class
    count differs. Returns what was loaded and what is new; ModelFileError for a file of
    another architecture (one line, nothing loaded)."""
    loaded, arrays = plan(model, path, n_classes)
    # not strict: the new layers' arrays are left out, and keep their initialization
    npz.NpzDeserializer(arrays, strict=False).load(model)
    return loaded


def plan(model: chainer.Link, path: str | os.PathLike, n_classes: int) -> tuple[InitFrom, dict]:
    """What ``init_from`` would load into ``model``, and the arrays, without loading them.

    Raises the same ModelFileError, so a caller can check a file before it starts a run.
    """
    raw = read_npz(path)
    kind, weights = model_arrays(raw, path)
    expected = npz.serialize(model)
    if mismatch := key_mismatch(weights, expected):
        raise ModelFileError(
            f'{path}: --init-from weights of another architecture{_recorded_arch(path)}: {mismatch}'
        )
    heads, file_classes = _head_arrays(path, weights, expected, n_classes)
    new_layers = {key.rpartition('/')[0] for key in heads}
    fresh = {key for key in expected if key.rpartition('/')[0] in new_layers}
    for key in sorted(expected.keys() - fresh):
        _check_array(path, key, weights[key], expected[key])
    load = {key: weights[key] for key in expected.keys() - fresh}
    return InitFrom(
        path=str(path),
        kind=kind,
        loaded=_layers(expected.keys() - fresh, expected.keys()),
        new=_layers(fresh, expected.keys()),
        file_classes=file_classes,
    ), load


def file_record(path: str | os.PathLike) -> dict:
    """What ``run.json`` keeps of an ``--init-from`` file: its absolute path and SHA-256."""
    return {'path': str(Path(path).resolve()), 'sha256': _sha256(path)}


def _head_arrays(path, weights: dict, expected: dict, n_classes: int) -> tuple[set, int | None]:
    """The arrays whose shape differs only in the class count, and the file's class count.

    A shape that differs any other way is another architecture (ModelFileError).
    """
    heads, counts = set(), set()
    for key, value in sorted(expected.items()):
        if not _initialized(value):
            continue
        got, want = weights[key].shape, np.shape(value)
        if got == want:
            continue
        count = _class_count(got, want, n_classes)
        if count is None:
            raise ModelFileError(
                f'{path}: --init-from weights of another architecture: {key} is {got}, the '
                f'model expects {want}'
            )
        heads.add(key)
        counts.add(count)
    if len(counts) > 1:
        raise ModelFileError(
            f'{path}: --init-from weights of another architecture: its head arrays disagree '
            f'on the class count ({", ".join(map(str, sorted(counts)))})'
        )
    return heads, counts.pop() if counts else None


def _class_count(got: tuple, want: tuple, n_classes: int) -> int | None:
    """The file's class count when ``got`` differs from ``want`` on one class axis only."""
    if len(got) != len(want):
        return None
    differ = [axis for axis in range(len(got)) if got[axis] != want[axis]]
    if len(differ) == 1 and want[differ[0]] == n_classes:
        return got[differ[0]]
    return None


def _check_array(path, key: str, array: np.ndarray, value) -> None:
    if not _initialized(value):
        return
    want = np.dtype(value.dtype)
    if want.kind == 'f' and array.dtype != want:
        raise ModelFileError(f'{path}: {key} is {array.dtype}, the model expects {want}')
    if array.dtype.kind == 'f' and not np.isfinite(array).all():
        raise ModelFileError(
            f'{path}: {key} holds NaN or infinite values (a diverged run?); use an earlier snapshot'
        )


def _initialized(value) -> bool:
    dtype = getattr(value, 'dtype', None)
    return dtype is not None and dtype.kind != 'O'


def _layers(keys: set, every: set) -> list[str]:
    """The fewest link paths covering ``keys`` exactly: a sub-tree whose arrays are all in
    ``keys`` is named by its top (``fire2``, not its twenty arrays)."""
    keys = set(keys)

    def covered(prefix: str) -> bool:
        under = [key for key in every if key.startswith(prefix + '/')]
        return bool(under) and all(key in keys for key in under)

    names = set()
    for key in keys:
        parts = key.split('/')[:-1] or [key]
        for depth in range(1, len(parts) + 1):
            prefix = '/'.join(parts[:depth])
            if covered(prefix):
                names.add(prefix)
                break
        else:
            names.add(key)
    return sorted(names, key=_natural)


def _natural(name: str) -> list:
    """Sort key: fire2 before fire10."""
    return [int(part) if part.isdigit() else part for part in re.split(r'(\d+)', name)]


def _listing(names: list[str]) -> str:
    return f'{len(names)} layer{"s" * (len(names) != 1)} ({", ".join(names)})'


def _recorded_arch(path) -> str:
    """' (arch NAME, says its run.json)' when the file's run folder records one, else ''."""
    record = read_record_beside(path)
    arch = record['settings'].get('arch') if record else None
    return f' (arch {arch}, says its run.json)' if arch else ''


def _sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(Path(path), 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()
