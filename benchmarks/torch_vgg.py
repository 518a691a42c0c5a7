"""The PyTorch peer of ``examples/train_vgg.py``: the same VGG (three blocks of two 3x3
Conv-BN-ReLU units and 2x2 max pooling, global average pooling, dropout, a dense head) and
the same SGD step, timed the way a user who picked PyTorch would run it. One JSON line.

    .venv-torch/bin/python benchmarks/torch_vgg.py --size 32 --eval-size 32 --batch 64
        [--steps 10] [--device cpu|cuda:0] [--memory-format nchw|channels_last]
"""

import itertools

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch_timing import main


class VGG(nn.Module):
    def __init__(self, n_classes: int = 10, channels=(64, 128, 256)) -> None:
        super().__init__()
        widths = [3, *(c for c in channels for _ in range(2))]
        self.units = nn.ModuleList(
            nn.Sequential(nn.Conv2d(a, b, 3, 1, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU())
            for a, b in itertools.pairwise(widths)
        )
        self.head = nn.Linear(channels[-1], n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, unit in enumerate(self.units):
            x = unit(x)
            if i % 2 == 1:
                x = F.max_pool2d(x, 2)
        return self.head(F.dropout(x.mean((2, 3)), 0.5, self.training))


if __name__ == '__main__':
    main(VGG)
