"""Max pooling's backward at SqueezeNet's three pooling layers: the kernel alone, and with
the fresh gradient array a step allocates, in ms.

    .venv/bin/python benchmarks/pool_backward.py [--batch 64] [--repeat 10]

The gradients of the first two poolings (84 and 60 MiB at 122 px, batch 64) are above
glibc's largest mmap threshold (32 MiB), so each step gets them as fresh pages and the
kernel's threads fault them in; ``reused`` writes into one array allocated before timing.
Prints one JSON line per layer (median ms) and a last line with the sums.
"""

import argparse
import json
import statistics
import time

import chainer_compat  # noqa: F401  (first: it lets Chainer import on NumPy 2)

# isort: split
import numpy as np
from chainer.utils import conv

from layers import kernels

SHAPES = ((60, 96), (31, 256), (16, 512))  # (side, channels) of each pooling input at 122 px
K, S, P = 3, 2, 1


def median_ms(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch', type=int, default=64)
    parser.add_argument('--repeat', type=int, default=10)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    sums = {'reused_ms': 0.0, 'fresh_ms': 0.0}
    for side, channels in SHAPES:
        x = rng.standard_normal((args.batch, side, side, channels), dtype=np.float32)
        out = conv.get_conv_outsize(side, K, S, P, cover_all=True)
        y = np.empty((args.batch, out, out, channels), np.float32)
        index = np.empty(y.shape, np.int8)
        kernels.max_pool(x, y, index, K, S, P)
        gy = rng.standard_normal(y.shape, dtype=np.float32)
        gx = np.empty_like(x)
        reused = median_ms(lambda: kernels.max_pool_grad(gy, index, gx, K, S, P), args.repeat)  # noqa: B023
        fresh = median_ms(
            lambda: kernels.max_pool_grad(gy, index, np.empty_like(x), K, S, P),  # noqa: B023
            args.repeat,
        )
        sums['reused_ms'] += reused
        sums['fresh_ms'] += fresh
        mib = x.nbytes / 2**20
        line = {'input': list(x.shape), 'gradient_mib': round(mib, 1)}
        print(json.dumps(line | {'reused_ms': round(reused, 2), 'fresh_ms': round(fresh, 2)}))
    print(json.dumps({k: round(v, 2) for k, v in sums.items()}))


if __name__ == '__main__':
    main()
