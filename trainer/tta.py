"""Test-time augmentation: the mean of the logits of the images and their mirror images."""

import chainer


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
