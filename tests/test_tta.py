"""trainer.tta: flip averaging equals the mean of two forwards."""

import chainer
import chainer.links as L
import numpy as np

from trainer.tta import FlipAveraged, flip_averaged


def test_flip_averaging_is_the_mean_of_two_forwards(rng):
    model = L.Convolution2D(3, 2, 3)
    x = rng.normal(size=(2, 3, 5, 6)).astype(np.float32)
    expected = (model(x).array + model(x[:, :, :, ::-1].copy()).array) / 2
    np.testing.assert_allclose(FlipAveraged(model)(x).array, expected, rtol=1e-6)


def test_it_holds_no_weights_of_its_own():
    model = L.Linear(3, 2)
    assert sorted(n for n, _ in FlipAveraged(model).namedparams()) == [
        '/predictor/W',
        '/predictor/b',
    ]


def test_a_symmetric_image_gives_the_plain_logits(rng):
    model = L.Convolution2D(3, 2, 1)
    half = rng.normal(size=(1, 3, 4, 2)).astype(np.float32)
    x = np.concatenate([half, half[..., ::-1]], axis=3)
    with chainer.using_config('train', False):
        np.testing.assert_allclose(FlipAveraged(model)(x).array, model(x).array, rtol=1e-6)


def test_a_forward_function_is_averaged_with_its_mirror(rng):
    weights = rng.normal(size=(3 * 4 * 5, 2))

    def forward(x):
        return x.reshape(len(x), -1) @ weights

    x = rng.normal(size=(2, 3, 4, 5))
    expected = (forward(x) + forward(x[..., ::-1])) / 2
    np.testing.assert_allclose(flip_averaged(forward)(x), expected)


def test_predict_tta_averages_the_two_forwards(tiny_run, rng):
    from inference.cli import build_predict_parser, load_from_args

    argv = ['-m', str(tiny_run / 'model.npz'), 'image.png']
    plain = load_from_args(build_predict_parser().parse_args(argv))
    tta = load_from_args(build_predict_parser().parse_args([*argv, '--tta']))
    x = rng.normal(size=(3, 3, 32, 32)).astype(np.float32)
    expected = (plain.forward(x) + plain.forward(x[..., ::-1].copy())) / 2
    np.testing.assert_allclose(tta.forward(x), expected, rtol=1e-5, atol=1e-6)
