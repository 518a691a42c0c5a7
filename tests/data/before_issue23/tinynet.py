"""A tiny net for the compatibility fixture: a run folder written by the code before issue 23."""

import chainer
import chainer.functions as F
import chainer.links as L


class TinyNet(chainer.Chain):
    def __init__(self, n_classes=10):
        super().__init__()
        with self.init_scope():
            self.conv = L.Convolution2D(3, 4, 3, pad=1)
            self.bn = L.BatchNormalization(4)
            self.head = L.Linear(4, n_classes)

    def forward(self, x):
        h = F.relu(self.bn(self.conv(x)))
        return self.head(F.mean(h, axis=(2, 3)))
