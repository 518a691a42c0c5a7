"""Classify image files with a trained model, preprocessed exactly as the test set was.

A user's image (any size, PNG or JPEG, any colour mode) is first made CIFAR-like: RGB,
transparency composited over white, squashed to 32x32 with bilinear filtering (how the
CIFAR images were downsampled). Then the preset's test transform runs on it unchanged
(``make_transforms(preset)[1]``: resize to 128 for '122', keep 32 for '32', normalize).

Weights come from either file the trainer writes, told apart by their npz keys:
``model.npz`` (the bare model) or ``snapshot_epoch_N`` (the whole trainer, model under
``SNAPSHOT_PREFIX``). The model itself comes from a factory, so nothing here knows its
architecture; wrong files are caught by comparing names and shapes with the model's own.
"""

import argparse
import io
import json
import os
import threading
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import chainer
import numpy as np
from PIL import Image, ImageOps

from trainer.devices import get_device
from trainer.transforms import PRESETS, make_transforms

CIFAR10_LABELS = tuple('airplane automobile bird cat deer dog frog horse ship truck'.split())
# CIFAR-100's fine_label_names in the official (label) order, which is alphabetical.
CIFAR100_LABELS = tuple(
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
LABELS = {'cifar10': CIFAR10_LABELS, 'cifar100': CIFAR100_LABELS}
# Where a trainer snapshot keeps the model: updater -> optimizer 'main' -> Classifier.predictor.
SNAPSHOT_PREFIX = 'updater/model:main/predictor/'
CIFAR_SIZE = 32
BACKGROUND = (255, 255, 255)  # what transparent pixels become: CIFAR images have no alpha
DEFAULT_TOP = 3
BATCH = 32  # images per forward pass, to bound memory for long file lists


class ModelFileError(ValueError):
    """A weights file that cannot be loaded into the model; the message names file and cause."""


class ImageError(ValueError):
    """An input that is not a readable image; the message says why."""


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


def load_weights(model: chainer.Link, path: str | os.PathLike, n_classes: int | None = None) -> str:
    """Load ``model.npz`` or a trainer snapshot into ``model``; return 'model' or 'snapshot'.

    Every array the model has must be in the file with its shape, and nothing else, so a
    file of another kind or architecture is refused before anything is loaded. With
    ``n_classes``, weights for another class count are named as such.
    Raises ModelFileError with a one-line message.
    """
    path = Path(path)
    arrays = _read_npz(path)
    if any(key.startswith(SNAPSHOT_PREFIX) for key in arrays):
        kind, prefix = 'snapshot', SNAPSHOT_PREFIX
    elif any(key.startswith('updater/') for key in arrays):
        raise ModelFileError(f'{path}: a trainer snapshot without weights under {SNAPSHOT_PREFIX}')
    elif {'t', 'epoch'} <= arrays.keys():
        raise ModelFileError(
            f'{path}: an optimizer state (optimizer.npz), not model weights; '
            'use model.npz or a snapshot_epoch_N'
        )
    else:
        kind, prefix = 'model', ''
    weights = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
    _check_fits(path, kind, weights, model, n_classes)
    chainer.serializers.NpzDeserializer(weights, strict=True).load(model)
    return kind


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        raise ModelFileError(f'{path}: no such file')
    if not path.is_file():
        raise ModelFileError(f'{path}: not a file')
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f'{path}: not an npz file (model.npz or snapshot_epoch_N)')
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ModelFileError(f'{path}: damaged or foreign npz file ({error})') from None


def _check_fits(
    path: Path, kind: str, weights: dict, model: chainer.Link, n_classes: int | None
) -> None:
    serializer = chainer.serializers.DictionarySerializer()
    serializer.save(model)
    expected = serializer.target
    missing = sorted(expected.keys() - weights.keys())
    unknown = sorted(weights.keys() - expected.keys())
    if missing or unknown:
        raise ModelFileError(
            f"{path}: {kind} weights of another architecture: {len(missing)} of the model's "
            f'{len(expected)} arrays missing{_example(missing)}, {len(unknown)} '
            f'unknown{_example(unknown)}'
        )
    wrong = [
        (key, weights[key].shape, np.shape(value))
        for key, value in sorted(expected.items())
        if np.asarray(value).dtype != object  # an uninitialized parameter takes any shape
        if weights[key].shape != np.shape(value)
    ]
    if not wrong:
        return
    counts = {_class_count(got, want, n_classes) for _, got, want in wrong}
    if n_classes is not None and None not in counts and len(counts) == 1:
        raise ModelFileError(
            f'{path}: weights of a {counts.pop()}-class model, expected {n_classes} classes'
        )
    key, got, want = wrong[0]
    raise ModelFileError(
        f'{path}: {kind} weights of another architecture: {key} is {got}, the model expects {want}'
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


def open_image(source: str | os.PathLike | bytes) -> Image.Image:
    """Decode an image file or its bytes completely; raise ImageError with the reason."""
    if not isinstance(source, bytes):
        try:
            source = Path(source).read_bytes()
        except OSError as error:
            raise ImageError((error.strerror or str(error)).lower()) from None
    try:
        image = Image.open(io.BytesIO(source))
        image.load()
    except Image.UnidentifiedImageError:
        raise ImageError('not an image (PNG, JPEG or another format Pillow reads)') from None
    except Image.DecompressionBombError as error:
        raise ImageError(f'too many pixels ({error})') from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise ImageError(f'damaged image ({error})') from None
    return image


def to_cifar(image: Image.Image) -> np.ndarray:
    """A uint8 (3, 32, 32) RGB image like CIFAR's: upright, alpha over white, bilinear resize."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ('I', 'I;16', 'I;16L', 'I;16B', 'I;16N'):  # 16-bit grey: scale to 8 bits
        image = Image.fromarray((np.asarray(image) / 257).clip(0, 255).astype(np.uint8))
    if 'A' in image.getbands() or 'transparency' in image.info:
        image = image.convert('RGBA')
        image = Image.alpha_composite(Image.new('RGBA', image.size, BACKGROUND), image)
    image = image.convert('RGB').resize((CIFAR_SIZE, CIFAR_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(image).transpose(2, 0, 1).copy()


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


class Predictor:
    """A trained model with its class names and preprocessing: images in, top-k out.

    Safe to share between threads: preprocessing runs in the caller's thread, the forward
    pass under a lock (Chainer links are not thread-safe), in test mode without a graph.

    Args:
        model: a link mapping (N, 3, H, W) float32 images to (N, n_classes) logits, weights
            already loaded.
        labels: class names in label order.
        preset: the transform preset the model was trained with ('122' or '32').
        device: where the model runs (NumPy when None).
    """

    def __init__(
        self,
        model: chainer.Link,
        labels: Sequence[str],
        preset: str = '122',
        device: chainer.backend.Device | None = None,
    ) -> None:
        self.model = model
        self.labels = tuple(labels)
        self.transform = make_transforms(preset)[1]
        self.device = device or chainer.get_device('@numpy')
        self.model.to_device(self.device)
        self._lock = threading.Lock()

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
            x = self.device.send(x)
            with self._lock, chainer.using_config('train', False), chainer.no_backprop_mode():
                logits = self.model(x).array
            probabilities.append(softmax(chainer.backend.CpuDevice().send(logits)))
        return np.concatenate(probabilities)


def load_predictor(
    make_model: Callable[[int], chainer.Link],
    path: str | os.PathLike,
    dataset: str = 'cifar10',
    preset: str = '122',
    gpu: int = -1,
) -> Predictor:
    """A Predictor for ``make_model(n_classes)`` with the weights of ``path`` (either kind).

    Raises ModelFileError for an unusable file and DeviceError for an unusable ``gpu``.
    """
    labels = LABELS[dataset]
    device = get_device(gpu)
    model = make_model(len(labels))
    load_weights(model, path, len(labels))
    return Predictor(model, labels, preset, device)


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


def integer_from(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer of ``low`` or more (and ``high`` or less, if given)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'must be an integer, got {text!r}') from None
        if value < low:
            raise argparse.ArgumentTypeError(f'must be {low} or more, got {text}')
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f'must be {high} or less, got {text}')
        return value

    return parse


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that say which model to load and how it was trained (predict and serve)."""
    add = parser.add_argument
    add('-m', '--model', required=True, help='model.npz or snapshot_epoch_N written by training')
    add(
        '--preset',
        choices=PRESETS,
        default='122',
        help='the preset the model was trained with: its test transform is applied after '
        'resizing each image to 32x32',
    )
    add('--dataset', choices=sorted(LABELS), default='cifar10', help='the class names')
    add('-g', '--gpu', type=integer_from(-1), default=-1, help='GPU id, -1 for the CPU')
    add('--top', type=integer_from(1), default=DEFAULT_TOP, help='classes to show per image')


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The command line of ``predict``: a model and image files."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description='Print the most probable classes of each image file (any size, PNG or '
        'JPEG, any colour mode): resized to 32x32 like CIFAR, then preprocessed like the test '
        'set. Exit status 1 if any input failed.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_model_arguments(parser)
    parser.add_argument('images', nargs='+', help='image files')
    parser.add_argument('--json', action='store_true', help='print a JSON list instead of lines')
    return parser
