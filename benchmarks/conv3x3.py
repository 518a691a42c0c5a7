"""SqueezeNet's 3x3 convolutions on NHWC: im2col + GEMM (the fast path's) against Winograd.

    .venv/bin/python benchmarks/conv3x3.py [--batch 64] [--repeat 5]

Each of the 8 expand3x3 convolutions of a 122 px step runs forward, weight gradient and
input gradient both ways (``layers.conv_nhwc`` and ``layers.winograd`` F(2x2, 3x3)); the
results are checked to agree, then timed. One JSON line per layer (median ms) and a last
line with the sums and Winograd's speedup (below 1: slower).
"""

import argparse
import json
import statistics
import time

import chainer_compat  # noqa: F401  (first: it lets Chainer import on NumPy 2)

# isort: split
import numpy as np

from layers import conv_blocks, winograd
from squeeze_net import FIRES

SIDES = {'fire2': 31, 'fire3': 31, 'fire4': 31, 'fire5': 16, 'fire6': 16, 'fire7': 16}
SIDES |= {'fire8': 16, 'fire9': 9}


def layers() -> list[tuple[int, int, int]]:
    """(in channels, out channels, side) of each 3x3 convolution at 122 px."""
    return [(squeeze, expand3, SIDES[name]) for name, squeeze, _, expand3, _ in FIRES]


def im2col_path(x, w, gy):
    n, h, width, c = x.shape
    o = w.shape[0]
    m = n * h * width
    col = np.empty((m, 9 * c), x.dtype)
    wm = np.ascontiguousarray(w.transpose(0, 2, 3, 1)).reshape(o, -1)
    conv_blocks.im2col(x, col, 3, 3, 1, 1, 1, 1, h, width)
    y = (col @ wm.T).reshape(n, h, width, o)
    conv_blocks.im2col(x, col, 3, 3, 1, 1, 1, 1, h, width)  # the backward pass recomputes it
    gw = (gy.reshape(m, o).T @ col).reshape(o, 3, 3, c).transpose(0, 3, 1, 2)
    gx = np.empty_like(x)
    conv_blocks.col2im(gy.reshape(m, o) @ wm, gx, 3, 3, 1, 1, 1, 1, h, width)
    return y, gw, gx


def winograd_path(x, w, gy):
    y = np.empty(gy.shape, x.dtype)
    winograd.convolve(x, w, y, None)
    return y, winograd.grad_filter(x, gy), winograd.grad_input(gy, w)


def median_seconds(path, arrays, repeat: int) -> float:
    path(*arrays)
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        path(*arrays)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch', type=int, default=64)
    parser.add_argument('--repeat', type=int, default=5)
    options = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    totals = {'im2col': 0.0, 'winograd': 0.0}
    for c, o, side in layers():
        x = rng.standard_normal((options.batch, side, side, c), dtype=np.float32)
        w = rng.standard_normal((o, c, 3, 3), dtype=np.float32)
        gy = rng.standard_normal((options.batch, side, side, o), dtype=np.float32)
        for want, got in zip(im2col_path(x, w, gy), winograd_path(x, w, gy), strict=True):
            scale = np.abs(want).max()
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4 * scale)
        row = {'layer': f'{c}->{o} @{side}'}
        for name, path in (('im2col', im2col_path), ('winograd', winograd_path)):
            seconds = median_seconds(path, (x, w, gy), options.repeat)
            totals[name] += seconds
            row[f'{name}_ms'] = round(1e3 * seconds, 1)
        print(json.dumps(row))
    speedup = totals['im2col'] / totals['winograd']
    sums = {f'sum_{name}_ms': round(1e3 * seconds, 1) for name, seconds in totals.items()}
    print(json.dumps(sums | {'winograd_speedup': round(speedup, 2)}))


if __name__ == '__main__':
    main()
