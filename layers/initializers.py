"""Weight initializers by name: the reference's orthonormal one (default) and He's.

The reference trainer (nutszebra/trainer: ``Model.weight_relu_initialization`` calling
``Initialization.orthonorm``, used by ``TrainCifar10.model_init`` on every convolution)
draws a Gaussian matrix of shape (out, in * kh * kw), replaces it by the orthonormal factor
of its SVD that has that shape (rows orthonormal when out <= in * kh * kw, columns
otherwise), rescales it to variance ``2 / in`` and shifts its mean to 0. ``in`` is the
input channel count, not the fan-in ``in * kh * kw``: 3x3 and 7x7 filters start 3 and 7
times larger (in standard deviation) than He's ``sqrt(2 / fan_in)``. Biases start at 0.
"""

import chainer
import numpy as np
from chainer import initializers

INITIALIZERS = ('orthonormal', 'he')
"""Names ``make_initializer`` takes: 'orthonormal' is the reference's, 'he' is He et al. 2015."""


class ReferenceOrthonormal(chainer.Initializer):
    """The reference's orthonormal initialization of a convolution or linear weight.

    Draws from NumPy's global generator (as the reference did), so ``np.random.seed``
    fixes it. Computed in float64 on the host, then cast to the array's dtype and device.

    Args:
        scale: the variance is ``scale / in_channels`` (2: the ReLU gain).
        dtype: the dtype of the initialized array.
    """

    def __init__(self, scale: float = 2.0, dtype=None) -> None:
        super().__init__(dtype)
        self.scale = scale

    def __call__(self, array) -> None:
        shape = array.shape
        if len(shape) < 2:
            raise ValueError(f'ReferenceOrthonormal needs a weight of 2 or more axes, got {shape}')
        rows, columns = shape[0], int(np.prod(shape[1:]))
        variance = self.scale / shape[1]
        gauss = np.random.normal(0.0, np.sqrt(variance), (rows, columns))
        u, _, v = np.linalg.svd(gauss, full_matrices=False)
        q = u if u.shape == (rows, columns) else v
        q = q / np.sqrt(np.var(q)) * np.sqrt(variance)
        q = (q - np.mean(q)).reshape(shape).astype(array.dtype)
        array[...] = chainer.backend.get_device_from_array(array).send(q)


def make_initializer(name: str) -> chainer.Initializer:
    """The weight initializer called ``name`` (one of INITIALIZERS)."""
    if name == 'orthonormal':
        return ReferenceOrthonormal()
    if name == 'he':
        return initializers.HeNormal(scale=1.0)
    raise ValueError(f'unknown initializer {name!r}: choose one of {", ".join(INITIALIZERS)}')
