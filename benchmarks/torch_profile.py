"""Per-operator CPU time of the PyTorch peer's training step (torch.profiler table).

    .venv-torch/bin/python benchmarks/torch_profile.py [--arch squeezenet] [--size 122]
        [--batch 64] [--steps 3] [--channels-last]

Uses the peer network of benchmarks/torch_squeezenet.py (torch_resnet.py with ``--arch
resnet20``, torch_vgg.py with ``--arch vgg``) and its SGD step; run it with the interpreter
of `make bench-torch`'s venv (the project never imports torch).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # torch_squeezenet beside it

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch_resnet import ResNet20  # noqa: E402
from torch_squeezenet import SqueezeNetBypass  # noqa: E402
from torch_vgg import VGG  # noqa: E402

PEERS = {'squeezenet': SqueezeNetBypass, 'resnet20': ResNet20, 'vgg': VGG}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--arch', choices=sorted(PEERS), default='squeezenet')
    parser.add_argument('--size', type=int, default=122)
    parser.add_argument('--batch', type=int, default=64)
    parser.add_argument('--steps', type=int, default=3)
    parser.add_argument('--channels-last', action='store_true')
    options = parser.parse_args(argv)
    model = PEERS[options.arch]().train()
    optimizer = torch.optim.SGD(model.parameters(), 0.1, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(options.batch, 3, options.size, options.size)
    t = torch.randint(0, 10, (options.batch,))
    if options.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    def step() -> None:
        loss = F.cross_entropy(model(x), t)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(2):
        step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        for _ in range(options.steps):
            step()
    print(f'{options.steps} steps')
    print(profile.key_averages().table(sort_by='self_cpu_time_total', row_limit=15))


if __name__ == '__main__':
    main()
