"""Train / test preprocessing as plain callables on ``(uint8 CHW image, label)`` pairs.

They return ``(float32 CHW, label)`` and run per image, in the iterator's worker
processes. In training, each image's random draws come from a generator seeded with
``[seed, epoch, index]`` (``SeededTransformDataset``, with the epoch carried by
``EpochOrder``'s indices), so a seeded run gives the same images whatever the number of
workers, and a resumed run the same as an uninterrupted one. Called on its own, a random
transform draws from its own generator, created once per process: seeded with ``[seed]``
in the process that made it and ``[seed, pid]`` in a worker. Sizes and constants are the
recipe's (trainer.recipe).
"""

import os

import chainer
import numpy as np
from PIL import Image

from trainer.recipe import RECIPE

PRESETS = ('122', '32')


def normalize(x: np.ndarray, eps: float = RECIPE.norm_eps) -> np.ndarray:
    """Per-image standardization over all pixels and channels (0-255 scale), as float32:
    ``(x - mean(x)) / sqrt(var(x) + eps)``."""
    x = x.astype(np.float32)
    return (x - x.mean()) / np.sqrt(x.var() + eps)


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of a uint8 CHW image to ``size`` x ``size``."""
    pil = Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0)))
    return np.asarray(pil.resize((size, size), Image.BILINEAR)).transpose(2, 0, 1)


class _Random:
    """Base for random transforms: one generator per process, seeded from ``seed``."""

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self._owner = os.getpid()
        self._pid = None
        self._rng = None

    @property
    def rng(self) -> np.random.Generator:
        pid = os.getpid()
        if self._pid != pid:
            if self.seed is None:
                key = None
            else:
                key = [self.seed] if pid == self._owner else [self.seed, pid]
            self._pid, self._rng = pid, np.random.default_rng(key)
        return self._rng

    def __getstate__(self) -> dict:
        return {**self.__dict__, '_rng': None, '_pid': None}


class ResizeCropFlip(_Random):
    """Train: resize to s x s (s uniform in ``sizes``, bilinear), random crop, normalize, flip.

    Args:
        sizes: inclusive range of the resize side (124..132 in the recipe).
        crop: side of the random crop (122).
        seed: seed of the generator; None draws one from the OS.
        flip: probability of the horizontal flip.
        normalize: False returns the uint8 crop, for ``DeviceNormalize`` on the GPU.
    """

    def __init__(
        self,
        sizes: tuple[int, int] = RECIPE.train_resize,
        crop: int = RECIPE.train_crop,
        seed: int | None = None,
        flip: float = RECIPE.flip,
        normalize: bool = True,
    ) -> None:
        super().__init__(seed)
        self.normalize = normalize
        if not crop <= sizes[0] <= sizes[1]:
            raise ValueError(f'need crop <= sizes[0] <= sizes[1], got {crop}, {sizes}')
        self.sizes = sizes
        self.crop = crop
        self.flip = flip

    def __call__(self, example: tuple, rng: np.random.Generator | None = None) -> tuple:
        image, label = example
        rng = rng or self.rng
        size = int(rng.integers(self.sizes[0], self.sizes[1] + 1))
        top, left = rng.integers(0, size - self.crop + 1, size=2)
        x = resize(image, size)[:, top : top + self.crop, left : left + self.crop]
        if self.normalize:
            x = normalize(x)
        if rng.random() < self.flip:
            x = x[:, :, ::-1]
        return np.ascontiguousarray(x), label


class PadCropFlip(_Random):
    """Train at native size: zero-pad, random crop back to the input size, normalize, flip.

    Args:
        pad: pixels of zero padding on each side (4).
        seed: seed of the generator; None draws one from the OS.
        flip: probability of the horizontal flip.
        normalize: False returns the uint8 crop, for ``DeviceNormalize`` on the GPU.
    """

    def __init__(
        self,
        pad: int = RECIPE.quick_pad,
        seed: int | None = None,
        flip: float = RECIPE.flip,
        normalize: bool = True,
    ) -> None:
        super().__init__(seed)
        self.pad = pad
        self.flip = flip
        self.normalize = normalize

    def __call__(self, example: tuple, rng: np.random.Generator | None = None) -> tuple:
        image, label = example
        rng = rng or self.rng
        _, h, w = image.shape
        padded = np.pad(image, ((0, 0), (self.pad, self.pad), (self.pad, self.pad)))
        top, left = rng.integers(0, 2 * self.pad + 1, size=2)
        x = padded[:, top : top + h, left : left + w]
        if self.normalize:
            x = normalize(x)
        if rng.random() < self.flip:
            x = x[:, :, ::-1]
        return np.ascontiguousarray(x), label


class EpochOrder:
    """Chainer's order sampler for the training iterator: each epoch a permutation drawn
    from ``[seed, epoch]`` alone, written as ``epoch * n + i`` (image ``i`` in ``epoch``).

    The order thus depends only on the seed and the epoch (a resumed run draws what an
    uninterrupted one would), and the worker that fetches an index knows the epoch
    (``SeededTransformDataset``). The epoch is read from the previous order, so the
    sampler keeps no state: the iterator's snapshot (its order and position) is enough.

    Args:
        n: images in the training set.
        seed: the run's seed; None draws each order from the OS.
    """

    def __init__(self, n: int, seed: int | None) -> None:
        self.n = n
        self.seed = seed

    def __call__(self, current_order: np.ndarray, current_position: int) -> np.ndarray:
        epoch = int(np.max(current_order)) // self.n + 1  # the initial arange(n): epoch 1
        rng = np.random.default_rng(None if self.seed is None else [self.seed, epoch])
        return epoch * self.n + rng.permutation(self.n)


class SeededTransformDataset(chainer.dataset.DatasetMixin):
    """``dataset`` through a random ``transform``, each image with its own generator.

    Index ``epoch * n + i`` (``EpochOrder``'s) is image ``i`` transformed with a generator
    seeded ``[seed, epoch, i]``: the same draws in any process, with any number of workers,
    before and after a resume. A plain index ``i < n`` is epoch 0.

    Args:
        dataset: the (image, label) pairs.
        transform: called as ``transform(example, rng)``.
        seed: the run's seed; None seeds each image from the OS.
    """

    def __init__(self, dataset, transform, seed: int | None) -> None:
        self.dataset = dataset
        self.transform = transform
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def get_example(self, i: int) -> tuple:
        epoch, index = divmod(int(i), len(self.dataset))
        key = None if self.seed is None else [self.seed, epoch, index]
        return self.transform(self.dataset[index], np.random.default_rng(key))


class ResizeNormalize:
    """Test: bilinear resize to ``size`` x ``size`` (None keeps the input size), normalize.

    ``normalize=False`` returns the uint8 image, for ``DeviceNormalize`` on the GPU.
    """

    def __init__(self, size: int | None = RECIPE.test_size, normalize: bool = True) -> None:
        self.size = size
        self.normalize = normalize

    def __call__(self, example: tuple) -> tuple:
        image, label = example
        x = image if self.size is None else resize(image, self.size)
        return (normalize(x) if self.normalize else np.ascontiguousarray(x)), label


class DeviceNormalize:
    """A converter: a batch of uint8 images to the device, normalized there as ``normalize``.

    On a GPU this moves a quarter of the bytes of float32 images across the bus and does
    the per-image arithmetic where it is fast; the result equals ``normalize`` on the host
    to float32 rounding.

    Args:
        eps: the normalization's epsilon (the recipe's).
    """

    def __init__(self, eps: float = RECIPE.norm_eps) -> None:
        self.eps = eps

    def __call__(self, batch, device=None) -> tuple:
        from chainer.dataset import concat_examples

        x, t = concat_examples(batch, device)
        xp = chainer.backend.get_array_module(x)
        x = x.astype(xp.float32)
        mean = x.mean(axis=(1, 2, 3), keepdims=True)
        var = x.var(axis=(1, 2, 3), keepdims=True)
        return (x - mean) / xp.sqrt(var + xp.float32(self.eps)), t


def make_transforms(preset: str = '122', seed: int | None = None, normalize: bool = True) -> tuple:
    """The (train, test) transforms of a preset.

    '122' is the reference recipe: train on 122x122 crops of 124..132 resizes, test at 128.
    '32' trains on pad-4 crops at the native 32x32 and tests at 32x32, for quick CPU runs.
    ``normalize=False``: both return uint8 images, to be normalized by ``DeviceNormalize``.
    """
    if preset == '122':
        train = ResizeCropFlip(RECIPE.train_resize, RECIPE.train_crop, seed, RECIPE.flip, normalize)
        return train, ResizeNormalize(RECIPE.test_size, normalize)
    if preset == '32':
        return (
            PadCropFlip(RECIPE.quick_pad, seed, RECIPE.flip, normalize),
            ResizeNormalize(None, normalize),
        )
    raise ValueError(f'unknown preset {preset!r}: choose one of {", ".join(PRESETS)}')
