"""Centre initialisation and DEC's self-training loop.

The loop follows Xie et al. (2016): every ``update_interval`` iterations recompute the sharpened
target p from the current model on the whole data set, then train encoder and centres on
KL(p || q). Both the full-data forward pass and the training step are XLA-compiled; the target
is computed in NumPy because it needs column sums over all of the data.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf
from sklearn.cluster import KMeans

from dec_lib.autoencoder import embed
from dec_lib.clustering import ClusteringLayer, target_distribution
from dec_lib.config import DECConfig, InitConfig
from dec_lib.validation import check_n_clusters

log = logging.getLogger(__name__)

CLUSTERING_LAYER = "clustering"


@dataclass
class InitResult:
    centres: np.ndarray
    labels: np.ndarray
    inertia: float
    seconds: float


def init_centres(embedding: np.ndarray, n_clusters: int, config: InitConfig,
                 *, seed: int = 0) -> InitResult:
    """K-Means on the embedding; its centres start the clustering layer."""
    check_n_clusters(n_clusters, len(embedding))
    started = time.perf_counter()
    kmeans = KMeans(n_clusters=n_clusters, n_init=config.n_init, max_iter=config.max_iter,
                    random_state=seed)
    labels = kmeans.fit_predict(embedding.astype(np.float64))
    return InitResult(
        centres=kmeans.cluster_centers_.astype(np.float32),
        labels=labels.astype(np.int64),
        inertia=float(kmeans.inertia_),
        seconds=time.perf_counter() - started,
    )


def build_dec_model(encoder: keras.Model, centres: np.ndarray, alpha: float) -> keras.Model:
    """Encoder followed by the clustering layer, centres set from ``centres``."""
    layer = ClusteringLayer(len(centres), alpha=alpha, name=CLUSTERING_LAYER)
    model = keras.Model(encoder.input, layer(encoder.output), name="dec")
    layer.set_weights([np.asarray(centres, dtype=np.float32)])
    return model


def predict_soft(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """q for every row of ``x``."""
    return embed(model, x)


@dataclass
class UpdateRecord:
    iteration: int
    delta_label: float
    """Fraction of points whose cluster changed since the previous update."""
    loss: float
    """Mean KL(p || q) over the batches since the previous update (nan at iteration 0)."""


@dataclass
class DECResult:
    labels: np.ndarray
    q: np.ndarray
    iterations: int
    converged: bool
    history: list[UpdateRecord] = field(default_factory=list)
    seconds: float = 0.0


UpdateCallback = Callable[[UpdateRecord, np.ndarray, int], None]
"""on_update(record, labels, maxiter)"""


def train_dec(
    model: keras.Model,
    x: np.ndarray,
    config: DECConfig,
    *,
    on_update: UpdateCallback | None = None,
) -> DECResult:
    """Self-train ``model`` (see ``build_dec_model``) on ``x`` until labels settle or maxiter."""
    optimizer = keras.optimizers.SGD(learning_rate=config.learning_rate,
                                     momentum=config.momentum)
    variables = model.trainable_variables

    @tf.function(jit_compile=True, reduce_retracing=True)
    def train_step(batch, target):
        with tf.GradientTape() as tape:
            q = model(batch, training=True)
            q = tf.clip_by_value(q, 1e-12, 1.0)
            loss = tf.reduce_mean(tf.reduce_sum(target * tf.math.log(target / q), axis=1))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    n, batch_size = len(x), config.batch_size
    data = tf.constant(x)
    started = time.perf_counter()
    history: list[UpdateRecord] = []
    previous: np.ndarray | None = None
    target = None
    losses: list[tf.Tensor] = []
    converged = False
    index = 0
    iteration = 0
    while True:
        if iteration % config.update_interval == 0 or iteration == config.maxiter:
            q = predict_soft(model, x)
            labels = q.argmax(axis=1)
            delta = 1.0 if previous is None else float(np.mean(labels != previous))
            loss = float(np.mean([t.numpy() for t in losses])) if losses else float("nan")
            record = UpdateRecord(iteration=iteration, delta_label=delta, loss=loss)
            history.append(record)
            losses = []
            if on_update is not None:
                on_update(record, labels, config.maxiter)
            previous = labels
            if iteration > 0 and delta < config.tol:
                converged = True
                break
            if iteration >= config.maxiter:
                break
            # p is held fixed between updates: training chases a target, not itself.
            target = tf.constant(np.clip(target_distribution(q), 1e-12, 1.0)
                                 .astype(np.float32))
        end = min(index + batch_size, n)
        batch = tf.range(index, end)
        losses.append(train_step(tf.gather(data, batch), tf.gather(target, batch)))
        index = 0 if end >= n else end
        iteration += 1
    return DECResult(labels=previous, q=q, iterations=iteration, converged=converged,
                     history=history, seconds=time.perf_counter() - started)
