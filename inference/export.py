"""Export a trained model to ONNX, checked against Chainer's own logits before it is written.

``export_onnx(model_path, output)`` reads the weights of a ``model.npz`` or a
``snapshot_epoch_N`` and the architecture, data set and preset from the ``run.json`` beside
them (as ``inference.load_predictor`` does), converts the model with onnx-chainer
1.6.0 and stores that record in the file's metadata (``inference.onnx_backend.ModelInfo``). The
graph maps preprocessed float32 images (N, 3, H, W) to logits, like the Chainer model, with
a dynamic batch axis; the preset's test transform stays outside it. The model is built in
its plain composition (``fast=False`` where its factory takes it): onnx-chainer converts
Chainer's functions, not the CPU fast path's own nodes.

Before the file is written, ONNX Runtime runs the graph on test-transformed images at
batch 1 and a larger batch, and must reproduce Chainer's logits within ``TOLERANCE`` of
their scale (or else an ``ExportError``, and no file).

onnx-chainer 1.6.0 needs ``onnx==1.18.0`` (the last release with ``onnx.mapping``; with
1.19+ it reports "ONNX is not installed"); all three are optional extras.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import chainer
import numpy as np

from inference.onnx_backend import INPUT, OUTPUT, ModelInfo, OnnxForward
from trainer import registry
from trainer.environment import git_commit
from trainer.errors import ExportError
from trainer.extras import INSTALL, MissingExtraError, require
from trainer.run_folder import (
    class_names,
    load_weights,
    model_options,
    model_settings,
    refuse_non_regular,
    write_atomically,
)
from trainer.transforms import make_transforms

# ONNX Runtime's logits may differ from Chainer's by this fraction of the largest logit
# (or by this much, for logits below 1): float32 sums in another order. Measured on a
# 1-epoch SqueezeNet with logits up to 90: 2.3e-5 at batch 1, 5.7e-5 at batch 16.
TOLERANCE = 1e-4
CHECK_BATCHES = (1, 16)  # batch sizes the export is checked at (the batch axis is dynamic)
OPSET = 11  # the highest opset onnx-chainer 1.6.0 was tested with
BATCH_AXIS = 'batch'


@dataclass(frozen=True)
class Exported:
    """What ``export_onnx`` wrote and how closely it matches Chainer.

    Args:
        path: the ONNX file.
        info: its metadata.
        errors: batch size -> largest |ONNX Runtime - Chainer| logit difference.
        same_top1: batch size -> fraction of the check's images with the same top class.
        allowed: the largest difference the check accepted.
    """

    path: Path
    info: ModelInfo
    errors: dict[int, float]
    same_top1: dict[int, float]
    allowed: float


def export_onnx(
    model_path: str | os.PathLike,
    output: str | os.PathLike,
    arch: str | None = None,
    dataset: str | None = None,
    preset: str | None = None,
    *,
    tolerance: float = TOLERANCE,
    check_batches: tuple[int, ...] = CHECK_BATCHES,
    seed: int = 0,
) -> Exported:
    """Export the weights of ``model_path`` to the ONNX file ``output``, checked first.

    ``arch``, ``dataset`` and ``preset`` default to the ``run.json`` beside ``model_path``,
    else to squeezenet, cifar10 and 122; a value contradicting the record is refused.
    Raises a ``UserError`` with one line: ModelFileError (weights), MissingExtraError
    (onnx-chainer, onnx or onnxruntime missing), RunFolderError (``output`` exists and is
    not a regular file: a device, a FIFO, a folder), ExportError (an empty ``output``, or
    the conversion or check failed; nothing is written then).
    """
    onnx, onnx_chainer = _require_exporter()
    if not os.fspath(output):
        raise ExportError('the output path is empty: name the ONNX file to write')
    output = Path(output)
    refuse_non_regular(output)  # before the conversion: a device or FIFO is never written
    if not output.parent.is_dir():
        raise ExportError(f'{output}: cannot write (no folder {output.parent})')
    arch, dataset, preset = model_settings(model_path, arch, dataset, preset)
    labels = class_names(model_path, dataset)
    options = {**model_options(model_path), **registry.accepted_options(arch, {'fast': False})}
    model = registry.build(arch, len(labels), **options)
    load_weights(model, model_path, len(labels))

    images = sample_images(preset, max(check_batches), seed)
    info = ModelInfo(
        arch=arch,
        dataset=dataset,
        preset=preset,
        labels=tuple(labels),
        input_shape=tuple(images.shape[1:]),
        source=str(Path(model_path).resolve()),
        git_commit=git_commit(),
    )
    proto = _convert(onnx, onnx_chainer, model, images[:1], info)
    data = proto.SerializeToString()
    forward = OnnxForward(data, threads=1)
    errors, agree, allowed = check(model, forward, images, check_batches, tolerance)

    try:
        write_atomically(output, lambda tmp: Path(tmp).write_bytes(data))
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        raise ExportError(f'{output}: cannot write ({reason})') from None
    return Exported(output, info, errors, agree, allowed)


def _require_exporter():
    """(onnx, onnx_chainer), or MissingExtraError naming what is missing or too new."""
    onnx = require('onnx', 'ONNX export')
    require('onnxruntime', 'ONNX export (its check)')
    if not hasattr(onnx, 'mapping'):
        raise MissingExtraError(
            f'ONNX export needs onnx 1.18.0 (onnx {onnx.__version__} has no onnx.mapping, which '
            f'onnx-chainer 1.6.0 imports); install the extras: {INSTALL}'
        )
    return onnx, require('onnx_chainer', 'ONNX export', 'onnx-chainer')


def sample_images(preset: str, n: int, seed: int = 0) -> np.ndarray:
    """``n`` random CIFAR-like images through the preset's test transform, float32 NCHW."""
    rng = np.random.default_rng(seed)
    transform = make_transforms(preset)[1]
    raw = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    return np.stack([transform((image, 0))[0] for image in raw])


def _convert(onnx, onnx_chainer, model: chainer.Link, x: np.ndarray, info: ModelInfo):
    """The ONNX ModelProto of ``model`` in test mode: dynamic batch, weights as constants."""
    try:
        with chainer.using_config('train', False), warnings.catch_warnings():
            warnings.simplefilter('ignore')  # onnx 1.18's deprecation of onnx.mapping
            proto = onnx_chainer.export(
                model,
                x,
                input_names=[INPUT],
                output_names=[OUTPUT],
                input_shapes=(BATCH_AXIS, *x.shape[1:]),
                opset_version=OPSET,
            )
    except Exception as error:  # whatever a converter raises on a node it cannot handle
        raise ExportError(
            f'--arch {info.arch}: onnx-chainer cannot convert this model ({type(error).__name__}: '
            f'{error})'
        ) from None
    # onnx-chainer lists the weights as graph inputs too; as initializers only, they are
    # constants ONNX Runtime can fold, and the graph's one input is the images.
    weights = {tensor.name for tensor in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in weights]
    del proto.graph.input[:]
    proto.graph.input.extend(inputs)
    proto.producer_name = 'onnx-chainer'
    for key, value in info.to_props().items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    return proto


def check(
    model: chainer.Link,
    forward: OnnxForward,
    images: np.ndarray,
    batches: tuple[int, ...],
    tolerance: float,
) -> tuple[dict[int, float], dict[int, float], float]:
    """Compare ONNX Runtime's logits with Chainer's at each batch size; ExportError if off.

    Returns (batch size -> largest difference, batch size -> fraction of images with the
    same top class, the difference allowed). Within it, a top class can differ only where
    Chainer's own two best logits are closer than twice the allowed difference.
    """
    errors, agree, allowed = {}, {}, 0.0
    for n in batches:
        x = images[:n]
        with chainer.using_config('train', False), chainer.no_backprop_mode():
            expected = model(x).array
        got = forward(x)
        allowed = max(allowed, tolerance * max(1.0, float(np.abs(expected).max())))
        if got.shape != expected.shape:
            raise ExportError(f'ONNX Runtime returned logits {got.shape}, Chainer {expected.shape}')
        errors[n] = float(np.abs(got - expected).max())
        if not errors[n] <= allowed:
            raise ExportError(
                f'ONNX Runtime differs from Chainer by {errors[n]:.3g} at batch {n} (allowed '
                f'{allowed:.3g}); the export is not written'
            )
        agree[n] = float(np.mean(got.argmax(1) == expected.argmax(1)))
    return errors, agree, allowed
