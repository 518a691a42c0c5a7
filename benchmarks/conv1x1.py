"""SqueezeNet's 1x1 convolutions: Chainer's im2col path against plain GEMMs, in ms.

    .venv/bin/python benchmarks/conv1x1.py [--batch 64] [--repeat 5]

Each of the 17 1x1 convolutions of a 122 px step (fire squeeze and expand1x1, conv10) runs
forward and its three gradients both ways; the results are checked to agree, then timed.
Prints one JSON line per layer (median ms) and a last line with the sums and the speedup.
"""

import argparse
import json
import statistics
import time

import chainer_compat  # noqa: F401  (first: it lets Chainer import on NumPy 2)

# isort: split
import chainer
import chainer.functions as F
import numpy as np

from squeeze_net import FIRES

SIDES = {'fire2': 31, 'fire3': 31, 'fire4': 31, 'fire5': 16, 'fire6': 16, 'fire7': 16}
SIDES |= {'fire8': 16, 'fire9': 9}


def layers() -> list[tuple[int, int, int]]:
    """(in channels, out channels, side) of each 1x1 convolution at 122 px."""
    result, channels = [], 96
    for name, squeeze, expand1, expand3, _ in FIRES:
        result += [(channels, squeeze, SIDES[name]), (squeeze, expand1, SIDES[name])]
        channels = expand1 + expand3
    return result + [(channels, 10, 9)]


def chainer_path(x, W, b, gy):
    xv, Wv, bv = chainer.Variable(x), chainer.Variable(W), chainer.Variable(b)
    y = F.convolution_2d(xv, Wv, bv)
    y.grad = gy
    y.backward()
    return y.array, xv.grad, Wv.grad, bv.grad


def gemm_path(x, W, b, gy):
    n, c, h, w = x.shape
    weight = W.reshape(W.shape[0], c)
    x3, g3 = x.reshape(n, c, h * w), gy.reshape(n, W.shape[0], h * w)
    y = np.matmul(weight, x3) + b[:, None]
    gx = np.matmul(weight.T, g3)
    gW = np.einsum('nok,nck->oc', g3, x3, optimize=True)
    return y, gx, gW, g3.sum(axis=(0, 2))


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
    totals = {'chainer': 0.0, 'gemm': 0.0}
    for c, o, side in layers():
        x = rng.standard_normal((options.batch, c, side, side), dtype=np.float32)
        W = rng.standard_normal((o, c, 1, 1), dtype=np.float32)
        b = rng.standard_normal(o, dtype=np.float32)
        gy = rng.standard_normal((options.batch, o, side, side), dtype=np.float32)
        for want, got in zip(chainer_path(x, W, b, gy), gemm_path(x, W, b, gy), strict=True):
            np.testing.assert_allclose(want.ravel(), got.ravel(), rtol=1e-3, atol=1e-2)
        row = {'layer': f'{c}->{o} @{side}'}
        for name, path in (('chainer', chainer_path), ('gemm', gemm_path)):
            seconds = median_seconds(path, (x, W, b, gy), options.repeat)
            totals[name] += seconds
            row[f'{name}_ms'] = round(1e3 * seconds, 1)
        print(json.dumps(row))
    speedup = totals['chainer'] / totals['gemm']
    sums = {f'sum_{name}_ms': round(1e3 * seconds, 1) for name, seconds in totals.items()}
    print(json.dumps(sums | {'speedup': round(speedup, 2)}))


if __name__ == '__main__':
    main()
