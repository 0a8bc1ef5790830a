"""Random shifts and rotations of training batches (DEC-DA, Guo et al. 2018).

Both are written with gathers rather than image ops so that they compile with XLA inside the
training step, and both are stateless: the step's seed decides them, so a resumed run sees the
same augmented batches.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import tensorflow as tf

log = logging.getLogger(__name__)

SHIFT_SIDE_FRACTION = 8
"""A random shift moves an image by at most 1/8 of its smaller side. That is 3 pixels of
MNIST's 28, and 1 of the scikit-learn digits' 8. On 8 x 8 digits, 2-pixel shifts cost what
1-pixel shifts gain (BENCHMARKS.md, "scikit-learn's digits")."""


def usable_shift(requested: int, image_shape: tuple[int, ...] | None, setting: str) -> int:
    """The largest shift to train with: ``requested``, within what the images allow.

    Parameters
    ----------
    requested : int
        The configured largest shift, in pixels.
    image_shape : tuple of int or None
        The shape of one image. Shifts need two dimensions.
    setting : str
        The setting's key, for the log (``dec.augment_shift``).

    Returns
    -------
    int
        0 without 2-D images (a warning), else ``requested`` capped at 1/8 of the smaller side
        (an info line when capped).
    """
    if not requested:
        return 0
    if image_shape is None or len(image_shape) != 2:
        log.warning("%s needs 2-D images; training without augmentation", setting)
        return 0
    cap = min(image_shape) // SHIFT_SIDE_FRACTION
    if requested > cap:
        log.info("%s=%d is more than 1/%d of %dx%d images; shifting by at most %d pixel(s)",
                 setting, requested, SHIFT_SIDE_FRACTION, *image_shape, cap)
    return min(requested, cap)


def random_shift(batch: tf.Tensor, image_shape: tuple[int, int], max_shift: int,
                 seed: tf.Tensor) -> tf.Tensor:
    """Shift each flattened image by up to ``max_shift`` pixels each way, zero-filling the edge.

    Parameters
    ----------
    batch : tf.Tensor
        Flattened images, batch x (height * width).
    image_shape : tuple of int
        (height, width).
    max_shift : int
        Largest shift in pixels, each way and axis.
    seed : tf.Tensor
        Two int32s for the stateless random offsets: one batch, one set of shifts.

    Returns
    -------
    tf.Tensor
        The shifted images, flattened as ``batch``.
    """
    height, width = image_shape
    images = tf.reshape(batch, (-1, height, width))
    padded = tf.pad(images, [[0, 0], [max_shift, max_shift], [max_shift, max_shift]])
    n = tf.shape(images)[0]
    offsets = tf.random.stateless_uniform((2, n), seed, minval=0, maxval=2 * max_shift + 1,
                                          dtype=tf.int32)
    rows = offsets[0][:, None] + tf.range(height)[None, :]
    cols = offsets[1][:, None] + tf.range(width)[None, :]
    shifted = tf.gather(padded, rows, axis=1, batch_dims=1)
    shifted = tf.gather(shifted, cols, axis=2, batch_dims=1)
    return tf.reshape(shifted, (-1, height * width))


def rotate(batch: tf.Tensor, image_shape: tuple[int, int], radians: tf.Tensor) -> tf.Tensor:
    """Rotate each flattened image about its centre by its angle, with bilinear sampling.

    Each output pixel is the bilinear mix of the four input pixels around its source; sources
    outside the image read zeros, as MNIST's background is. This is ``scipy.ndimage.rotate``
    with ``order=1, reshape=False, cval=0`` by the opposite angle (its angles turn the array's
    axes the other way).

    Parameters
    ----------
    batch : tf.Tensor
        Flattened images, batch x (height * width).
    image_shape : tuple of int
        (height, width).
    radians : tf.Tensor
        One angle per image.

    Returns
    -------
    tf.Tensor
        The rotated images, flattened as ``batch``, in its dtype.
    """
    height, width = image_shape
    images = tf.reshape(tf.cast(batch, tf.float32), (-1, height, width))
    n = tf.shape(images)[0]
    cos, sin = tf.cos(radians)[:, None, None], tf.sin(radians)[:, None, None]
    centre_y, centre_x = (height - 1) / 2.0, (width - 1) / 2.0
    ys = tf.range(height, dtype=tf.float32)[None, :, None] - centre_y
    xs = tf.range(width, dtype=tf.float32)[None, None, :] - centre_x
    # Each output pixel's source: its position rotated back. Clipped one pixel outside the
    # image, where the padding below is zero, so every gather stays in bounds.
    source_y = tf.clip_by_value(cos * ys - sin * xs + centre_y, -1.0, float(height))
    source_x = tf.clip_by_value(sin * ys + cos * xs + centre_x, -1.0, float(width))
    top, left = tf.floor(source_y), tf.floor(source_x)
    down, right = source_y - top, source_x - left
    padded_width = width + 3  # one zero column before the image, two after
    flat = tf.reshape(tf.pad(images, [[0, 0], [1, 2], [1, 2]]), (n, -1))
    row = tf.cast(top, tf.int32) + 1
    col = tf.cast(left, tf.int32) + 1

    def pixels(dy: int, dx: int) -> tf.Tensor:
        index = (row + dy) * padded_width + col + dx
        return tf.reshape(tf.gather(flat, tf.reshape(index, (n, -1)), batch_dims=1),
                          (n, height, width))

    rotated = ((1 - down) * ((1 - right) * pixels(0, 0) + right * pixels(0, 1))
               + down * ((1 - right) * pixels(1, 0) + right * pixels(1, 1)))
    return tf.cast(tf.reshape(rotated, (-1, height * width)), batch.dtype)


_ANGLE_STEPS = 1 << 20
"""Angles are drawn from this many equal steps across the range."""


def random_rotation(batch: tf.Tensor, image_shape: tuple[int, int], max_degrees: float,
                    seed: tf.Tensor) -> tf.Tensor:
    """Rotate each flattened image by a uniform random angle of up to ``max_degrees`` either way.

    Parameters
    ----------
    batch : tf.Tensor
        Flattened images, batch x (height * width).
    image_shape : tuple of int
        (height, width).
    max_degrees : float
        Largest angle, in degrees, each way.
    seed : tf.Tensor
        Two int32s for the stateless random angles.

    Returns
    -------
    tf.Tensor
        The rotated images (``rotate``).
    """
    # Drawn as integers: XLA turns random bits into floats otherwise than the CPU kernel does,
    # and a compiled step should draw the angles an eager one does.
    steps = tf.random.stateless_uniform(tf.shape(batch)[:1], seed, minval=0,
                                        maxval=_ANGLE_STEPS + 1, dtype=tf.int32)
    fraction = tf.cast(steps, tf.float32) * (2.0 / _ANGLE_STEPS) - 1.0  # in [-1, 1]
    return rotate(batch, image_shape, fraction * (max_degrees * math.pi / 180.0))


@dataclass(frozen=True)
class Augmentation:
    """The random shift and rotation one training loop applies to each batch.

    Built by ``augmentation``, which checks the settings against the images.
    """

    image_shape: tuple[int, int]
    shift: int = 0
    degrees: float = 0.0

    def __call__(self, batch: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """``batch`` shifted, then rotated, each decided by ``seed`` (two int32s)."""
        if self.shift:
            batch = random_shift(batch, self.image_shape, self.shift, seed)
        if self.degrees:
            # Its own stream: the angles must not repeat the shifts' draws.
            batch = random_rotation(batch, self.image_shape, self.degrees,
                                    tf.stack([seed[0] + 1_000_003, seed[1]]))
        return batch


def augmentation(shift: int, degrees: float, image_shape: tuple[int, ...] | None,
                 section: str) -> Augmentation | None:
    """The augmentation a training loop's settings ask for, or None for none.

    Parameters
    ----------
    shift : int
        ``<section>.augment_shift``: capped by ``usable_shift``.
    degrees : float
        ``<section>.augment_rotation``.
    image_shape : tuple of int or None
        The shape of one image; both need two dimensions (a warning, and none, otherwise).
    section : str
        ``pretrain`` or ``dec``, for the log.

    Returns
    -------
    Augmentation or None
    """
    shift = usable_shift(shift, image_shape, f"{section}.augment_shift")
    if degrees and (image_shape is None or len(image_shape) != 2):
        log.warning("%s.augment_rotation needs 2-D images; training without rotations", section)
        degrees = 0.0
    if not (shift or degrees):
        return None
    return Augmentation(image_shape=tuple(image_shape), shift=shift, degrees=float(degrees))
