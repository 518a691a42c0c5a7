"""oneDNN's convolutions against the im2col kernels on a whole net, in one process.

    .venv/bin/python -m benchmarks.onednn --arch resnet20 --size 32 --batch 64 --mode train
    .venv/bin/python -m benchmarks.onednn --arch squeezenet --size 128 --batch 1 --mode eval

The two paths take turns step by step (``layers.onednn`` switched off and on between
steps), so both see the same neighbours on a shared machine; separate processes a minute
apart can differ by 30 % here. Prints the median and best step of each and their ratio
(> 1: oneDNN is faster), one line, or JSON with ``--json``. ``--min-flops`` overrides
``onednn.MIN_FLOPS`` (0: every convolution on oneDNN).
"""

import argparse
import json
import statistics
import sys
import time

import chainer_compat  # noqa: F401  (first: it lets Chainer import on NumPy 2)

# isort: split
import chainer
import chainer.links as L
import numpy as np

from benchmarks.speed import _positive, build_model
from layers import onednn


def measure(options: argparse.Namespace) -> dict:
    """Seconds per step of each path, alternating, after ``options.warmup`` rounds."""
    model = L.Classifier(build_model(options.arch))
    optimizer = chainer.optimizers.MomentumSGD(0.01)
    optimizer.setup(model)
    rng = np.random.default_rng(0)
    shape = (options.batch, 3, options.size, options.size)
    x = rng.standard_normal(shape, dtype=np.float32)
    t = (np.arange(options.batch) % 10).astype(np.int32)

    def train() -> None:
        model.cleargrads()
        model(x, t).backward()
        optimizer.update()

    def evaluate() -> None:
        with chainer.using_config('train', False), chainer.no_backprop_mode():
            model.predictor(x)

    step = train if options.mode == 'train' else evaluate
    library = onednn.library()
    if library is None:
        raise SystemExit('error: oneDNN does not load here (not installed, or LAYERS_ONEDNN=0)')
    if options.min_flops is not None:
        onednn.MIN_FLOPS = options.min_flops
    times = {'im2col': [], 'onednn': []}
    try:
        for i in range(2 * (options.rounds + options.warmup)):
            name = ('im2col', 'onednn')[i % 2]
            onednn._state['lib'] = library if name == 'onednn' else None
            start = time.perf_counter()
            step()
            if i >= 2 * options.warmup:
                times[name].append(time.perf_counter() - start)
    finally:
        onednn._state['lib'] = library
    return times


def summary(times: dict) -> dict:
    out = {
        name: {'median_ms': 1e3 * statistics.median(t), 'best_ms': 1e3 * min(t)}
        for name, t in times.items()
    }
    for key in ('median_ms', 'best_ms'):
        out[f'speedup_{key[:-3]}'] = out['im2col'][key] / out['onednn'][key]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog='python -m benchmarks.onednn', description=__doc__.splitlines()[0]
    )
    parser.add_argument('--arch', default='squeezenet', help='as main.py --arch')
    parser.add_argument('--size', type=_positive, default=128, help='image side, pixels')
    parser.add_argument('--batch', type=_positive, default=64)
    parser.add_argument('--mode', choices=('train', 'eval'), default='eval')
    parser.add_argument('--rounds', type=_positive, default=10, help='timed steps per path')
    parser.add_argument('--warmup', type=_positive, default=2, help='untimed steps per path')
    parser.add_argument('--min-flops', type=int, help='onednn.MIN_FLOPS for this run')
    parser.add_argument('--json', action='store_true', help='print JSON')
    options = parser.parse_args(argv)
    result = summary(measure(options))
    if options.json:
        print(json.dumps({'settings': vars(options), **result}))
        return 0
    a, b = result['im2col'], result['onednn']
    print(
        f'{options.arch} {options.mode} {options.size} px batch {options.batch}: im2col '
        f'{a["median_ms"]:.1f} ms (best {a["best_ms"]:.1f}), oneDNN {b["median_ms"]:.1f} ms '
        f'(best {b["best_ms"]:.1f}); oneDNN {result["speedup_median"]:.2f}x '
        f'(best {result["speedup_best"]:.2f}x)'
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
