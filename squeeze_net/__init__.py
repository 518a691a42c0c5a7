"""SqueezeNet v1.0 with simple bypass and BN-ReLU-Conv fire modules, as a chainer.Chain."""

import chainer_compat  # noqa: F401  (first: lets Chainer import on current stacks)

# isort: split
from squeeze_net.fire import Fire
from squeeze_net.squeeze_net import BODY, FIRES, SqueezeNet

__all__ = ['BODY', 'FIRES', 'Fire', 'SqueezeNet']
