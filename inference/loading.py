"""A Predictor from the files a run wrote: the weights in Chainer, or an exported ONNX model.

The weights come from either file the trainer writes (``model.npz`` or a
``snapshot_epoch_N``, see ``trainer.run_folder``); the architecture, class names and preset
come from the ``run.json`` beside them. An exported ``model.onnx`` carries the same record
in its metadata (``inference.onnx_backend``). Either way a flag that contradicts the record
is refused by the one check, ``trainer.run_folder.check_record``.
"""

import os

from inference.onnx_backend import load_onnx_predictor
from inference.predictor import Predictor
from trainer import registry
from trainer.devices import get_device
from trainer.errors import DeviceError, ModelFileError
from trainer.run_folder import class_names, load_weights, model_options, model_settings

BACKENDS = ('chainer', 'onnx')
ONNX_SUFFIX = '.onnx'


def backend_for(path: str | os.PathLike) -> str:
    """The backend a model file needs when none is named: onnx for ``*.onnx``, else chainer.

    The trainer writes ``model.npz`` and ``snapshot_epoch_N``, ``main.py export`` a
    ``.onnx`` file; a file that is neither is refused by the chainer loader's checks.
    """
    return 'onnx' if os.fspath(path).lower().endswith(ONNX_SUFFIX) else 'chainer'


def load_predictor(
    path: str | os.PathLike,
    arch: str | None = None,
    dataset: str | None = None,
    preset: str | None = None,
    gpu: int = -1,
    backend: str | None = None,
) -> Predictor:
    """A Predictor with the weights of ``path`` (``model.npz`` or a snapshot).

    ``arch``, ``dataset`` and ``preset`` default to the ``run.json`` beside ``path`` (the
    run that wrote it), else to squeezenet, cifar10 and 122; a value that contradicts the
    record is refused. With ``backend='onnx'``, ``path`` is a ``model.onnx`` written by
    ``inference.export`` and run by ONNX Runtime on the CPU; its metadata is the record.
    ``backend`` None picks it from the file's name (``backend_for``). Raises
    ModelFileError (or another UserError) with one line.
    """
    backend = backend or backend_for(path)
    if backend == 'onnx':
        if gpu >= 0:
            raise DeviceError('--backend onnx runs on the CPU: leave -g out')
        return load_onnx_predictor(path, arch, dataset, preset)
    if backend_for(path) == 'onnx':
        raise ModelFileError(
            f'{path}: an ONNX file runs with --backend onnx (the default for .onnx files)'
        )
    return load_chainer_predictor(path, arch, dataset, preset, gpu)


def load_chainer_predictor(
    path: str | os.PathLike,
    arch: str | None = None,
    dataset: str | None = None,
    preset: str | None = None,
    gpu: int = -1,
) -> Predictor:
    """A Predictor running the weights of ``path`` in Chainer, on GPU ``gpu`` (-1: the CPU).

    The architecture is rebuilt from the registry (``--arch``) and the weights loaded into
    it; the settings are resolved against the run's record as ``load_predictor`` says.
    """
    arch, dataset, preset = model_settings(path, arch, dataset, preset)
    labels = class_names(path, dataset)
    device = get_device(gpu)
    model = registry.build(arch, len(labels), **model_options(path))
    load_weights(model, path, len(labels))
    return Predictor(model, labels, preset, device, name=arch)
