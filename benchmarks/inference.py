"""Inference speed of the prediction backends: Chainer and ONNX Runtime; one JSON object.

    python -m benchmarks.inference [--size 128] [--batches 1 64] [--repeat 5] [--steps 5]
    python -m benchmarks.inference --ort-threads 1 2   # ONNX Runtime at 1 and 2 threads

Times the forward pass a ``inference.Predictor`` makes, on a preprocessed float32
batch (the test transform is the same for every backend, and timed once on its own):

- ``chainer``: ``ChainerForward`` of SqueezeNet(10) on its CPU fast path (what ``predict``
  and ``serve`` run today), ``chainer_plain`` the same in Chainer's plain composition;
- ``onnx``: ``OnnxForward`` of the same weights exported by ``inference.export`` (which
  checks the export against Chainer first), at each ``--ort-threads`` count (default: the
  cores this process may use).

Per backend and batch size: the latency of one call (ms: median, min, max, quartiles of
``--repeat`` runs, each the mean over ``--steps`` calls after ``--warmup``) and the images
per second it implies. The weights are random (speed does not depend on them). Needs the
ONNX extras (``make install-extras``) for the ONNX figures.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import chainer_compat  # noqa: F401  (first: lets Chainer import on current stacks)

# isort: split
import chainer
import numpy as np

from benchmarks.speed import blas_threads, fast_path_environment, summarize
from inference.export import export_onnx
from inference.onnx_backend import OnnxForward, default_threads
from inference.predictor import ChainerForward
from squeeze_net import SqueezeNet
from trainer.environment import cpu_name, version
from trainer.errors import UserError
from trainer.transforms import make_transforms

N_CLASSES = 10
PRESETS = {128: '122', 32: '32'}  # test image side -> the preset whose test transform gives it


def latency(forward: Callable, x: np.ndarray, steps: int, repeat: int, warmup: int) -> dict:
    """Milliseconds per call of ``forward(x)``, and the images per second they imply."""
    for _ in range(warmup):
        forward(x)
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(steps):
            forward(x)
        runs.append((time.perf_counter() - start) / steps * 1000)
    ms = summarize(runs)
    return {'ms': ms, 'images_per_sec': len(x) * 1000 / ms['median']}


def preprocess_rate(preset: str, n: int = 64) -> float:
    """Images per second of the preset's test transform (CIFAR 32x32 uint8 in)."""
    transform = make_transforms(preset)[1]
    raw = np.random.default_rng(0).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    start = time.perf_counter()
    for image in raw:
        transform((image, 0))
    return n / (time.perf_counter() - start)


def backends(folder: Path, preset: str, ort_threads: list[int]) -> dict[str, Callable]:
    """name -> forward function, all with the weights of one random SqueezeNet(10)."""
    model = SqueezeNet(N_CLASSES)
    chainer.serializers.save_npz(folder / 'model.npz', model)
    plain = SqueezeNet(N_CLASSES, fast=False)
    chainer.serializers.load_npz(folder / 'model.npz', plain)
    found = {'chainer': ChainerForward(model), 'chainer_plain': ChainerForward(plain)}
    exported = export_onnx(folder / 'model.npz', folder / 'model.onnx', preset=preset)
    for threads in ort_threads:
        found[f'onnx_{threads}_threads'] = OnnxForward(exported.path, threads)
    return found


def run(options: argparse.Namespace) -> dict:
    """Every backend at every batch size, with the environment the figures hold for."""
    preset = PRESETS[options.size]
    ort_threads = options.ort_threads or [default_threads()]
    rng = np.random.default_rng(0)
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, forward in backends(Path(tmp), preset, ort_threads).items():
            figures[name] = {}
            for batch in options.batches:
                x = rng.standard_normal((batch, 3, options.size, options.size), np.float32)
                figures[name][str(batch)] = latency(
                    forward, x, options.steps, options.repeat, options.warmup
                )
    return {
        'size': options.size,
        'preprocess_images_per_sec': preprocess_rate(preset),
        'backends': figures,
        'environment': {
            'cpu': cpu_name(),
            'cores_available': default_threads(),
            'blas_threads': blas_threads(),
            **fast_path_environment(),
            'onnxruntime': version('onnxruntime'),
            'onnx': version('onnx'),
            'chainer': chainer.__version__,
            'numpy': np.__version__,
            'python': sys.version.split()[0],
            'OMP_NUM_THREADS': os.environ.get('OMP_NUM_THREADS'),
        },
    }


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be 1 or more, got {value}')
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='python -m benchmarks.inference',
        description='Time the prediction backends (Chainer, ONNX Runtime); print JSON.',
    )
    parser.add_argument(
        '--size', type=int, choices=sorted(PRESETS), default=128, help='test image side'
    )
    parser.add_argument('--batches', type=_positive, nargs='+', default=[1, 64])
    parser.add_argument(
        '--ort-threads',
        type=_positive,
        nargs='+',
        help='ONNX Runtime thread counts to time (default: the cores available)',
    )
    parser.add_argument('--repeat', type=_positive, default=5, help='timed runs')
    parser.add_argument('--steps', type=_positive, default=5, help='calls per run')
    parser.add_argument('--warmup', type=int, default=2, help='untimed calls first')
    return parser


def main(argv: list[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    try:
        result = run(options)
    except UserError as error:  # the ONNX extras missing, mostly
        print(f'error: {error}', file=sys.stderr)
        return 1
    print(json.dumps(result, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
