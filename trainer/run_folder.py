"""The run folder: the one place that knows its format, writes it and reads it back.

A run folder (``-p``) is the unit of a result. What it holds:

- ``run.json``: the settings that define the run (architecture and the options its factory
  was called with, data set, its classes and size, preset, batch, ``-trb``, lr, seed,
  processes), the epochs asked for, and one entry per session (command line, resolved
  options, versions, device, git commit). A resume whose settings differ is refused;
  prediction, serving and export rebuild the model from the architecture and its options
  here, and name its classes.
- ``snapshot_epoch_N``: the whole ``chainer.training.Trainer`` after epoch N (model,
  optimizer, iterator, log), an npz file. Snapshots are the truth: found by exact name and
  epoch number, never by time; the last ``--keep`` are kept.
- ``model.npz``, ``optimizer.npz``, ``log.json`` (and the plots in ``--img-dir``): views of
  the newest snapshot, written from its arrays right after it, and written again from it
  whenever a run opens the folder. So they always hold the newest finished epoch that has
  a snapshot, even after a crash between two writes.
- ``.lock``: held (``flock``) by the run using the folder; the kernel releases it when the
  process ends, however it ends.

Every file is written to a temporary name, flushed to disk and renamed: a crash never
leaves a half-written file, and temporaries left by a killed run are removed at start.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import lzma
import math
import os
import random
import re
import shutil
import signal
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import chainer
import numpy as np
from chainer.serializers import npz
from chainer.training import extension

from trainer import registry
from trainer.datasets import DATASETS
from trainer.errors import ModelFileError, RunFolderError
from trainer.registry import DEFAULT_ARCH

logger = logging.getLogger(__name__)

RUN_FILE = 'run.json'
MODEL_FILE = 'model.npz'
OPTIMIZER_FILE = 'optimizer.npz'
LOG_FILE = 'log.json'
LOCK_FILE = '.lock'
SNAPSHOT = 'snapshot_epoch_{}'
SNAPSHOT_NAME = re.compile(r'snapshot_epoch_([1-9][0-9]*)')
DAMAGED_SUFFIX = '.damaged'
RECORD_KEY = 'run.json'
"""The member of ``model.npz`` holding its run's settings as JSON (arch, model options,
classes, preset, normalization), so that a copied file is self-describing."""
FORMAT = 1
# Where a snapshot keeps each part: the trainer's serialization of updater -> optimizer
# 'main' -> its target L.Classifier -> predictor; the optimizer; LogReport's log (JSON).
MODEL_PREFIX = 'updater/model:main/predictor/'
OPTIMIZER_PREFIX = 'updater/optimizer:main/'
LOG_KEY = 'extensions/LogReport/_log'
EPOCH_KEY = 'updater/iterator:main/epoch'
# issue 27: the weight average (--ema-decay, trainer.ema), published beside model.npz
EMA_PREFIX = 'extensions/WeightAverage/average/'
EMA_MODEL_FILE = 'model_ema.npz'
# Settings that define a run: a resume must not change them (the epochs may grow).
DEFINING = (
    'arch',
    'model_options',
    'dataset',
    'class_names',
    'train_images',
    'test_images',
    'val_size',
    'val_split',
    'init_from',
    'preset',
    'batch',
    'train_batch_divide',
    'lr',
    'seed',
    'processes',
    'tricks',  # issue 27 (trainer.recipes)
)
TEMPORARY = re.compile(r'\..+\.(\d+)\.tmp')


# --- writing files safely ---------------------------------------------------------------


def temporary_path(path: Path) -> Path:
    """The temporary name ``path`` is written under before the rename: ``.name.PID.tmp``."""
    return path.with_name(f'.{path.name}.{os.getpid()}.tmp')


def refuse_non_regular(path: Path) -> None:
    """RunFolderError if ``path`` exists and is not a regular file (links followed).

    Renaming a temporary over ``/dev/full``, a FIFO or a socket would replace it.
    """
    kinds = {'is_dir': 'a folder', 'is_fifo': 'a FIFO', 'is_char_device': 'a character device'}
    kinds |= {'is_block_device': 'a block device', 'is_socket': 'a socket'}
    kind = next((text for test, text in kinds.items() if getattr(path, test)()), None)
    if kind is not None:
        raise RunFolderError(f'{path}: is {kind}, not a regular file; refusing to write over it')


def write_atomically(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(temporary)``, flush it to disk, rename it to ``path``.

    Never a half-written ``path``; on any error the temporary is removed and the error
    propagates (``path``, if it existed, is unchanged). An existing ``path`` that is not
    a regular file is refused before anything is written (``refuse_non_regular``).
    """
    path = Path(path)
    refuse_non_regular(path)
    tmp = temporary_path(path)
    try:
        write(str(tmp))
        with open(tmp, 'rb') as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # the rename itself, on file systems that allow it
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def save_arrays(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as a compressed npz file, atomically (as Chainer's save_npz does).

    The zip is closed explicitly even when a write fails (a full disk): NumPy's own
    ``savez_compressed`` leaves it to the garbage collector, which then prints a stray
    "Exception ignored in ZipFile.__del__" traceback after the one-line error.
    """

    def write(tmp: str) -> None:
        with open(tmp, 'wb') as f:
            archive = zipfile.ZipFile(f, 'w', zipfile.ZIP_DEFLATED, allowZip64=True)
            try:
                for key, value in arrays.items():
                    with archive.open(f'{key}.npy', 'w', force_zip64=True) as member:
                        np.lib.format.write_array(member, np.asanyarray(value))
            except BaseException:
                with contextlib.suppress(Exception):  # the first error is the one to report
                    archive.close()
                raise
            archive.close()

    write_atomically(path, write)


def remove_temporaries(folder: Path) -> list[Path]:
    """Remove temporaries that killed runs left in ``folder``; return what was removed.

    Ours are ``.NAME.PID.tmp``; one whose process still runs (another run writing plots to
    a shared ``--img-dir``) is left alone. Chainer's own snapshot writer's ``tmp*`` folders
    (runs of older versions) go too.
    """
    removed = []
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        match = TEMPORARY.fullmatch(path.name)
        if match and path.is_file() and not _running(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
        elif path.is_dir() and path.name.startswith(('tmpsnapshot_epoch_', 'tmpmodel.npz')):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _running(pid: int) -> bool:
    """True while process ``pid`` runs (a zombie, killed but not reaped, does not)."""
    if pid == os.getpid():
        return False  # this process writes nothing yet when it cleans up
    try:
        state = Path(f'/proc/{pid}/stat').read_text().rsplit(') ', 1)[-1][:1]
        return state not in ('Z', 'X')
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def deferred_signals(signums: tuple = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Hold back Ctrl-C and SIGTERM until the block ends, then deliver them.

    Only the main thread can set handlers; elsewhere the block runs unprotected.
    """
    received = []
    try:
        previous = {
            s: signal.signal(s, lambda signum, frame: received.append(signum)) for s in signums
        }
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        for signum in dict.fromkeys(received):
            signal.raise_signal(signum)


# --- reading npz files ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Declared:
    """What an npz member's ``.npy`` header declares, read before any of its data."""

    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


MAX_NPZ_BYTES = 2**30
"""The most an npz file may declare in all (1 GiB) when no model bounds it."""
UNREADABLE = (
    OSError,  # and zlib / bz2 stream errors that zipfile raises as OSError
    ValueError,
    EOFError,
    RuntimeError,  # an encrypted member
    NotImplementedError,  # an unknown compression method
    MemoryError,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    lzma.LZMAError,
    struct.error,
    KeyError,
)
"""Every way zipfile and NumPy fail on a damaged file: each becomes ModelFileError's line."""


def npz_headers(path: str | os.PathLike, what: str = 'model.npz or snapshot_epoch_N') -> dict:
    """{key: Declared} of every member of an npz file, from the headers only (no data read).

    Raises ModelFileError with one line for a missing, unreadable, foreign or damaged file.
    """
    return _read_npz(path, what, headers_only=True)


def read_npz(
    path: str | os.PathLike,
    what: str = 'model.npz or snapshot_epoch_N',
    keys: Callable[[str], bool] | None = None,
    check: Callable[[dict], None] | None = None,
    limit: int = MAX_NPZ_BYTES,
) -> dict:
    """Every array of an npz file (or those whose key ``keys`` accepts), fully read.

    Each member's ``.npy`` header is read first, and nothing more unless the shapes and
    dtypes it declares pass: ``check({key: Declared})`` (which raises to refuse), no
    object arrays, and ``limit`` bytes in all, so a small file that declares a huge array
    is refused before any memory is taken. Raises ModelFileError with one line for a
    missing, unreadable, foreign or damaged file, however zipfile or NumPy fail on it (a
    damaged file fails here, never later).
    """
    return _read_npz(path, what, keys=keys, check=check, limit=limit)


def _read_npz(path, what, keys=None, check=None, limit=MAX_NPZ_BYTES, headers_only=False):
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f'{path}: no such file')
    if not path.is_file():
        raise ModelFileError(f'{path}: not a file')
    try:
        handle = open(path, 'rb')
    except OSError as error:
        raise ModelFileError(f'{path}: cannot read ({_reason(error)})') from None
    with handle:
        if not zipfile.is_zipfile(handle):
            raise ModelFileError(f'{path}: not an npz file ({what})')
        try:
            with zipfile.ZipFile(handle) as archive:
                members = [
                    info
                    for info in archive.infolist()
                    if keys is None or keys(info.filename.removesuffix('.npy'))
                ]
                declared = {}
                for info in members:
                    with archive.open(info) as member:
                        declared[info.filename.removesuffix('.npy')] = _declared(member)
                _check_declared(path, declared, limit)
                if headers_only:
                    return declared
                if check is not None:
                    check(declared)
                arrays = {}
                for info in members:
                    with archive.open(info) as member:
                        arrays[info.filename.removesuffix('.npy')] = np.lib.format.read_array(
                            member, allow_pickle=False
                        )
                return arrays
        except ModelFileError:
            raise
        except UNREADABLE as error:
            raise ModelFileError(f'{path}: damaged or foreign npz file ({_what(error)})') from None


def _declared(member) -> Declared:
    """The shape and dtype a ``.npy`` member declares (ValueError if it is not one)."""
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
    else:
        raise ValueError(f'.npy format version {version} is not read here')
    return Declared(tuple(shape), np.dtype(dtype))


def _check_declared(path: Path, declared: dict, limit: int) -> None:
    for key, value in declared.items():
        if value.dtype.hasobject:
            raise ModelFileError(f'{path}: {key} holds Python objects, not numbers; refused')
    total = sum(value.nbytes for value in declared.values())
    if total > limit:
        key = max(declared, key=lambda k: declared[k].nbytes)
        raise ModelFileError(
            f'{path}: declares {_size(total)} of arrays ({key}: {declared[key].dtype} '
            f'{declared[key].shape}), more than the {_size(limit)} it may hold; refused '
            'before reading'
        )


def _size(n: int) -> str:
    for unit in ('bytes', 'KiB', 'MiB', 'GiB', 'TiB'):
        if n < 1024 or unit == 'TiB':
            return f'{n:.0f} {unit}' if unit == 'bytes' else f'{n:.1f} {unit}'
        n /= 1024
    return f'{n} bytes'


def _what(error: BaseException) -> str:
    if isinstance(error, MemoryError):
        return 'an array too large for memory'
    if isinstance(error, PermissionError):
        return 'permission denied'
    text = str(error).splitlines()[0] if str(error) else ''
    return f'{type(error).__name__}: {text}' if text else type(error).__name__


def model_arrays(arrays: dict, path: str | os.PathLike) -> tuple[str, dict]:
    """('model' or 'snapshot', the model's arrays) of a ``model.npz`` or a snapshot's arrays."""
    if any(key.startswith(MODEL_PREFIX) for key in arrays):
        return 'snapshot', _strip(arrays, MODEL_PREFIX)
    if any(key.startswith('updater/') for key in arrays):
        raise ModelFileError(f'{path}: a trainer snapshot without weights under {MODEL_PREFIX}')
    if {'t', 'epoch'} <= arrays.keys():
        raise ModelFileError(
            f'{path}: an optimizer state (optimizer.npz), not model weights; '
            'use model.npz or a snapshot_epoch_N'
        )
    return 'model', {key: value for key, value in arrays.items() if key != RECORD_KEY}


def _strip(arrays: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}


def load_weights(model: chainer.Link, path: str | os.PathLike, n_classes: int | None = None) -> str:
    """Load ``model.npz`` or a snapshot's weights into ``model``; return 'model' or 'snapshot'.

    Every array the model has must be in the file with its shape and dtype, finite, and
    nothing else may be, so a file of another kind, architecture or precision, or with
    diverged weights, is refused before anything is loaded; the shapes and dtypes are
    checked from the file's headers, before any array is read. With ``n_classes``, weights
    for another class count are named as such. Raises ModelFileError with a one-line message.
    """
    kind, declared = model_arrays(npz_headers(path), path)
    check_shapes(path, kind, declared, model, n_classes)
    prefix = MODEL_PREFIX if kind == 'snapshot' else ''
    wanted = {prefix + key for key in declared}  # a model.npz's record is not a weight
    weights = _strip(read_npz(path, keys=wanted.__contains__), prefix)
    check_weights(path, kind, weights, model, n_classes)
    npz.NpzDeserializer(weights, strict=True).load(model)
    return kind


def check_weights(
    path: str | os.PathLike, kind: str, weights: dict, model: chainer.Link, n_classes: int | None
) -> None:
    """Raise ModelFileError unless ``weights`` fit ``model`` exactly and are usable."""
    check_shapes(path, kind, weights, model, n_classes)
    for key, value in sorted(npz.serialize(model).items()):
        array = weights[key]
        if _initialized(value) and array.dtype.kind == 'f' and not np.isfinite(array).all():
            raise ModelFileError(
                f'{path}: {key} holds NaN or infinite values (a diverged run?); use an '
                'earlier snapshot'
            )


def check_shapes(
    path: str | os.PathLike, kind: str, weights: dict, model: chainer.Link, n_classes: int | None
) -> None:
    """Raise ModelFileError unless the keys, shapes and dtypes of ``weights`` (arrays, or
    what a file's headers declare) are exactly ``model``'s."""
    expected = npz.serialize(model)
    if mismatch := key_mismatch(weights, expected):
        raise ModelFileError(f'{path}: {kind} weights of another architecture: {mismatch}')
    wrong = [
        (key, tuple(weights[key].shape), np.shape(value))
        for key, value in sorted(expected.items())
        if _initialized(value)
        if tuple(weights[key].shape) != np.shape(value)
    ]
    if wrong:
        counts = {_class_count(got, want, n_classes) for _, got, want in wrong}
        if n_classes is not None and None not in counts and len(counts) == 1:
            raise ModelFileError(
                f'{path}: weights of a {counts.pop()}-class model, expected {n_classes} classes'
            )
        key, got, want = wrong[0]
        raise ModelFileError(
            f'{path}: {kind} weights of another architecture: {key} is {got}, the model '
            f'expects {want}'
        )
    for key, value in sorted(expected.items()):
        want = np.dtype(value.dtype) if _initialized(value) else None
        if want is not None and want.kind == 'f' and weights[key].dtype != want:
            raise ModelFileError(f'{path}: {key} is {weights[key].dtype}, the model expects {want}')


def _initialized(value) -> bool:
    """False for an uninitialized parameter (serialized as None), which takes any shape."""
    dtype = getattr(value, 'dtype', None)
    return dtype is not None and dtype.kind != 'O'


def key_mismatch(weights: dict, expected: dict) -> str | None:
    """None when ``weights`` has exactly the keys of ``expected``, else what differs, for a
    one-line error: "N of the model's M arrays missing (e.g. ...), K unknown (e.g. ...)"."""
    missing = sorted(expected.keys() - weights.keys())
    unknown = sorted(weights.keys() - expected.keys())
    if not missing and not unknown:
        return None
    return (
        f"{len(missing)} of the model's {len(expected)} arrays missing{_example(missing)}, "
        f'{len(unknown)} unknown{_example(unknown)}'
    )


def _example(keys: list[str]) -> str:
    return f' (e.g. {keys[0]})' if keys else ''


def _class_count(got: tuple, want: tuple, n_classes: int | None) -> int | None:
    """The file's class count when ``got`` differs from ``want`` only on a class axis."""
    if len(got) != len(want):
        return None
    differ = [axis for axis in range(len(got)) if got[axis] != want[axis]]
    if len(differ) == 1 and want[differ[0]] == n_classes:
        return got[differ[0]]
    return None


def read_record_beside(path: str | os.PathLike) -> dict | None:
    """The run record of a weights file: the ``run.json`` in its folder, else the record a
    ``model.npz`` holds itself (``RECORD_KEY``, so a copied file keeps it); None if neither."""
    record = Path(path).parent / RUN_FILE
    if record.is_file():
        with contextlib.suppress(RunFolderError):
            return _parse_record(record)
    return read_embedded_record(path)


def read_embedded_record(path: str | os.PathLike) -> dict | None:
    """The run record inside a ``model.npz`` (``{'settings': ...}``), or None."""
    try:
        arrays = read_npz(path, keys=RECORD_KEY.__eq__, limit=2**20)
        record = json.loads(str(arrays[RECORD_KEY])) if RECORD_KEY in arrays else None
    except (ModelFileError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get('settings'), dict):
        return None
    return record


MODEL_DEFAULTS = {'arch': DEFAULT_ARCH, 'dataset': 'cifar10', 'preset': '122'}
"""What a weights file without a run.json beside it is taken to be (the reference run)."""


def model_settings(
    path: str | os.PathLike,
    arch: str | None = None,
    dataset: str | None = None,
    preset: str | None = None,
) -> tuple[str, str, str]:
    """(arch, dataset, preset) a weights file was trained with: its run's ``run.json``, else
    the record a ``model.npz`` holds itself (a file copied away from its run).

    A value given must agree with the record (ModelFileError if not); without a record,
    the given values or ``MODEL_DEFAULTS`` are used. A recorded architecture that cannot be
    rebuilt here (a script's ``__main__``, a module not importable from here) is one line
    that says to give ``--arch``, which then overrides it.
    """
    record = read_record_beside(path)
    recorded = dict(record['settings']) if record else {}
    beside = Path(path).parent / RUN_FILE
    source = beside if beside.is_file() or not record else f'{path} (its own record)'
    unbuildable = 'arch' in recorded and not registry.recordable(recorded['arch'])
    if unbuildable and arch != recorded['arch']:
        if arch is None:
            raise ModelFileError(
                f'{source} records arch {recorded["arch"]}, which cannot be imported from here: '
                'give --arch package.module:Factory (run from the folder you trained in) or '
                '--arch path/to/file.py:Factory'
            )
        del recorded['arch']  # --arch stands in for a record that cannot be rebuilt
    given = {'arch': arch, 'dataset': dataset, 'preset': preset}
    check_record(given, recorded, source)
    return tuple(
        recorded.get(name, MODEL_DEFAULTS[name] if value is None else value)
        for name, value in given.items()
    )


def class_names(path: str | os.PathLike, dataset: str) -> tuple[str, ...]:
    """The class names, in label order, of the model in a weights file: those its run
    trained with (``run.json``), else the built-in names of ``dataset`` (older records).

    ModelFileError when neither says (a folder data set's weights without their run.json).
    """
    record = read_record_beside(path)
    names = record['settings'].get('class_names') if record else None
    if names:
        return tuple(names)
    names = DATASETS[dataset].label_names
    if not names:
        raise ModelFileError(
            f'{path}: no {RUN_FILE} beside it names the classes of this --dataset {dataset} '
            f'model; keep the weights in their run folder'
        )
    return names


def check_record(given: dict[str, str | None], recorded: dict, source: str | os.PathLike) -> None:
    """Refuse a flag that contradicts the record a model was saved with (ModelFileError).

    The one check of "a setting given on the command line must agree with the run's
    record", for ``run.json`` and for an exported file's metadata alike: ``given`` maps a
    setting (``arch``, ``dataset``, ``preset``) to its flag's value (None: not given),
    ``recorded`` to what ``source`` says; a setting missing from the record passes.
    """
    for name, value in given.items():
        if value is not None and name in recorded and value != recorded[name]:
            raise ModelFileError(
                f'--{name} {value}: {source} says this model was trained with {name} '
                f'{recorded[name]}; leave --{name} out to use it'
            )


def model_options(path: str | os.PathLike) -> dict:
    """The options the model's factory was called with, from the ``run.json`` beside a
    weights file or the file's own record (``{}`` without either): resume, predict, serve
    and export rebuild with them."""
    record = read_record_beside(path)
    options = record['settings'].get('model_options') if record else None
    return dict(options) if isinstance(options, dict) else {}


def _parse_record(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict) or not isinstance(record.get('settings'), dict):
            raise ValueError('no settings')
        return record
    except (OSError, ValueError) as error:
        raise RunFolderError(
            f'{path}: not a run record of this trainer ({error}); move it away to start over'
        ) from None


# --- the folder ---------------------------------------------------------------------------


class RunFolder:
    """A run's folder (``-p``) and its plot folder (``--img-dir``).

    Args:
        path: the save folder.
        img_dir: where the plots go (None: no plots).
        plot: draws the plots of a log into a folder (``trainer.plots.draw``).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        img_dir: str | os.PathLike | None = None,
        plot: Callable[[Path, list], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.img_dir = None if img_dir is None else Path(img_dir)
        self.plot = plot
        self.settings = None  # the run's settings, once written (put inside model.npz)
        self._lock = None

    # Opening ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def open(self) -> Iterator[RunFolder]:
        """Make the folders, take the lock, check both writable, remove stale temporaries."""
        for folder in self._folders():
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise RunFolderError(f'{folder}: cannot create ({_reason(error)})') from None
        self._take_lock()
        try:
            for folder in self._folders():
                _check_writable(folder)
                for removed in remove_temporaries(folder):
                    logger.info('removed %s, left by a killed run', removed)
            yield self
        finally:
            self._release_lock()

    def _folders(self) -> list[Path]:
        return [self.path] + ([self.img_dir] if self.img_dir is not None else [])

    def _take_lock(self) -> None:
        path = self.path / LOCK_FILE
        try:
            handle = open(path, 'a+')
        except OSError as error:
            raise RunFolderError(f'{self.path}: not writable ({_reason(error)})') from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or 'another process'
            handle.close()
            raise RunFolderError(
                f'{self.path}: in use by another run (pid {holder}); wait for it to end or '
                'choose another -p'
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock = handle

    def _release_lock(self) -> None:
        if self._lock is not None:
            with contextlib.suppress(OSError):
                self._lock.truncate(0)
            self._lock.close()
            self._lock = None

    # Snapshots ----------------------------------------------------------------------------

    def snapshots(self) -> list[tuple[int, Path]]:
        """(epoch, path) of every ``snapshot_epoch_N`` file, oldest first (by N, not time)."""
        found = []
        if self.path.is_dir():
            for path in self.path.iterdir():
                match = SNAPSHOT_NAME.fullmatch(path.name)
                if match and path.is_file():
                    found.append((int(match.group(1)), path))
        return sorted(found)

    def newest_snapshot(
        self, model: chainer.Link | None = None, n_classes: int | None = None
    ) -> tuple[int, dict] | None:
        """(epoch, arrays) of the newest snapshot that loads; None when the run is new.

        A snapshot that does not load (truncated, garbled, empty, unreadable, not a
        snapshot, or, given ``model``, the weights of another architecture or class count:
        checked from the file's headers before any array is read) is renamed
        ``snapshot_epoch_N.damaged``, so that it is kept but not picked again, and the next
        older one is tried. A folder that holds trained epochs (set-aside snapshots,
        ``model.npz``, ``log.json``) but no snapshot that loads is a RunFolderError naming
        what is damaged and what is intact: nothing is written, nothing retrained over.
        """
        limit = snapshot_limit(model)
        damaged = []
        for epoch, path in reversed(self.snapshots()):
            try:
                arrays = read_npz(
                    path, 'a snapshot', check=_snapshot_check(path, model, n_classes), limit=limit
                )
                stored = int(arrays[EPOCH_KEY]) if EPOCH_KEY in arrays else epoch
                if stored != epoch or LOG_KEY not in arrays:
                    raise ModelFileError(f'{path}: not the snapshot of epoch {epoch}')
                json.loads(str(arrays[LOG_KEY]))
            except (ModelFileError, ValueError) as error:
                set_aside = path.with_name(path.name + DAMAGED_SUFFIX)
                os.replace(path, set_aside)
                damaged.append((error, path, set_aside))
                continue
            for error, _, set_aside in damaged:
                logger.warning('%s; renamed it to %s, trying the one before', error, set_aside.name)
            return epoch, arrays
        self._check_untrained(damaged)
        return None

    def _check_untrained(self, damaged: list) -> None:
        """RunFolderError if the folder holds trained epochs (none of whose snapshots load)."""
        set_aside = sorted(
            (p for p in self.path.glob(f'snapshot_epoch_*{DAMAGED_SUFFIX}') if p.is_file()),
            key=lambda p: (len(p.name), p.name),
        )
        intact = [
            name for name in (MODEL_FILE, OPTIMIZER_FILE, LOG_FILE) if _readable(self.path / name)
        ]
        if not set_aside and not intact:
            return
        logged = _logged_epochs(self.path / LOG_FILE)
        why = '; '.join(
            f'{path.name}: {str(error).removeprefix(f"{path}: ")}' for error, path, _ in damaged
        )
        resume = (
            f'-s {logged + 1} -m {self.path / MODEL_FILE}'
            + (f' -o {self.path / OPTIMIZER_FILE}' if OPTIMIZER_FILE in intact else '')
            + (f' -l {self.path / LOG_FILE}' if LOG_FILE in intact else '')
        )
        raise RunFolderError(
            f'{self.path}: holds trained epochs but no snapshot that loads; damaged: '
            f'{", ".join(p.name for p in set_aside) or "none"}{f" ({why})" if why else ""}; '
            f'intact: {", ".join(intact) or "nothing"}'
            f'{f" ({logged} epochs logged)" if logged else ""}. Nothing was written. To '
            + (
                f'continue from the intact files, train into a new -p with {resume}; to '
                if MODEL_FILE in intact and logged
                else ''
            )
            + 'start over, move this folder away or choose another -p'
        )

    def commit(self, arrays: dict, epoch: int, keep: int) -> None:
        """Write epoch ``epoch``'s snapshot, then its views; keep the newest ``keep``.

        Ctrl-C and SIGTERM wait until the files are written (a second or so).
        """
        path = self.path / SNAPSHOT.format(epoch)
        with deferred_signals():
            self._write(path, lambda: save_arrays(path, arrays))
            self.publish(arrays)
            for old_epoch, old in self.snapshots()[:-keep]:
                if old_epoch < epoch:
                    old.unlink(missing_ok=True)

    def publish(self, arrays: dict) -> list[dict]:
        """Write ``model.npz``, ``optimizer.npz``, ``log.json`` and the plots from a snapshot.

        Returns the log it holds. Ctrl-C and SIGTERM wait until the files are written.
        """
        log = json.loads(str(arrays[LOG_KEY]))
        model = self.path / MODEL_FILE
        optimizer = self.path / OPTIMIZER_FILE
        weights = _strip(arrays, MODEL_PREFIX)
        average = _strip(arrays, EMA_PREFIX)  # issue 27: model_ema.npz
        if self.settings is not None:  # what predict needs, inside the files (RECORD_KEY)
            record = np.asarray(json.dumps({'format': FORMAT, **self.settings}))
            weights[RECORD_KEY] = record
            if average:
                average[RECORD_KEY] = record
        with deferred_signals():
            self._write(model, lambda: save_arrays(model, weights))
            self._write(optimizer, lambda: save_arrays(optimizer, _strip(arrays, OPTIMIZER_PREFIX)))
            if average:
                path = self.path / EMA_MODEL_FILE
                self._write(path, lambda: save_arrays(path, average))
            self.write_log(log)
        return log

    def write_log(self, log: list[dict]) -> None:
        """``log.json`` (one epoch per line, a JSON list) and the plots, from ``log``."""
        path = self.path / LOG_FILE
        lines = ',\n'.join(json.dumps(entry) for entry in log)

        def dump(tmp: str) -> None:
            with open(tmp, 'w') as f:
                f.write(f'[\n{lines}\n]\n' if lines else '[]\n')

        self._write(path, lambda: write_atomically(path, dump))
        if self.plot is not None and self.img_dir is not None and log:
            self._write(self.img_dir, lambda: self.plot(self.img_dir, log))

    @staticmethod
    def _write(path: Path, write: Callable[[], None]) -> None:
        try:
            write()
        except OSError as error:
            raise RunFolderError(
                f'{path}: cannot write ({_reason(error)}); the previous files are intact: fix '
                'that and rerun the same command to resume'
            ) from None

    # The record -----------------------------------------------------------------------------

    def read_record(self) -> dict | None:
        """The run's ``run.json``, or None for a new run (or one of an older version)."""
        path = self.path / RUN_FILE
        return _parse_record(path) if path.exists() else None

    def write_record(self, record: dict) -> None:
        """Write ``run.json``; its settings also go inside every ``model.npz`` from now on."""
        self.settings = {'settings': record['settings']}
        path = self.path / RUN_FILE

        def dump(tmp: str) -> None:
            with open(tmp, 'w') as f:
                json.dump(record, f, indent=1)
                f.write('\n')

        self._write(path, lambda: write_atomically(path, dump))

    def check_settings(self, record: dict | None, settings: dict) -> None:
        """Refuse a resume that would change a defining setting: one line, old and new value."""
        if record is None:
            return
        old = record['settings']
        for name in DEFINING:
            if name == 'arch' and _same_arch(old.get(name), settings.get(name)):
                continue
            if name in old and old[name] != settings.get(name):
                raise RunFolderError(
                    f'{self.path}: this run was made with {name} {_show(old[name])}, not '
                    f'{_show(settings.get(name))}; resuming would change it. Run with the '
                    'same settings, or start a separate run with another -p'
                )


def _same_arch(old: str | None, new: str | None) -> bool:
    """Whether a recorded arch and this session's are the same factory, recorded apart.

    Equal; or an older version's record of a script's net (``__main__:Net``) and the
    importable path of the same ``Net``; or two names of one factory (a script's net by its
    module in one session, by its file in another: same file, same name); or the same name
    where the old record cannot be imported from here (the weights are checked on loading).
    """
    if old == new:
        return True
    if old is None or new is None or old.rpartition(':')[2] != new.rpartition(':')[2]:
        return False
    if old.startswith(f'{registry.MAIN}:'):
        return True
    return registry.same_factory(old, new) is not False


def _show(value) -> str:
    return 'none' if value is None else str(value)


def _reason(error: OSError) -> str:
    return (error.strerror or str(error)).lower()


def _readable(path: Path) -> bool:
    """Whether a view (model.npz, optimizer.npz, log.json) is there and reads."""
    if not path.is_file():
        return False
    try:
        if path.suffix == '.npz':
            npz_headers(path)
        else:
            json.loads(path.read_text())
    except (ModelFileError, OSError, ValueError):
        return False
    return True


def _logged_epochs(path: Path) -> int:
    """The newest epoch in a ``log.json`` (0 if none or unreadable)."""
    try:
        return max((int(entry['epoch']) for entry in json.loads(path.read_text())), default=0)
    except (OSError, ValueError, TypeError, KeyError):
        return 0


def _snapshot_check(path: Path, model: chainer.Link | None, n_classes: int | None):
    """What ``read_npz`` checks a snapshot's headers with: a model inside, of ``model``."""

    def check(declared: dict) -> None:
        if not any(key.startswith(MODEL_PREFIX) for key in declared):
            raise ModelFileError(f'{path}: not a trainer snapshot (no model inside)')
        if model is not None:
            check_shapes(path, 'snapshot', _strip(declared, MODEL_PREFIX), model, n_classes)

    return check


def snapshot_limit(model: chainer.Link | None) -> int:
    """The most a snapshot of ``model`` may declare: the model, its optimizer's state (up to
    three times the weights) and the log; ``MAX_NPZ_BYTES`` without a model."""
    if model is None:
        return MAX_NPZ_BYTES
    sizes = [getattr(value, 'nbytes', 0) for value in npz.serialize(model).values()]
    return 4 * sum(sizes) + 256 * 2**20


def _check_writable(folder: Path) -> None:
    probe = folder / f'.write-test.{os.getpid()}.tmp'
    try:
        with open(probe, 'wb') as f:
            f.write(b'0')
    except OSError as error:
        raise RunFolderError(f'{folder}: not writable ({_reason(error)})') from None
    finally:
        probe.unlink(missing_ok=True)


# --- the extension that writes each finished epoch --------------------------------------


class SaveEpoch(extension.Extension):
    """At each epoch's end, after every other extension: the snapshot, then its views.

    The trainer is serialized once; the snapshot file and ``model.npz``, ``optimizer.npz``,
    ``log.json`` and the plots are all written from those arrays, so they agree.

    Args:
        folder: the run folder.
        keep: snapshots to keep.
    """

    trigger = (1, 'epoch')
    priority = -1000  # last: every other trigger of this iteration has fired

    def __init__(self, folder: RunFolder, keep: int) -> None:
        self.folder = folder
        self.keep = keep

    def __call__(self, trainer: chainer.training.Trainer) -> None:
        arrays = npz.serialize(trainer)
        arrays = {key: np.asarray(chainer.backend.CpuDevice().send(v)) for key, v in arrays.items()}
        arrays.update(random_state())
        self.folder.commit(arrays, trainer.updater.epoch, self.keep)


RANDOM_PREFIX = 'random/'
"""Where a snapshot keeps the generators' states (``random_state``)."""


def random_state() -> dict[str, np.ndarray]:
    """The global generators' states as arrays: NumPy's (dropout draws from it on the CPU)
    and Python's. With the iterator's order and position (Chainer's serialization) and the
    augmentation seeded per image, they are what a resumed seeded run needs to continue
    exactly as an uninterrupted one."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        f'{RANDOM_PREFIX}numpy/keys': np.asarray(keys, np.uint32),
        f'{RANDOM_PREFIX}numpy/state': np.asarray([position, has_gauss], np.int64),
        f'{RANDOM_PREFIX}numpy/gauss': np.asarray(gauss, np.float64),
        f'{RANDOM_PREFIX}python/internal': np.asarray(internal, np.uint64),
        f'{RANDOM_PREFIX}python/state': np.asarray([version], np.int64),
        f'{RANDOM_PREFIX}python/gauss': np.asarray(np.nan if gauss_next is None else gauss_next),
    }


def set_random_state(arrays: dict) -> None:
    """Restore what ``random_state`` saved; a snapshot without it (older) changes nothing."""
    if f'{RANDOM_PREFIX}numpy/keys' not in arrays:
        return
    get = lambda name: arrays[RANDOM_PREFIX + name]  # noqa: E731
    position, has_gauss = (int(v) for v in get('numpy/state'))
    np.random.set_state(
        ('MT19937', get('numpy/keys'), position, has_gauss, float(get('numpy/gauss')))
    )
    gauss_next = float(get('python/gauss'))
    random.setstate(
        (
            int(get('python/state')[0]),
            tuple(int(v) for v in get('python/internal')),
            None if np.isnan(gauss_next) else gauss_next,
        )
    )


def load_snapshot(trainer: chainer.training.Trainer, arrays: dict, path: Path) -> None:
    """Load a snapshot's arrays into ``trainer``; its model part must fit exactly.

    The model, optimizer and iterator states must all be there; triggers of extensions
    the snapshot's run did not have keep their fresh state. The generators' states are
    restored too (``set_random_state``), so a seeded run continues exactly.
    """
    state = npz.serialize(trainer.updater)  # (the trainer serializes only once started)
    missing = sorted(f'updater/{key}' for key in state if f'updater/{key}' not in arrays)
    if missing:
        raise RunFolderError(
            f'{path}: a snapshot of another model or optimizer ({len(missing)} arrays missing, '
            f'e.g. {missing[0]}); start a separate run with another -p'
        )
    model = trainer.updater.get_optimizer('main').target.predictor
    check_weights(path, 'snapshot', _strip(arrays, MODEL_PREFIX), model, None)
    npz.NpzDeserializer(arrays, strict=False).load(trainer)
    set_random_state(arrays)
