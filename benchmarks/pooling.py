"""SqueezeNet's three max poolings: the project's NumPy kernel against Chainer's, in ms.

    .venv/bin/python benchmarks/pooling.py [--batch 64] [--repeat 3]

Inputs are the pooling inputs of a 122 px, batch 64 training step (conv1's output in the
NHWC-ordered layout Chainer's CPU convolution returns, then fire4's and fire8's). Prints one
JSON line per input and implementation: median forward and backward time.
"""

import argparse
import json
import statistics
import time

import chainer_compat  # noqa: F401  (first: it lets Chainer import on NumPy 2)

# isort: split
import chainer
import numpy as np
from chainer.utils import conv

from layers import max_pooling_2d

INPUTS = ((96, 60, 'NHWC'), (256, 31, 'NCHW'), (512, 16, 'NCHW'))


def forward_backward(x: np.ndarray, gy: np.ndarray, fast: bool) -> tuple[float, float]:
    """Seconds of one forward and one backward pass of 3x3/2 pad 1 max pooling."""
    start = time.perf_counter()
    y = max_pooling_2d(chainer.Variable(x), 3, 2, 1, fast=fast)
    middle = time.perf_counter()
    y.grad = gy
    y.backward()
    return middle - start, time.perf_counter() - middle


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch', type=int, default=64)
    parser.add_argument('--repeat', type=int, default=3)
    options = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    for channels, side, layout in INPUTS:
        x = rng.standard_normal((options.batch, channels, side, side), dtype=np.float32)
        if layout == 'NHWC':
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
        out = conv.get_conv_outsize(side, 3, 2, 1, cover_all=True)
        gy = rng.standard_normal((options.batch, channels, out, out), dtype=np.float32)
        for fast in (True, False):
            forward_backward(x, gy, fast)
            runs = [forward_backward(x, gy, fast) for _ in range(options.repeat)]
            print(
                json.dumps(
                    {
                        'input': list(x.shape),
                        'layout': layout,
                        'impl': 'project' if fast else 'chainer',
                        'forward_ms': round(1e3 * statistics.median(r[0] for r in runs), 1),
                        'backward_ms': round(1e3 * statistics.median(r[1] for r in runs), 1),
                    }
                )
            )


if __name__ == '__main__':
    main()
