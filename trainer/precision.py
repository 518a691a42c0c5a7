"""``--mixed16``: float16 computation with float32 master weights and dynamic loss scaling.

Chainer's mixed16 layout, applied to a model built in float32: the parameters of every
link but BatchNormalization become float16 (BN keeps float32 parameters and statistics,
which its function accepts beside float16 inputs), the inputs are cast to float16, the
optimizer keeps a float32 copy of each float16 parameter and updates that
(``use_fp32_update``), and the loss is scaled dynamically (``loss_scaling``): doubled
after ``interval`` clean updates, halved and the update skipped when a gradient is not
finite. GPU only (``trainer.recipes.check_options`` refuses it on the CPU); the first GPU
run verifies it (``tools/gpu_check.py``, check ``mixed16``).
"""

import chainer
import chainer.links as L
import numpy as np


def to_mixed16(model: chainer.Link) -> chainer.Link:
    """Cast the float32 parameters of ``model``'s links but BatchNormalization's to float16."""
    keep = {
        id(param)
        for link in model.links()
        if isinstance(link, L.BatchNormalization)
        for param in link.params()
    }
    for param in model.params(include_uninit=False):
        if id(param) not in keep and param.dtype == np.float32:
            param.array = param.array.astype(np.float16)
    return model


def scale_dynamically(optimizer: chainer.Optimizer, interval: int = 1000) -> None:
    """Dynamic loss scaling and float32 updates of float16 parameters (Chainer's own)."""
    optimizer.loss_scaling(interval=interval)
    optimizer.use_fp32_update()


class Float16Input:
    """A converter: ``converter``'s batch with the images cast to float16."""

    def __init__(self, converter) -> None:
        self.converter = converter

    def __call__(self, batch, device=None) -> tuple:
        x, t = self.converter(batch, device)
        return x.astype(np.float16), t


def loss_scale(optimizer: chainer.Optimizer) -> float | None:
    """The scale the next backward pass uses: the optimizer's dynamic one, else None.

    Chainer keeps it in the optimizer and reads it in ``GradientMethod.update``; an
    updater that runs backward itself (``AccumulatingUpdater``) reads it here.
    """
    return getattr(optimizer, '_loss_scale', None)
