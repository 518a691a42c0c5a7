"""The PyTorch peer: the same SqueezeNet (simple bypass, BN-ReLU-Conv fire modules) and the
same SGD step, timed the way a user who picked PyTorch would run it. Prints one JSON line.

    .venv-torch/bin/python benchmarks/torch_squeezenet.py --size 122 --batch 64 [--steps 10]
        [--device cpu|cuda:0] [--memory-format nchw|channels_last] [--eval-size 128]

Runs in its own interpreter with torch (`make bench-torch` builds `.venv-torch`); the
project never imports torch. ``benchmarks.speed --torch`` runs it and reports the ratios.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch_timing import main

# (squeeze, expand1x1, expand3x3, simple bypass) of fire2..fire9; pooling after conv1, fire4, fire8
FIRES = [
    (16, 64, 64, False),
    (16, 64, 64, True),
    (32, 128, 128, False),
    (32, 128, 128, True),
    (48, 192, 192, False),
    (48, 192, 192, True),
    (64, 256, 256, False),
    (64, 256, 256, True),
]
POOL_AFTER = {2, 6}  # fire4, fire8 (indices into FIRES)


def bn_relu_conv(c_in: int, c_out: int, k: int, pad: int = 0) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(c_in), nn.ReLU(), nn.Conv2d(c_in, c_out, k, 1, pad))


class Fire(nn.Module):
    def __init__(self, c_in: int, squeeze: int, expand1: int, expand3: int) -> None:
        super().__init__()
        self.squeeze = bn_relu_conv(c_in, squeeze, 1)
        self.expand1 = bn_relu_conv(squeeze, expand1, 1)
        self.expand3 = bn_relu_conv(squeeze, expand3, 3, pad=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.squeeze(x)
        return torch.cat((self.expand1(h), self.expand3(h)), 1)


class SqueezeNetBypass(nn.Module):
    """ceil_mode=True is Chainer's max pooling default (cover_all=True)."""

    def __init__(self, n_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 96, 7, 2, 2)
        fires, c_in = [], 96
        for squeeze, expand1, expand3, _ in FIRES:
            fires.append(Fire(c_in, squeeze, expand1, expand3))
            c_in = expand1 + expand3
        self.fires = nn.ModuleList(fires)
        self.conv10 = bn_relu_conv(c_in, n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(self.conv1(x))
        for i, (fire, (*_, bypass)) in enumerate(zip(self.fires, FIRES, strict=True)):
            out = fire(h)
            h = out + h if bypass else out
            if i in POOL_AFTER:
                h = self.pool(h)
        h = F.dropout(h, 0.5, self.training)
        return self.conv10(h).mean((2, 3))

    @staticmethod
    def pool(x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x, 3, 2, 1, ceil_mode=True)


if __name__ == '__main__':
    main(SqueezeNetBypass)
