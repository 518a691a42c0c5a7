"""Test-time augmentation: the mean of the logits of the images and their mirror images."""

from collections.abc import Callable

import chainer
import numpy as np


class FlipAveraged(chainer.Chain):
    """Wraps a predictor (images -> logits): ``(f(x) + f(flip(x))) / 2``, flip horizontal.

    The evaluator and the predictor take it in place of the model; it holds no weights of
    its own (the model is its child, so devices and serialization follow the model).

    Args:
        predictor: the link that maps NCHW images to logits.
    """

    def __init__(self, predictor: chainer.Link) -> None:
        super().__init__()
        with self.init_scope():
            self.predictor = predictor

    def forward(self, x):
        x = x.array if isinstance(x, chainer.Variable) else x
        xp = chainer.backend.get_array_module(x)
        return (self.predictor(x) + self.predictor(xp.ascontiguousarray(x[..., ::-1]))) / 2


def flip_averaged(forward: Callable[[np.ndarray], np.ndarray]) -> Callable:
    """A forward function (NCHW batch -> logits, any backend) averaged with its mirror."""

    def averaged(x: np.ndarray) -> np.ndarray:
        return (forward(x) + forward(np.ascontiguousarray(x[..., ::-1]))) / 2

    return averaged
