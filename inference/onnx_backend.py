"""Forward passes other than Chainer's: an exported ONNX model run by ONNX Runtime.

``OnnxForward`` is an ``inference.predictor.Predictor`` backend (a numpy batch (N, 3, H, W)
of preprocessed float32 images in, numpy logits out), so ``predict`` and ``serve`` give the
same answers from a ``model.onnx`` as from the ``model.npz`` it was exported from
(``inference.export``). Preprocessing stays outside the graph: the preset, class names and
architecture come from the file's metadata (``ModelInfo``), written by the export.
ONNX Runtime is an optional extra, imported only here and only when used.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference.predictor import Predictor
from trainer.errors import ModelFileError
from trainer.extras import require
from trainer.run_folder import check_record

INPUT = 'images'
OUTPUT = 'logits'
PRODUCER = 'squeezenet-chainer inference.export'


@dataclass(frozen=True)
class ModelInfo:
    """What an exported model needs besides its graph: the ONNX file's ``metadata_props``.

    Args:
        arch: the architecture (``--arch``) it was trained as.
        dataset: the data set, whose class names are ``labels``.
        preset: the transform preset; its test transform makes the graph's input.
        labels: class names in label order (the logits' order).
        input_shape: (3, H, W) of one preprocessed image.
        source: the weights file it was exported from.
        git_commit: the project's commit at export (None outside git).
    """

    arch: str
    dataset: str
    preset: str
    labels: tuple[str, ...]
    input_shape: tuple[int, int, int]
    source: str = ''
    git_commit: str | None = None

    def to_props(self) -> dict[str, str]:
        """The metadata as ONNX key -> string pairs (lists as JSON)."""
        props = {
            'producer': PRODUCER,
            'arch': self.arch,
            'dataset': self.dataset,
            'preset': self.preset,
            'class_names': json.dumps(list(self.labels)),
            'input_shape': json.dumps(list(self.input_shape)),
            'source': self.source,
        }
        if self.git_commit:
            props['git_commit'] = self.git_commit
        return props

    @classmethod
    def from_props(cls, props: dict[str, str], where: str | os.PathLike = 'model') -> ModelInfo:
        """Read ``to_props``'s pairs; ModelFileError (one line) if they are missing or bad."""
        missing = [k for k in ('arch', 'dataset', 'preset', 'class_names') if k not in props]
        if missing:
            raise ModelFileError(
                f'{where}: an ONNX model without {", ".join(missing)} in its metadata; export '
                'it with main.py export, which records them'
            )
        try:
            labels = tuple(json.loads(props['class_names']))
            shape = tuple(json.loads(props.get('input_shape', '[]')))
        except ValueError as error:
            raise ModelFileError(f'{where}: unreadable ONNX metadata ({error})') from None
        return cls(
            arch=props['arch'],
            dataset=props['dataset'],
            preset=props['preset'],
            labels=labels,
            input_shape=shape,
            source=props.get('source', ''),
            git_commit=props.get('git_commit'),
        )


def default_threads() -> int:
    """ONNX Runtime's threads: the cores this process may use (its CPU affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class OnnxForward:
    """An ONNX model as a forward function: a float32 batch (N, 3, H, W) in, logits out.

    Safe to call from several threads at once (ONNX Runtime's ``run`` is). One pass uses
    ``threads`` threads; they sleep instead of spinning between passes, so a server's other
    threads (decoding, preprocessing) keep their cores.

    Args:
        model: the ``.onnx`` file, or its bytes.
        threads: intra-op threads (default: the cores available to this process).
    """

    def __init__(self, model: str | os.PathLike | bytes, threads: int | None = None) -> None:
        ort = require('onnxruntime', 'the ONNX backend')
        self.where = 'ONNX model' if isinstance(model, bytes) else str(model)
        if not isinstance(model, bytes):
            path = Path(model)
            if not path.is_file():
                raise ModelFileError(f'{path}: no such file')
            model = str(path)
        self.threads = threads or default_threads()
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only
        options.add_session_config_entry('session.intra_op.allow_spinning', '0')
        try:
            self.session = ort.InferenceSession(model, options, providers=['CPUExecutionProvider'])
        except Exception as error:  # ONNX Runtime's own exception types are not public
            reason = (str(error).strip() or type(error).__name__).splitlines()[0]
            raise ModelFileError(f'{self.where}: not a usable ONNX model ({reason})') from None
        self.info = ModelInfo.from_props(
            self.session.get_modelmeta().custom_metadata_map, self.where
        )
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        return self.session.run(None, {self.input: x})[0]


def onnx_forward(
    path: str | os.PathLike, threads: int | None = None
) -> tuple[OnnxForward, ModelInfo]:
    """The forward function of an exported ``.onnx`` file and its metadata.

    For ``inference.Predictor(forward, info.labels, info.preset, name=info.arch)``.
    Raises ModelFileError (missing, foreign or unreadable file) or MissingExtraError
    (ONNX Runtime not installed), each one line.
    """
    forward = OnnxForward(path, threads)
    return forward, forward.info


def load_onnx_predictor(
    path: str | os.PathLike,
    arch: str | None = None,
    dataset: str | None = None,
    preset: str | None = None,
    threads: int | None = None,
) -> Predictor:
    """An ``inference.Predictor`` answering from an exported ``.onnx`` file.

    ``arch``, ``dataset`` and ``preset`` are read from the file's metadata; a given value
    that contradicts it is refused with one line (``trainer.run_folder.check_record``, the
    same check as for run.json).
    """
    forward, info = onnx_forward(path, threads)
    check_record(
        {'arch': arch, 'dataset': dataset, 'preset': preset},
        {'arch': info.arch, 'dataset': info.dataset, 'preset': info.preset},
        f'the metadata of {path}',
    )
    return Predictor(forward, info.labels, info.preset, name=info.arch)
