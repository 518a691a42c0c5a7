"""SqueezeNet v1.0 with simple bypass and BN-ReLU-Conv fire modules, as a chainer.Chain."""

from squeeze_net.fire import BNReLUConv, Fire
from squeeze_net.squeeze_net import FIRES, SqueezeNet

__all__ = ['BNReLUConv', 'Fire', 'FIRES', 'SqueezeNet']
