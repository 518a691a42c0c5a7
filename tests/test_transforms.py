"""Train and test preprocessing."""

import numpy as np
import pytest

from trainer.transforms import (
    PadCropFlip,
    ResizeCropFlip,
    ResizeNormalize,
    make_transforms,
    normalize,
    resize,
)


@pytest.fixture
def image(rng):
    return rng.integers(0, 256, (3, 32, 32), dtype=np.uint8)


def test_normalize_is_per_image_with_eps_10(image):
    x = normalize(image)
    raw = image.astype(np.float64)
    expected = (raw - raw.mean()) / np.sqrt(raw.var() + 10)
    np.testing.assert_allclose(x, expected, rtol=1e-5, atol=1e-5)
    assert x.dtype == np.float32
    assert abs(x.mean()) < 1e-5
    # a flat image stays finite thanks to the +10
    flat = normalize(np.full((3, 4, 4), 77, np.uint8))
    assert np.all(flat == 0)


def test_resize_is_bilinear_to_the_size(image):
    big = resize(image, 128)
    assert big.shape == (3, 128, 128) and big.dtype == np.uint8
    assert abs(big.astype(float).mean() - image.astype(float).mean()) < 3


def test_train_transform_shapes_and_statistics(image):
    transform = ResizeCropFlip(seed=1)
    for _ in range(5):
        x, label = transform((image, 7))
        assert x.shape == (3, 122, 122) and x.dtype == np.float32 and label == 7
        assert abs(x.mean()) < 1e-4
        assert abs(x.var() - 1) < 0.01  # var/(var+10) for a noise image of var ~5,000
        assert x.flags.c_contiguous


def test_train_transform_covers_every_size_crop_and_flip(image, monkeypatch):
    import trainer.transforms as transforms

    sizes = []
    real_resize = transforms.resize

    def spy(img, size):
        sizes.append(size)
        return real_resize(img, size)

    monkeypatch.setattr(transforms, 'resize', spy)
    transform = ResizeCropFlip(seed=0)
    flips = 0
    marker = np.zeros((3, 32, 32), np.uint8)
    marker[:, :, :16] = 255  # left half bright: a flip puts it right
    for _ in range(400):
        x, _ = transform((marker, 0))
        flips += x[:, :, :20].mean() < x[:, :, -20:].mean()
    assert set(sizes) == set(range(124, 133))
    assert 150 < flips < 250


def test_crop_offsets_cover_their_range(rng):
    transform = PadCropFlip(pad=4, seed=3)
    image = np.zeros((3, 32, 32), np.uint8)
    image[:, 0, 0] = 255  # find where the top-left pixel lands
    rows, hidden = set(), 0
    for _ in range(2000):
        x, _ = transform((image, 0))
        bright = np.argwhere(x[0] > 0)
        if len(bright):
            rows.add(int(bright[0][0]))
        else:
            hidden += 1
    # vertical offsets 0..8: 0..4 put the pixel on rows 4..0, 5..8 crop it away (4 in 9)
    assert rows == set(range(0, 5))
    assert 0.35 < hidden / 2000 < 0.75


def test_seed_reproduces_and_differs():
    image = np.arange(3 * 32 * 32, dtype=np.uint8).reshape(3, 32, 32)

    def outputs(seed):
        transform = ResizeCropFlip(seed=seed)
        return np.stack([transform((image, 0))[0] for _ in range(5)])

    np.testing.assert_array_equal(outputs(5), outputs(5))
    assert not np.array_equal(outputs(5), outputs(6))


def test_a_forked_worker_does_not_replay_the_parent_stream():
    """Like MultiprocessIterator's pool: the worker inherits the transform by fork."""
    import multiprocessing

    image = np.arange(3 * 32 * 32, dtype=np.uint8).reshape(3, 32, 32)
    transform = PadCropFlip(seed=0)
    fresh = _three_crops(PadCropFlip(seed=0), image)
    transform((image, 0))  # the parent's generator exists before the fork
    context = multiprocessing.get_context('fork')
    with context.Pool(1, initializer=_inherit, initargs=(transform,)) as pool:
        child = pool.apply(_three_crops_inherited, (image,))
    parent = _three_crops(transform, image)
    assert not np.array_equal(child, parent)  # not the parent's continuation
    assert not np.array_equal(child, fresh)  # nor the parent's stream from its start


_inherited = None


def _inherit(transform):
    global _inherited
    _inherited = transform


def _three_crops_inherited(image):
    return _three_crops(_inherited, image)


def _three_crops(transform, image):
    return np.stack([transform((image, 0))[0] for _ in range(3)])


def test_test_transform(image):
    x, label = ResizeNormalize(128)((image, 3))
    assert x.shape == (3, 128, 128) and label == 3
    np.testing.assert_array_equal(x, ResizeNormalize(128)((image, 3))[0])
    native, _ = ResizeNormalize(None)((image, 3))
    np.testing.assert_allclose(native, normalize(image))


def test_presets(image):
    train, test = make_transforms('122', seed=0)
    assert train((image, 0))[0].shape == (3, 122, 122)
    assert test((image, 0))[0].shape == (3, 128, 128)
    train, test = make_transforms('32', seed=0)
    assert train((image, 0))[0].shape == (3, 32, 32)
    assert test((image, 0))[0].shape == (3, 32, 32)
    with pytest.raises(ValueError, match="unknown preset '64'"):
        make_transforms('64')


@pytest.mark.parametrize('preset', ['122', '32'])
def test_device_normalization_equals_the_host_one(preset):
    from trainer.transforms import DeviceNormalize

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
    host_train, host_test = make_transforms(preset, seed=3)
    raw_train, raw_test = make_transforms(preset, seed=3, normalize=False)
    for host, raw in ((host_train, raw_train), (host_test, raw_test)):
        expected = np.stack([host((image, 0))[0] for image in images])
        batch = [raw((image, 0)) for image in images]
        assert batch[0][0].dtype == np.uint8
        x, t = DeviceNormalize()(batch, None)
        assert x.dtype == np.float32 and t.tolist() == [0] * 4
        np.testing.assert_allclose(x, expected, rtol=1e-5, atol=1e-5)
