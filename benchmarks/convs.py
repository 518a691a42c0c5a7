"""Each convolution of a net on the CPU fast path: GFLOP/s, the share of BLAS's peak, and
PyTorch's (oneDNN's) GFLOP/s on the same shape; where the time of a step goes.

    .venv/bin/python -m benchmarks.convs --arch resnet20 --size 32 [--batch 64]
        [--torch-python .venv-torch/bin/python]

One training step's forward is traced to find the net's convolutions (``ConvolutionsNHWC``,
one row per distinct shape, with its count). Each shape is then timed alone, forward and
forward + backward, best of ``--repeat``: as the fast path runs it (im2col and GEMM in
blocks, ``layers.conv_blocks``), and as its GEMMs alone (one image's ``col @ W.T``,
``g.T @ col`` and ``g @ W`` in NumPy, times the batch): the floor of the im2col approach.
``peak`` is NumPy's float32 GEMM at its best on square matrices (side 256 to 2048) with the
same threads: what BLAS gives here. With ``--torch-python``, ``torch_convs.py`` times
``F.conv2d`` on each shape, NCHW and channels_last, in that interpreter. Prints a table and,
with ``--json``, JSON.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import chainer_compat  # noqa: F401  (first: it lets Chainer import on NumPy 2)

# isort: split
import chainer
import numpy as np

import layers
from benchmarks.speed import blas_kernel, build_model
from layers.conv_nhwc import Branch, convolutions_nhwc

HERE = Path(__file__).resolve().parent


class _Shapes(chainer.FunctionHook):
    """Records each ``ConvolutionsNHWC`` branch's (input, weight, stride, pad) shapes."""

    name = 'ConvShapes'

    def __init__(self) -> None:
        self.counts: dict[tuple, int] = {}

    def forward_preprocess(self, function, in_data) -> None:
        if function._impl_name != 'ConvolutionsNHWC':
            return
        for branch, (x, w, _) in zip(function.branches, function.positions(), strict=True):
            n, h, wd, c = in_data[x].shape  # NHWC
            key = (n, c, h, wd, *in_data[w].shape, branch.stride, branch.pad)
            self.counts[key] = self.counts.get(key, 0) + 1


def shapes(arch: str, batch: int, size: int) -> dict[tuple, int]:
    """(n, c, h, w, o, c, kh, kw, stride, pad) -> count over one training forward."""
    model = build_model(arch)
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size), dtype=np.float32)
    hook = _Shapes()
    with hook, chainer.using_config('train', True):
        model(x)
    return hook.counts


def best_ms(run, repeat: int) -> float:
    run()
    best = float('inf')
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return 1e3 * best


def flops(key: tuple) -> float:
    n, _, h, w, o, c, kh, kw, stride, pad = key
    oh, ow = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    return 2.0 * n * oh * ow * o * c * kh * kw


def time_shape(key: tuple, repeat: int) -> dict:
    """Forward and forward + backward of the fast path, and the GEMMs alone, in ms."""
    n, c, h, w, o, _, kh, kw, stride, pad = key
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, h, w, c), dtype=np.float32)  # NHWC, as the op takes it
    weight = rng.standard_normal((o, c, kh, kw), dtype=np.float32) * 0.1
    branch = (Branch(stride, pad, False),)

    def forward() -> None:
        with chainer.no_backprop_mode():
            convolutions_nhwc(branch, (x, weight))

    def train() -> None:
        xv, wv = chainer.Variable(x), chainer.Variable(weight)
        y = convolutions_nhwc(branch, (xv, wv))
        y.grad = np.ones(y.shape, np.float32)
        y.backward()

    oh, ow = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    k = c * kh * kw
    col = rng.standard_normal((oh * ow, k), dtype=np.float32)
    wm = weight.reshape(o, k)
    g = rng.standard_normal((oh * ow, o), dtype=np.float32)
    y1, gw, gc = (
        np.empty((oh * ow, o), np.float32),
        np.empty((o, k), np.float32),
        np.empty_like(col),
    )
    fwd_gemm = best_ms(lambda: np.matmul(col, wm.T, out=y1), repeat) * n
    bwd_gemm = best_ms(lambda: (np.matmul(g.T, col, out=gw), np.matmul(g, wm, out=gc)), repeat) * n
    return {
        'forward_ms': best_ms(forward, repeat),
        'train_ms': best_ms(train, repeat),
        'gemm_forward_ms': fwd_gemm,
        'gemm_train_ms': fwd_gemm + bwd_gemm,
    }


def peak_gflops(repeat: int) -> float:
    """The best GFLOP/s of NumPy's float32 GEMM on square matrices of side 256 to 2048."""
    best = 0.0
    for side in (256, 512, 1024, 2048):
        a = np.random.default_rng(0).standard_normal((side, side), dtype=np.float32)
        out = np.empty_like(a)
        ms = best_ms(lambda a=a, out=out: np.matmul(a, a, out=out), repeat)
        best = max(best, 2 * side**3 / ms / 1e6)
    return best


def torch_peer(python: str, keys: list[tuple], repeat: int) -> list[dict]:
    """``torch_convs.py``'s ms per shape, NCHW and channels_last."""
    done = subprocess.run(
        [python, str(HERE / 'torch_convs.py'), '--repeat', str(repeat)],
        input=json.dumps(keys),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ['no output'])[-1]
        sys.exit(f'error: torch_convs.py failed (exit {done.returncode}): {tail}')
    return json.loads(done.stdout)


def measure(options: argparse.Namespace) -> dict:
    counts = shapes(options.arch, options.batch, options.size)
    keys = sorted(counts, key=lambda key: -flops(key) * counts[key])
    peak = peak_gflops(options.repeat)
    peers = torch_peer(options.torch_python, keys, options.repeat) if options.torch_python else None
    rows = []
    for i, key in enumerate(keys):
        n, c, h, w, o, _, kh, kw, stride, pad = key
        row = {'shape': f'{c}->{o} {kh}x{kw}/{stride} @{h}x{w}', 'count': counts[key]}
        row['gflop'] = flops(key) / 1e9
        row |= time_shape(key, options.repeat)
        if peers:
            row |= {f'torch_{name}': value for name, value in peers[i].items()}
        rows.append(row)
    return {
        'settings': vars(options) | {'threads': layers.runtime.thread_count()},
        'blas_kernel': blas_kernel(),
        'peak_gflops': peak,
        'rows': rows,
    }


def table(result: dict) -> str:
    """Per shape: count, then GFLOP/s and the share of the peak for each way of running it."""
    peak = result['peak_gflops']
    ways = [('train_ms', 'ours'), ('gemm_train_ms', 'GEMMs alone')]
    if result['rows'] and 'torch_nchw_train_ms' in result['rows'][0]:
        ways += [('torch_nchw_train_ms', 'PyTorch NCHW'), ('torch_cl_train_ms', 'PyTorch CL')]
    lines = [
        f'forward + backward, GFLOP/s (share of the {peak:.0f} GFLOP/s GEMM peak); '
        f'OpenBLAS kernel {result["blas_kernel"]}, {result["settings"]["threads"]} threads',
        '| convolution | count | ' + ' | '.join(name for _, name in ways) + ' |',
        '|---|--:|' + '--:|' * len(ways),
    ]
    totals = dict.fromkeys([name for name, _ in ways], 0.0)
    work = 0.0
    for row in result['rows']:
        rate = [3 * row['gflop'] / (row[key] / 1e3) for key, _ in ways]
        cells = [f'{r:.0f} ({r / peak:.0%})' for r in rate]
        lines.append(f'| {row["shape"]} | {row["count"]} | ' + ' | '.join(cells) + ' |')
        work += 3 * row['gflop'] * row['count']
        for key in totals:
            totals[key] += row[key] * row['count']
    cells = [f'{ms:.1f} ms, {work / (ms / 1e3):.0f}' for ms in totals.values()]
    lines.append('| all, one step | | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--arch', default='squeezenet')
    parser.add_argument('--batch', type=int, default=64)
    parser.add_argument('--size', type=int, default=122, help='training image side')
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--torch-python', help='an interpreter that has torch')
    parser.add_argument('--json', action='store_true', help='also print the figures as JSON')
    options = parser.parse_args(argv)
    result = measure(options)
    print(table(result))
    if options.json:
        print(json.dumps(result, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
