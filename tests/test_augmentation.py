"""Random shifts and rotations: what each does to an image, and which settings reach them."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from dec_lib.model.augmentation import (
    Augmentation,
    augmentation,
    random_rotation,
    random_shift,
    rotate,
    usable_shift,
)


def _shifted(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    out = np.zeros_like(image)
    h, w = image.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        image[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def _bar(angle_degrees: float = 0.0) -> np.ndarray:
    """A horizontal bar through the centre of a 28 x 28 image, well inside it."""
    image = np.zeros((28, 28), np.float32)
    image[13:15, 6:22] = 1.0
    return ndimage.rotate(image, angle_degrees, reshape=False, order=1) if angle_degrees else image


def _orientation(image: np.ndarray) -> float:
    """The angle of an image's principal axis, in degrees, from its second moments."""
    ys, xs = np.mgrid[:image.shape[0], :image.shape[1]]
    mass = image.sum()
    cy, cx = (image * ys).sum() / mass, (image * xs).sum() / mass
    mu20 = (image * (xs - cx) ** 2).sum()
    mu02 = (image * (ys - cy) ** 2).sum()
    mu11 = (image * (xs - cx) * (ys - cy)).sum()
    return math.degrees(0.5 * math.atan2(2 * mu11, mu20 - mu02))


def test_random_shift_moves_each_image_by_at_most_the_limit(mnist_subset):
    images = mnist_subset.x[:64]
    out = random_shift(tf.constant(images), (28, 28), 2, tf.constant([1, 2])).numpy()
    assert out.shape == images.shape
    moved = 0
    for before, after in zip(images.reshape(-1, 28, 28), out.reshape(-1, 28, 28), strict=True):
        candidates = {(dy, dx): _shifted(before, dy, dx)
                      for dy in range(-2, 3) for dx in range(-2, 3)}
        matches = [k for k, c in candidates.items() if np.array_equal(c, after)]
        assert matches, "every output is its input shifted by at most 2 pixels"
        moved += matches[0] != (0, 0)
    assert moved > 32  # most images actually move
    same = random_shift(tf.constant(images), (28, 28), 2, tf.constant([1, 2])).numpy()
    np.testing.assert_array_equal(out, same)  # stateless: the seed decides
    unchanged = random_shift(tf.constant(images), (28, 28), 0, tf.constant([1, 2])).numpy()
    np.testing.assert_array_equal(unchanged, images)


@pytest.mark.parametrize(("requested", "shape", "usable"), [
    (2, (28, 28), 2), (3, (28, 28), 3), (4, (28, 28), 3), (2, (8, 8), 1), (2, (16, 16), 2),
    (1, (7, 7), 0), (0, (28, 28), 0), (2, None, 0), (2, (784,), 0)])
def test_usable_shift(requested, shape, usable):
    assert usable_shift(requested, shape, "pretrain.augment_shift") == usable


@pytest.mark.parametrize("degrees", [3.0, -10.0, 25.0, 90.0])
def test_rotate_is_bilinear_rotation_about_the_centre(mnist_subset, degrees):
    """The same pixels as SciPy's bilinear rotation, zero outside the image."""
    images = mnist_subset.x[:8]
    out = rotate(tf.constant(images), (28, 28),
                 tf.fill([8], math.radians(degrees))).numpy().reshape(-1, 28, 28)
    for image, rotated in zip(images.reshape(-1, 28, 28), out, strict=True):
        expected = ndimage.rotate(image, -degrees, reshape=False, order=1, mode="constant")
        np.testing.assert_allclose(rotated, expected, atol=2e-5)


def test_rotate_by_nothing_changes_nothing(mnist_subset):
    images = mnist_subset.x[:16]
    np.testing.assert_array_equal(rotate(tf.constant(images), (28, 28), tf.zeros([16])), images)


def test_random_rotation_turns_each_image_by_at_most_the_limit():
    bars = np.stack([_bar()] * 200).reshape(200, -1)
    out = random_rotation(tf.constant(bars), (28, 28), 10.0, tf.constant([3, 4])).numpy()
    angles = np.array([_orientation(image) for image in out.reshape(-1, 28, 28)])
    assert np.abs(angles).max() <= 10.5  # within the limit, up to the bars' pixelation
    assert angles.min() < -7 and angles.max() > 7  # both ways, near the limit
    assert np.abs(angles).mean() > 3  # and spread over the range, not all near zero
    np.testing.assert_allclose(out.sum(axis=1), bars.sum(axis=1), rtol=0.02)  # no ink lost
    again = random_rotation(tf.constant(bars), (28, 28), 10.0, tf.constant([3, 4])).numpy()
    np.testing.assert_array_equal(out, again)  # stateless: the seed decides
    other = random_rotation(tf.constant(bars), (28, 28), 10.0, tf.constant([3, 5])).numpy()
    assert not np.array_equal(out, other)


def test_augmentation_compiles_with_xla_and_keeps_the_dtype(mnist_subset):
    augment = Augmentation(image_shape=(28, 28), shift=2, degrees=10.0)
    images = tf.constant(mnist_subset.x[:32])
    eager = augment(images, tf.constant([7, 8])).numpy()
    compiled = tf.function(augment.__call__, jit_compile=True)(images, tf.constant([7, 8]))
    np.testing.assert_allclose(compiled.numpy(), eager, atol=1e-5)
    half = augment(tf.cast(images, tf.bfloat16), tf.constant([7, 8]))
    assert half.dtype == tf.bfloat16 and half.shape == images.shape


def test_the_rotation_draws_apart_from_the_shift(mnist_subset):
    """Rotating the shifted batch: the same shifts as shifting alone, then each turned."""
    images = tf.constant(mnist_subset.x[:32])
    seed = tf.constant([7, 8])
    shifted = Augmentation(image_shape=(28, 28), shift=2)(images, seed).numpy()
    both = Augmentation(image_shape=(28, 28), shift=2, degrees=10.0)(images, seed).numpy()
    np.testing.assert_array_equal(shifted, random_shift(images, (28, 28), 2, seed).numpy())
    assert not np.allclose(both, shifted)
    assert np.abs(both.sum(axis=1) - shifted.sum(axis=1)).max() < 0.05 * shifted.sum(axis=1).min()


def test_augmentation_follows_the_settings_and_the_images(caplog):
    assert augmentation(0, 0.0, (28, 28), "pretrain") is None
    assert augmentation(2, 10.0, (28, 28), "dec") == Augmentation((28, 28), 2, 10.0)
    assert augmentation(4, 0.0, (8, 8), "dec") == Augmentation((8, 8), 1, 0.0)
    assert augmentation(0, 15.0, (8, 8), "dec") == Augmentation((8, 8), 0, 15.0)
    with caplog.at_level(logging.WARNING):
        assert augmentation(0, 10.0, None, "dec") is None
        assert augmentation(2, 10.0, (784,), "pretrain") is None
    assert "dec.augment_rotation needs 2-D images" in caplog.text
    assert "pretrain.augment_shift needs 2-D images" in caplog.text
    assert "pretrain.augment_rotation needs 2-D images" in caplog.text
