"""DEC's self-training loop.

The loop follows Xie et al. (2016): every ``update_interval`` iterations recompute the sharpened
target p from the current model on the whole data set, then train encoder and centres on
KL(p || q). Both the full-data forward pass and the training step are graph-compiled (XLA on
GPUs) and run in the configured precision; the target is computed in NumPy because it needs
column sums over all of the data.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from dec_lib.config import DECConfig
from dec_lib.model.augmentation import augmentation
from dec_lib.model.autoencoder import make_optimizer
from dec_lib.model.clustering import target_distribution
from dec_lib.model.dec_model import cluster_labels, soft_assignments
from dec_lib.model.precision import use_xla, with_precision

log = logging.getLogger(__name__)


@dataclass
class UpdateRecord:
    """What one target update saw: reported to ``on_update`` and kept in the history."""

    iteration: int
    delta_label: float
    """Fraction of points whose cluster changed since the previous update."""
    loss: float
    """Mean KL(p || q) over the batches since the previous update (nan at iteration 0)."""


@dataclass
class DECResult:
    """The outcome of ``train_dec``; ``labels`` and ``q`` describe the final model."""

    labels: np.ndarray
    q: np.ndarray
    iterations: int
    converged: bool
    """Stopped because fewer than ``tol`` of the labels changed, not at ``maxiter``."""
    history: list[UpdateRecord] = field(default_factory=list)
    seconds: float = 0.0


UpdateCallback = Callable[[UpdateRecord, np.ndarray, int], None]
"""on_update(record, labels, maxiter)"""


def train_dec(
    model: keras.Model,
    x: np.ndarray,
    config: DECConfig,
    *,
    initial_labels: np.ndarray | None = None,
    on_update: UpdateCallback | None = None,
    image_shape: tuple[int, ...] | None = None,
    autoencoder: keras.Model | None = None,
    seed: int = 0,
) -> DECResult:
    """Self-train ``model`` (see ``build_dec_model``) on ``x`` until labels settle or maxiter.

    With ``initial_labels`` and ``config.warmup_iterations``, the first iterations train
    towards that assignment (one-hot targets) instead of towards the sharpened q: the encoder
    learns the initial partition before self-training refines it. Without the warm-up, an
    initialisation that is not a Euclidean partition of the embedding (UMAP's) is first
    flattened into its nearest-centre version, losing what made it good.

    With ``config.augment_shift`` or ``config.augment_rotation``, each training batch is
    randomly shifted and rotated while the targets stay those of the unmoved images (DEC-DA,
    Guo et al. 2018): an image and its moved copies are pulled into one cluster. With
    ``config.reconstruction_weight``, the autoencoder's reconstruction loss is kept beside
    KL(p || q) (IDEC, Guo et al. 2017).

    Parameters
    ----------
    model : keras.Model
        A DEC model; trained in place (its weights are the result).
    x : numpy.ndarray
        Images, N x pixels.
    config : DECConfig
        The loop's settings.
    initial_labels : numpy.ndarray, optional
        The initialisation's assignment of ``x``, for the warm-up.
    on_update : callable, optional
        ``on_update(record, labels, maxiter)`` at every target update, iteration 0 included.
    image_shape : tuple of int, optional
        The images' 2-D shape, which the augmentation needs.
    autoencoder : keras.Model, optional
        The autoencoder whose encoder ``model`` shares, for ``config.reconstruction_weight``;
        its decoder is trained too.
    seed : int, default=0
        Seeds the augmentation.

    Returns
    -------
    DECResult

    Raises
    ------
    ValueError
        ``initial_labels`` does not have one label per image.
    """
    warmup = config.warmup_iterations if initial_labels is not None else 0
    if initial_labels is not None and len(initial_labels) != len(x):
        raise ValueError(f"{len(initial_labels)} initial labels for {len(x)} images")
    augment = augmentation(config.augment_shift, config.augment_rotation, image_shape, "dec")
    weight = config.reconstruction_weight if autoencoder is not None else 0.0
    if config.reconstruction_weight and autoencoder is None:
        log.warning("dec.reconstruction_weight needs the pretrained autoencoder (a warm start "
                    "has none); self-training on KL(p || q) alone")
    # With the reconstruction loss, one model computes q and the reconstruction from the
    # shared encoder; its weights are the DEC model's plus the decoder's.
    trained = keras.Model(model.input, [model.output, autoencoder.output]) if weight else model
    joint = with_precision(trained, config.precision)
    compute = keras.Model(joint.input, joint.outputs[0]) if weight else joint
    variables = joint.trainable_variables
    optimizer = make_optimizer("sgd", config.learning_rate, config.momentum)

    n, batch_size = len(x), config.batch_size
    data = tf.constant(x)

    @tf.function(jit_compile=use_xla(), reduce_retracing=True)
    def train_step(batch, target, step_seed):
        if augment:
            batch = augment(batch, step_seed)
        with tf.GradientTape() as tape:
            if weight:
                q, reconstruction = joint(batch, training=True)
            else:
                q = compute(batch, training=True)
            q = tf.clip_by_value(q, 1e-12, 1.0)
            loss = tf.reduce_mean(tf.reduce_sum(target * tf.math.log(target / q), axis=1))
            if weight:
                loss += weight * tf.reduce_mean(
                    tf.square(tf.cast(reconstruction, tf.float32) - batch))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    @tf.function
    def train_interval(index, steps, target, first):
        """``steps`` consecutive batches in one graph call: no Python between two steps."""
        total = tf.constant(0.0)
        for step in tf.range(steps):
            end = tf.minimum(index + batch_size, n)
            total += train_step(data[index:end], target[index:end],
                                tf.stack([tf.constant(seed % 2**31, tf.int32), first + step]))
            index = tf.where(end >= n, 0, end)
        return index, total / tf.cast(steps, tf.float32)

    started = time.perf_counter()
    history: list[UpdateRecord] = []
    previous: np.ndarray | None = None
    loss = float("nan")
    converged = False
    index = tf.constant(0)
    iteration = 0
    while True:
        q = soft_assignments(compute, x)
        labels = cluster_labels(q)
        delta = 1.0 if previous is None else float(np.mean(labels != previous))
        record = UpdateRecord(iteration=iteration, delta_label=delta, loss=loss)
        history.append(record)
        if on_update is not None:
            on_update(record, labels, config.maxiter)
        previous = labels
        if iteration > warmup and delta < config.tol:
            converged = True
            break
        if iteration >= config.maxiter:
            break
        # p is held fixed between updates: training chases a target, not itself.
        p = (np.eye(q.shape[1])[initial_labels] if iteration < warmup
             else target_distribution(q))
        target = tf.constant(np.clip(p, 1e-12, 1.0).astype(np.float32))
        steps = min(config.update_interval, config.maxiter - iteration)
        index, mean_loss = train_interval(index, tf.constant(steps), target,
                                          tf.constant(iteration))
        loss = float(mean_loss)
        iteration += steps
    if joint is not trained:
        trained.set_weights(joint.get_weights())
    return DECResult(labels=previous, q=q, iterations=iteration, converged=converged,
                     history=history, seconds=time.perf_counter() - started)
