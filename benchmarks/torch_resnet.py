"""The PyTorch peer of ``examples/resnet.py``: the same CIFAR ResNet-20 (post-activation
basic blocks, projection shortcuts where the shape changes) and the same SGD step, timed the
way a user who picked PyTorch would run it. Prints one JSON line.

    .venv-torch/bin/python benchmarks/torch_resnet.py --size 32 --eval-size 32 --batch 64
        [--steps 10] [--device cpu|cuda:0] [--memory-format nchw|channels_last]
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch_timing import main


def conv_bn(c_in: int, c_out: int, k: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False), nn.BatchNorm2d(c_out)
    )


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.unit1 = conv_bn(c_in, c_out, 3, stride)
        self.unit2 = conv_bn(c_out, c_out, 3)
        project = stride != 1 or c_in != c_out
        self.shortcut = conv_bn(c_in, c_out, 1, stride) if project else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.unit2(F.relu(self.unit1(x)))
        return F.relu(h + self.shortcut(x))


class ResNet20(nn.Module):
    def __init__(self, n_classes: int = 10, n: int = 3, widths=(16, 32, 64)) -> None:
        super().__init__()
        self.stem = conv_bn(3, widths[0], 3)
        blocks, c_in = [], widths[0]
        for stage, width in enumerate(widths):
            for i in range(n):
                blocks.append(BasicBlock(c_in, width, 2 if stage > 0 and i == 0 else 1))
                c_in = width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(c_in, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(F.relu(self.stem(x)))
        return self.head(h.mean((2, 3)))


if __name__ == '__main__':
    main(ResNet20)
