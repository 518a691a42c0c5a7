"""The timing shared by the PyTorch peers (``torch_*.py``): the recipe's SGD step and a
no-grad evaluation, medians over ``--steps``, one JSON line. Never imported by the project.
"""

import argparse
import json
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F


def _median_seconds(run, steps: int, device: torch.device) -> float:
    times = []
    for _ in range(steps):
        if device.type == 'cuda':
            torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        if device.type == 'cuda':
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def main(make_model: Callable[[], torch.nn.Module]) -> None:
    """Time ``make_model()`` as the command line says and print one JSON line."""
    parser = argparse.ArgumentParser(description='Time a PyTorch peer; print one JSON line.')
    parser.add_argument('--size', type=int, default=122)
    parser.add_argument('--eval-size', type=int, default=128)
    parser.add_argument('--batch', type=int, default=64)
    parser.add_argument('--steps', type=int, default=10)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--memory-format', choices=('nchw', 'channels_last'), default='nchw')
    parser.add_argument(
        '--latency-batches',
        default='',
        help='comma-separated batch sizes whose test-mode forward latency (ms) to report too',
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    layout = torch.channels_last if args.memory_format == 'channels_last' else None
    model = make_model().to(device)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    x_eval = torch.randn(args.batch, 3, args.eval_size, args.eval_size, device=device)
    if layout is not None:
        model = model.to(memory_format=layout)
        x, x_eval = x.to(memory_format=layout), x_eval.to(memory_format=layout)
    t = torch.randint(0, 10, (args.batch,), device=device)
    optimizer = torch.optim.SGD(model.parameters(), 0.1, momentum=0.9, weight_decay=1e-4)

    def train_step() -> None:
        loss = F.cross_entropy(model(x), t)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def eval_step() -> None:
        with torch.no_grad():
            model(x_eval)

    model.train()
    for _ in range(2):
        train_step()
    train = _median_seconds(train_step, args.steps, device)
    model.eval()
    eval_step()
    evaluate = _median_seconds(eval_step, args.steps, device)
    latency = {}
    for n in (int(b) for b in args.latency_batches.split(',') if b):
        x_n = torch.randn(n, 3, args.eval_size, args.eval_size, device=device)
        if layout is not None:
            x_n = x_n.to(memory_format=layout)

        def forward(x_n=x_n) -> None:
            with torch.no_grad():
                model(x_n)

        forward()
        latency[str(n)] = round(1000 * _median_seconds(forward, max(args.steps, 5), device), 3)
    print(
        json.dumps(
            {
                'impl': f'pytorch-{torch.__version__}',
                'device': str(device),
                'memory_format': args.memory_format,
                'size': args.size,
                'eval_size': args.eval_size,
                'batch': args.batch,
                'threads': torch.get_num_threads(),
                'step_s_median': round(train, 5),
                'train_img_per_s': round(args.batch / train, 2),
                'eval_img_per_s': round(args.batch / evaluate, 2),
                'latency_ms': latency,
            }
        )
    )
