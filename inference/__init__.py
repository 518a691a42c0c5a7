"""Inference: classify a user's images with a model the trainer wrote, or export it to ONNX.

``load_predictor(path)`` gives a ``Predictor`` (images in, top-k classes out) from a
``model.npz``, a snapshot or an exported ``model.onnx``, with the architecture, class names
and preset of the run's record; ``Predictor`` itself takes any forward function (numpy
batch in, logits out): a Chainer link (``ChainerForward``) or ONNX Runtime
(``OnnxForward``). Images are decoded and made CIFAR-like by ``images``; ``export_onnx``
writes a checked ONNX file. ``cli`` holds the command lines of ``predict`` and ``export``.

Built on the trainer's run-folder format, transforms and registry; the trainer imports
nothing from here, and the HTTP service (``serving``) is a layer above. ONNX, onnx-chainer
and ONNX Runtime are optional extras, imported only when used.
"""

import chainer_compat  # noqa: F401  (first: lets Chainer import on current stacks)

# isort: split
from inference.cli import (
    add_model_arguments,
    build_export_parser,
    build_predict_parser,
    load_from_args,
)
from inference.export import Exported, ExportError, export_onnx
from inference.loading import BACKENDS, load_chainer_predictor, load_predictor
from inference.onnx_backend import ModelInfo, OnnxForward, load_onnx_predictor, onnx_forward
from inference.predictor import (
    BATCH,
    DEFAULT_TOP,
    ChainerForward,
    Prediction,
    Predictor,
    Result,
    format_json,
    format_text,
    preprocess,
    softmax,
    top_k,
)
from trainer.images import (
    BYTES_PER_PIXEL,
    ImageTooLargeError,
    open_image,
    to_cifar,
    to_cifar_image,
)

__all__ = [
    'BACKENDS',
    'BATCH',
    'BYTES_PER_PIXEL',
    'DEFAULT_TOP',
    'ChainerForward',
    'ExportError',
    'Exported',
    'ImageTooLargeError',
    'ModelInfo',
    'OnnxForward',
    'Prediction',
    'Predictor',
    'Result',
    'add_model_arguments',
    'build_export_parser',
    'build_predict_parser',
    'export_onnx',
    'format_json',
    'format_text',
    'load_chainer_predictor',
    'load_from_args',
    'load_onnx_predictor',
    'load_predictor',
    'onnx_forward',
    'open_image',
    'preprocess',
    'softmax',
    'to_cifar',
    'to_cifar_image',
    'top_k',
]
