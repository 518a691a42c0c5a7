"""A folder of your own images as a data set: ``ROOT/train/<class>/<image>``, ``ROOT/test/...``.

The layout every peer reads (torchvision's ``ImageFolder``, ChainerCV's
``DirectoryParsingLabelDataset``, timm): one subfolder per class in ``train/`` and
``test/`` (and, optionally, ``val/``), images in them at any depth. The class names are
the subfolder names of ``train/``, sorted (label i is the i-th); ``test/`` and ``val/`` may
lack a class but not add one. Files are JPEG, PNG, BMP or WebP by their suffix; other files
and hidden ones (``.DS_Store``) are ignored.

Each image is decoded once, when the data set is loaded, by the predictor's own decoding
(``trainer.images``: EXIF orientation, alpha over white, greyscale, palette or 16-bit
to RGB, a bilinear squash to 32x32), so that training and ``predict`` see the same pixels.
32x32 uint8 is the stored size of every preset (the transforms resize and crop from it, as
for CIFAR), so a folder trains exactly like a CIFAR archive, from one array allocated
before the first image is read: 3,072 bytes an image, 154 MB for 50,000 (at 128 px it
would be 49,152 bytes an image, 2.46 GB), plus one image being decoded, within Pillow's
bomb limit as in ``predict``. A set that would not fit in the memory available is refused
before decoding (lazy per-batch decoding is not implemented: at 3 KB an image, a million
images take 3.1 GB).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from trainer.datasets import Cifar, Split
from trainer.errors import DataError, ImageError
from trainer.images import open_image, to_cifar

logger = logging.getLogger(__name__)

SPLITS = ('train', 'test', 'val')  # val/ is optional
SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')
SIZE = 32  # the stored size, CIFAR's: the presets' transforms start from 32x32 uint8
BYTES_PER_IMAGE = 3 * SIZE * SIZE
PROGRESS_SECONDS = 5.0  # a progress line at most this often while decoding


def load_image_folder(
    root: str | os.PathLike,
    skip_bad: bool = False,
    max_pixels: int | None = None,
    memory: int | None = None,
) -> Cifar:
    """Load ``root/train``, ``root/test`` (and ``root/val`` if present) as uint8 32x32 RGB.

    Args:
        root: the folder holding ``train/`` and ``test/``.
        skip_bad: leave out images that do not decode (unreadable, truncated, over the
            pixel limit) instead of refusing the set; each is logged and counted.
        max_pixels: refuse an image declaring more pixels (from its header); None:
            Pillow's bomb limit, as ``predict`` has.
        memory: bytes the decoded set may take (None: the memory available now, Linux's
            MemAvailable).

    Returns the data set (``val`` set when ``root/val`` exists) with the class names of
    ``train/``; ``skipped`` lists the files left out, with why. Raises DataError with one
    line naming the folder or file, before anything is decoded where it can.
    """
    root = Path(root)
    listing, ignored = _list(root)
    names = listing['train'][0]
    total = sum(len(files) for _, files in listing.values())
    need = total * BYTES_PER_IMAGE
    memory = _available_memory() if memory is None else memory
    if memory is not None and need > memory:
        raise DataError(
            f'{root}: {total:,} images take {need / 1e9:.2f} GB decoded at {SIZE}x{SIZE}, more '
            f'than the {memory / 1e9:.2f} GB of memory available'
        )
    decode = _decoder(max_pixels)
    start = time.perf_counter()
    progress = _Progress(root, total, start)
    skipped: list[str] = []
    splits = {}
    label_of = {name: label for label, name in enumerate(names)}
    for split, (classes, files) in listing.items():
        labels = np.array([label_of[c] for c, _ in files], dtype=np.int32)
        images = np.empty((len(files), 3, SIZE, SIZE), dtype=np.uint8)
        keep = np.ones(len(files), dtype=bool)
        for i, (_, path) in enumerate(files):
            try:
                images[i] = decode(path)
            except ImageError as error:
                if not skip_bad:
                    raise DataError(
                        f'{path}: {error} (--skip-bad-images leaves such files out)'
                    ) from None
                logger.warning('skipping %s: %s', path, error)
                skipped.append(f'{path}: {error}')
                keep[i] = False
            progress.step()
        if not keep.all():
            images, labels = images[keep], labels[keep]
            _check_not_emptied(root / split, classes, label_of, labels)
        splits[split] = Split(images, labels)
    _log_done(root, total, len(names), skipped, ignored, time.perf_counter() - start)
    return Cifar(splits['train'], splits['test'], list(names), splits.get('val'), tuple(skipped))


def _list(root: Path) -> tuple[dict[str, tuple[list[str], list[tuple[str, Path]]]], int]:
    """{split: (its classes, [(class, file)...])} of ``root``, checked; and the files ignored."""
    if not root.exists():
        raise DataError(f'{root}: no such folder')
    if not root.is_dir():
        raise DataError(
            f'{root}: a file, not a folder of train/<class>/<image> and test/<class>/<image>'
            ' (extract an archive first; a CIFAR python archive takes --dataset cifar10)'
        )
    listing, ignored = {}, 0
    for split in SPLITS:
        folder = root / split
        if not folder.is_dir():
            if split == 'val':
                continue
            raise DataError(
                f'{root}: no {split}/ folder (expected {split}/<class>/<image> in it: one '
                'subfolder per class)'
            )
        try:
            classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and _visible(p))
        except OSError as error:
            raise DataError(f'{folder}: cannot read ({error.strerror or error})') from None
        files = []
        for name in classes:
            found, skipped = _images(folder / name)
            if not found:
                raise DataError(
                    f'{folder / name}: an empty class folder (no {", ".join(SUFFIXES)} files)'
                )
            files += [(name, path) for path in found]
            ignored += skipped
        listing[split] = (classes, files)
    train = listing['train'][0]
    if len(train) < 2:
        found = f'only {train[0]}' if train else 'none'
        loose = any(p.suffix.lower() in SUFFIXES for p in (root / 'train').iterdir())
        hint = ': the images go in train/<class>/, one subfolder per class' if loose else ''
        raise DataError(
            f'{root / "train"}: {len(train)} class folders ({found}); a classifier needs at '
            f'least two{hint}'
        )
    for split in SPLITS[1:]:
        extra = [c for c in listing.get(split, ((), ()))[0] if c not in train]
        if extra:
            raise DataError(
                f'{root / split / extra[0]}: a class that train/ does not have (train/ has '
                f'{_names(train)})'
            )
    return listing, ignored


def _images(folder: Path) -> tuple[list[Path], int]:
    """The image files under ``folder`` (any depth, sorted) and the count of other files."""
    found, ignored = [], 0
    for directory, subfolders, files in os.walk(folder):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith('.'))
        for name in sorted(files):
            if name.startswith('.'):
                continue
            if name.lower().endswith(SUFFIXES):
                found.append(Path(directory) / name)
            else:
                ignored += 1
    return found, ignored


def _visible(path: Path) -> bool:
    return not path.name.startswith('.')


def _names(names: list[str], shown: int = 10) -> str:
    more = f' and {len(names) - shown} more' if len(names) > shown else ''
    return ', '.join(names[:shown]) + more


def _check_not_emptied(folder: Path, classes: list[str], label_of: dict, labels) -> None:
    """After skipping bad files, every class folder of the split must keep an image."""
    present = set(labels.tolist())
    for name in classes:
        if label_of[name] not in present:
            raise DataError(f'{folder / name}: no readable images (every one was skipped)')


def _decoder(max_pixels: int | None) -> Callable[[Path], np.ndarray]:
    """``path -> uint8 (3, 32, 32)``: the predictor's decoding (``trainer.images``, which
    ``predict`` and ``serve`` use too), so both see the same pixels."""

    def decode(path: Path) -> np.ndarray:
        return to_cifar(open_image(path, max_pixels))

    return decode


def _available_memory() -> int | None:
    """Linux's MemAvailable (free memory plus what the page cache would give back), else
    the physical memory; None where neither is known."""
    try:
        for line in Path('/proc/meminfo').read_text().splitlines():
            if line.startswith('MemAvailable:'):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
    except (ValueError, OSError, AttributeError):  # not on this system
        return None


class _Progress:
    """A log line every PROGRESS_SECONDS while decoding: done, total, rate."""

    def __init__(self, root: Path, total: int, start: float) -> None:
        self.root, self.total, self.start = root, total, start
        self.done, self.last = 0, start

    def step(self) -> None:
        self.done += 1
        now = time.perf_counter()
        if now - self.last >= PROGRESS_SECONDS and self.done < self.total:
            self.last = now
            logger.info(
                '%s: decoded %d of %d images (%.0f %%, %.0f images/s)',
                self.root,
                self.done,
                self.total,
                100 * self.done / self.total,
                self.done / (now - self.start),
            )


def _log_done(
    root: Path, total: int, n_classes: int, skipped: list[str], ignored: int, seconds: float
) -> None:
    logger.info(
        '%s: %d images of %d classes decoded in %.1f s (%.0f images/s)',
        root,
        total - len(skipped),
        n_classes,
        seconds,
        total / max(seconds, 1e-9),
    )
    if skipped:
        logger.warning(
            '%s: skipped %d unreadable images (the first: %s)', root, len(skipped), skipped[0]
        )
    if ignored:
        logger.info('%s: ignored %d files that are not %s', root, ignored, '/'.join(SUFFIXES))
