"""trainer.mixing: cutout, mixup and cutmix on a batch, their soft targets."""

import numpy as np
import pytest
from chainer.dataset import concat_examples

from trainer.mixing import BatchAugment, box, cutmix, cutout, mixup, one_hot


def batch(n=6, side=8):
    rng = np.random.default_rng(1)
    return [(rng.normal(size=(3, side, side)).astype(np.float32) + 5, i % 3) for i in range(n)]


def test_cutout_zeroes_one_square_per_image():
    x = np.ones((4, 3, 8, 8), np.float32)
    cutout(x, np.random.default_rng(0), 0.5)
    for image in x:
        zero = np.argwhere(image[0] == 0)
        assert 0 < len(zero) <= 16  # a 4x4 square, clipped at the border
        (top, left), (bottom, right) = zero.min(axis=0), zero.max(axis=0)
        assert len(zero) == (bottom - top + 1) * (right - left + 1)
        assert (image[:, image[0] == 0] == 0).all()  # every channel


def test_mixup_blends_images_and_targets_alike():
    x, t = concat_examples(batch())
    soft = one_hot(t, 3)
    mixed, targets = mixup(x, soft, np.random.default_rng(0), 0.4)
    lam = float(np.random.default_rng(0).beta(0.4, 0.4))
    lam = max(lam, 1 - lam)
    order = np.random.default_rng(0)
    order.beta(0.4, 0.4)
    order = order.permutation(len(x))
    np.testing.assert_allclose(mixed, lam * x + (1 - lam) * x[order], rtol=1e-6)
    np.testing.assert_allclose(targets, lam * soft + (1 - lam) * soft[order], rtol=1e-6)
    np.testing.assert_allclose(targets.sum(axis=1), 1, rtol=1e-6)


def test_cutmix_targets_follow_the_pasted_area():
    x, _ = concat_examples(batch())
    t = np.arange(len(x))  # a class per image: a target's weights say where its pixels came from
    mixed, targets = cutmix(x, one_hot(t, len(x)), np.random.default_rng(3), 1.0)
    changed = (mixed != x).any(axis=1)  # pixels taken from another image (or its own)
    np.testing.assert_allclose(targets.sum(axis=1), 1, rtol=1e-6)
    kept = targets[np.arange(len(t)), t]
    for i in range(len(x)):
        if changed[i].any():
            assert kept[i] == pytest.approx(1 - changed[i].sum() / 64)


def test_box_is_clipped_to_the_image():
    rng = np.random.default_rng(0)
    for _ in range(50):
        top, bottom, left, right = box(rng, 8, 10, 0.3)
        assert 0 <= top <= bottom <= 8 and 0 <= left <= right <= 10


def test_batch_augment_keeps_int_labels_without_mixing_and_repeats_with_its_seed():
    data = batch()
    x, t = BatchAugment(concat_examples, 3, cutout=0.5, seed=0)(data)
    assert t.dtype.kind == 'i' and (x == 0).any()
    x1, t1 = BatchAugment(concat_examples, 3, mixup=1.0, cutmix=1.0, seed=0)(data)
    x2, t2 = BatchAugment(concat_examples, 3, mixup=1.0, cutmix=1.0, seed=0)(data)
    assert t1.shape == (6, 3) and t1.dtype == np.float32
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(t1, t2)
    original, _ = concat_examples(data)
    np.testing.assert_array_equal(concat_examples(data)[0], original)  # the input untouched


@pytest.mark.parametrize('alpha', [0.2, 1.0])
def test_mixed_targets_are_distributions(alpha):
    augment = BatchAugment(concat_examples, 3, mixup=alpha, cutmix=alpha, seed=2)
    for _ in range(5):
        _, t = augment(batch())
        assert (t >= 0).all()
        np.testing.assert_allclose(t.sum(axis=1), 1, rtol=1e-6)


def test_each_image_keeps_its_label_as_the_hard_one():
    x, _ = concat_examples(batch())
    t = np.arange(len(x))
    for seed in range(20):
        for mix in (mixup, cutmix):
            _, targets = mix(x, one_hot(t, len(x)), np.random.default_rng(seed), 0.4)
            assert (targets[t, t] >= 0.5).all()
