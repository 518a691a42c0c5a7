"""Batch augmentations applied after the batch is made: cutout, mixup and cutmix.

``BatchAugment`` wraps the training converter: it makes the batch (normalized, on its
device) as before, then erases a square of each image (cutout: zero is the per-image mean
after normalization) and/or mixes the batch with a shuffled copy of itself (mixup: a
convex blend; cutmix: a pasted box), turning the labels into soft targets of the same
proportions (``trainer.losses`` takes them). Draws come from a generator seeded from
``--seed`` in the training process, so a run with ``--workers 0`` repeats exactly.
"""

import chainer
import numpy as np


def one_hot(t, n_classes: int, xp=np):
    """Labels ``(N,)`` as float32 one-hot rows ``(N, C)``."""
    out = xp.zeros((len(t), n_classes), dtype=xp.float32)
    out[xp.arange(len(t)), t] = 1
    return out


def box(rng: np.random.Generator, h: int, w: int, area: float) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of a box of about ``area`` of the image, centred uniformly
    and clipped at the borders (CutMix's and Cutout's sampling)."""
    cut_h, cut_w = int(h * np.sqrt(area)), int(w * np.sqrt(area))
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h - cut_h // 2, h)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w - cut_w // 2, w)
    return top, bottom, left, right


def cutout(x, rng: np.random.Generator, side: float) -> None:
    """Zero, in place, a square of ``side`` (a fraction of the image side) in each image."""
    _, _, h, w = x.shape
    for i in range(len(x)):
        top, bottom, left, right = box(rng, h, w, side * side)
        x[i, :, top:bottom, left:right] = 0


def dominant(lam: float) -> float:
    """``max(lam, 1 - lam)``: each image keeps the larger share (as fastai's mixup), so its
    own label stays its target's class of most weight, the hard label accuracy counts."""
    return max(lam, 1 - lam)


def mixup(x, soft, rng: np.random.Generator, alpha: float):
    """Blend the batch with its permutation by lambda ~ Beta(alpha, alpha) (``dominant``);
    targets alike."""
    xp = chainer.backend.get_array_module(x)
    lam = dominant(float(rng.beta(alpha, alpha)))
    order = xp.asarray(rng.permutation(len(x)))
    return lam * x + (1 - lam) * x[order], lam * soft + (1 - lam) * soft[order]


def cutmix(x, soft, rng: np.random.Generator, alpha: float):
    """Paste a box of the permuted batch (area 1 - lambda, lambda ~ Beta(alpha, alpha), made
    ``dominant``); the targets mix by the box's actual share after clipping."""
    xp = chainer.backend.get_array_module(x)
    _, _, h, w = x.shape
    top, bottom, left, right = box(rng, h, w, 1 - dominant(float(rng.beta(alpha, alpha))))
    order = xp.asarray(rng.permutation(len(x)))
    x = x.copy()
    x[:, :, top:bottom, left:right] = x[order][:, :, top:bottom, left:right]
    lam = 1 - (bottom - top) * (right - left) / (h * w)
    return x, lam * soft + (1 - lam) * soft[order]


class BatchAugment:
    """A converter: ``converter``'s batch, then cutout, then mixup or cutmix.

    With both ``mixup`` and ``cutmix``, each batch takes one of them with probability 1/2
    (timm's switch). Without either, the labels stay int labels.

    Args:
        converter: makes ``(x, t)`` on the device (``concat_examples``, ``DeviceNormalize``).
        n_classes: classes of the soft targets.
        cutout: side of the erased square as a fraction of the image side (0: none).
        mixup: Beta's alpha for mixup (0: none).
        cutmix: Beta's alpha for cutmix (0: none).
        seed: seed of the generator (None: from the OS).
    """

    def __init__(
        self,
        converter,
        n_classes: int,
        cutout: float = 0.0,
        mixup: float = 0.0,
        cutmix: float = 0.0,
        seed: int | None = None,
    ) -> None:
        self.converter = converter
        self.n_classes = n_classes
        self.cutout, self.mixup, self.cutmix = cutout, mixup, cutmix
        self.rng = np.random.default_rng(seed)

    def __call__(self, batch, device=None) -> tuple:
        x, t = self.converter(batch, device)
        if self.cutout:
            x = x.copy()
            cutout(x, self.rng, self.cutout)
        modes = [(f, alpha) for f, alpha in ((mixup, self.mixup), (cutmix, self.cutmix)) if alpha]
        if modes:
            mix, alpha = modes[int(self.rng.integers(len(modes)))]
            xp = chainer.backend.get_array_module(x)
            x, t = mix(x, one_hot(t, self.n_classes, xp), self.rng, alpha)
        return x, t
