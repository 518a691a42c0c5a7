"""Classify images with a trained model, preprocessed exactly as the test set was.

Each image is first made CIFAR-like (``trainer.images.to_cifar``: 32x32 RGB), then the
preset's test transform runs on it unchanged (``make_transforms(preset)[1]``: resize to 128
for '122', keep 32 for '32', normalize). The ``Predictor`` knows nothing of files: it is
given a forward function (a Chainer link through ``ChainerForward``, or another backend's,
``inference.onnx_backend``); ``inference.loading`` builds one from the files a run wrote.
"""

import json
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import chainer
import numpy as np
from PIL import Image

import layers
from trainer.errors import ImageError
from trainer.images import open_image, to_cifar
from trainer.transforms import make_transforms

DEFAULT_TOP = 3
BATCH = 32  # images per forward pass, to bound memory for long file lists


@dataclass(frozen=True)
class Prediction:
    """One class of a top-k answer."""

    label: str
    probability: float


@dataclass(frozen=True)
class Result:
    """The answer for one input: its top-k predictions, or the error that stopped it."""

    source: str
    predictions: list[Prediction] | None = None
    error: str | None = None


def preprocess(image: Image.Image, preset: str = '122') -> np.ndarray:
    """The float32 CHW network input: ``to_cifar``, then the preset's test transform."""
    return make_transforms(preset)[1]((to_cifar(image), 0))[0]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, so each row sums to 1 to rounding."""
    z = logits.astype(np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def top_k(probabilities: np.ndarray, labels: Sequence[str], k: int) -> list[Prediction]:
    """The ``k`` most probable classes of one probability vector, most probable first."""
    order = np.argsort(-probabilities, kind='stable')[:k]
    return [Prediction(labels[i], float(probabilities[i])) for i in order]


class ChainerForward:
    """A Chainer link as a forward function: a numpy batch in, numpy logits out.

    Runs in test mode without a graph, under a lock (Chainer links are not thread-safe).
    The parameters are taken to hold still (``layers.FrozenWeights``): what the CPU fast
    path derives from them (oneDNN's weight layout, batch normalizations' scale and shift)
    is computed on the first call and kept. After writing the model's parameters in place
    (``load_npz`` into it, an optimizer step), call ``refresh``.

    Args:
        model: a link mapping (N, 3, H, W) float32 images to (N, n_classes) logits.
        device: where the model runs (NumPy when None).
    """

    def __init__(self, model: chainer.Link, device: chainer.backend.Device | None = None) -> None:
        self.model = model
        self.device = device or chainer.get_device('@numpy')
        self.model.to_device(self.device)
        self._lock = threading.Lock()
        self._frozen = layers.FrozenWeights()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = self.device.send(x)
        with self._lock, chainer.using_config('train', False), chainer.no_backprop_mode():
            with self._frozen.active():
                logits = self.model(x).array
        return chainer.backend.CpuDevice().send(logits)

    def refresh(self) -> None:
        """Forget what was derived from the parameters (after they were written in place)."""
        with self._lock:
            self._frozen.clear()


class Predictor:
    """A trained model with its class names and preprocessing: images in, top-k out.

    Safe to share between threads: preprocessing runs in the caller's thread, the forward
    pass is the backend's (``ChainerForward`` serializes Chainer's).

    Args:
        model: a link mapping (N, 3, H, W) float32 images to (N, n_classes) logits, weights
            already loaded; or any forward function numpy batch -> numpy logits (another
            backend, e.g. ONNX Runtime).
        labels: class names in label order.
        preset: the transform preset the model was trained with ('122' or '32').
        device: where a Chainer model runs (NumPy when None).
        name: the architecture's name, for display (``--arch``).
    """

    def __init__(
        self,
        model: chainer.Link | Callable[[np.ndarray], np.ndarray],
        labels: Sequence[str],
        preset: str = '122',
        device: chainer.backend.Device | None = None,
        name: str = '',
    ) -> None:
        if isinstance(model, chainer.Link):
            self.forward = ChainerForward(model, device)
            self.name = name or type(model).__name__
        else:
            self.forward = model
            self.name = name or 'model'
        self.labels = tuple(labels)
        self.preset = preset
        self.transform = make_transforms(preset)[1]

    def probabilities(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Class probabilities, (len(images), n_classes) float64."""
        return self._probabilities([to_cifar(image) for image in images])

    def predict(self, images: Sequence[Image.Image], top: int = DEFAULT_TOP) -> list:
        """The top ``top`` predictions of each image (all classes if ``top`` exceeds them)."""
        return [top_k(p, self.labels, top) for p in self.probabilities(images)]

    def classify_files(
        self, paths: Iterable[str | os.PathLike], top: int = DEFAULT_TOP
    ) -> list[Result]:
        """One Result per path, in order; an unreadable file gets its error, the rest answers.

        Whatever decoding one file raises is that file's error; only what is not a regular
        file (a FIFO, a device) is refused before reading (``trainer.images.read_file``).

        Each image is shrunk to 32x32 as soon as it is read, so long lists of large photos
        take little memory.
        """
        paths = [str(path) for path in paths]
        cifar, errors = {}, {}
        for path in paths:
            try:
                cifar[path] = to_cifar(open_image(path))
            except ImageError as error:
                errors[path] = str(error)
            except MemoryError:
                errors[path] = 'image too large to decode in the memory available'
            except Exception as error:  # a decoder's failure on one file is that file's line
                errors[path] = f'damaged image ({type(error).__name__}: {error})'
        answers = dict(zip(cifar, self._probabilities(list(cifar.values())), strict=True))
        return [
            Result(path, None, errors[path])
            if path in errors
            else Result(path, top_k(answers[path], self.labels, top))
            for path in paths
        ]

    def _probabilities(self, cifar: list[np.ndarray]) -> np.ndarray:
        probabilities = [np.zeros((0, len(self.labels)))]
        for start in range(0, len(cifar), BATCH):
            x = np.stack([self.transform((c, 0))[0] for c in cifar[start : start + BATCH]])
            probabilities.append(softmax(np.asarray(self.forward(x))))
        return np.concatenate(probabilities)


def format_text(result: Result) -> str:
    """A successful Result as one line: ``path: label p, label p, ...``."""
    answer = ', '.join(f'{p.label} {p.probability:.4f}' for p in result.predictions)
    return f'{result.source}: {answer}'


def format_json(results: Sequence[Result]) -> str:
    """A JSON list with, per input, its file and its predictions or its error."""
    items = []
    for result in results:
        item = {'file': result.source}
        if result.error is not None:
            item['error'] = result.error
        else:
            item['predictions'] = [
                {'label': p.label, 'probability': p.probability} for p in result.predictions
            ]
        items.append(item)
    return json.dumps(items, indent=2)
