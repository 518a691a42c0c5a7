"""PyTorch's peer for ``benchmarks/convs.py``: ``F.conv2d`` on each shape, NCHW and
channels_last, forward (no grad) and forward + backward, best of ``--repeat``, in ms.

Reads the shapes as JSON on stdin, ``[[n, c, h, w, o, c, kh, kw, stride, pad], ...]``, and
prints one JSON list in the same order. Never imported by the project.
"""

import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F


def best_ms(run, repeat: int) -> float:
    run()
    best = float('inf')
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return 1e3 * best


def time_shape(key: list[int], layout, repeat: int) -> tuple[float, float]:
    n, c, h, w, o, _, kh, kw, stride, pad = key
    x = torch.randn(n, c, h, w).contiguous(memory_format=layout)
    weight = (torch.randn(o, c, kh, kw) * 0.1).contiguous(memory_format=layout)

    def forward() -> None:
        with torch.no_grad():
            F.conv2d(x, weight, None, stride, pad)

    xg, wg = x.clone().requires_grad_(True), weight.clone().requires_grad_(True)

    def train() -> None:
        y = F.conv2d(xg, wg, None, stride, pad)
        y.backward(torch.ones_like(y))

    return best_ms(forward, repeat), best_ms(train, repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeat', type=int, default=5)
    args = parser.parse_args()
    rows = []
    for key in json.load(sys.stdin):
        row = {}
        for name, layout in (('nchw', torch.contiguous_format), ('cl', torch.channels_last)):
            row[f'{name}_forward_ms'], row[f'{name}_train_ms'] = time_shape(
                key, layout, args.repeat
            )
        rows.append(row)
    print(json.dumps(rows))


if __name__ == '__main__':
    main()
