"""Centre initialisation and DEC's self-training loop.

The loop follows Xie et al. (2016): every ``update_interval`` iterations recompute the sharpened
target p from the current model on the whole data set, then train encoder and centres on
KL(p || q). Both the full-data forward pass and the training step are graph-compiled (XLA on
GPUs) and run in the configured precision; the target is computed in NumPy because it needs
column sums over all of the data.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf
from sklearn.cluster import KMeans

from dec_lib.config.sections import DECConfig, InitConfig
from dec_lib.data.validation import check_n_clusters
from dec_lib.model.autoencoder import embed
from dec_lib.model.clustering import ClusteringLayer, target_distribution
from dec_lib.model.precision import use_xla, with_precision

CLUSTERING_LAYER = "clustering"


@dataclass
class InitResult:
    centres: np.ndarray
    labels: np.ndarray
    """The initial assignment; DEC's warm-up trains towards it."""
    inertia: float
    """Within-cluster sum of squares of ``labels`` in the embedding."""
    seconds: float


def init_centres(embedding: np.ndarray, n_clusters: int, config: InitConfig,
                 *, seed: int = 0) -> InitResult:
    """Initial clusters on the embedding, and the centres the clustering layer starts from.

    ``kmeans`` is the published recipe. ``umap`` follows N2D (McConville et al. 2020): the
    autoencoder's embedding is not yet clustered well for Euclidean partitions, but its local
    neighbourhoods are reliable, so UMAP unfolds that manifold and a Gaussian mixture clusters
    the result; the centres are then the clusters' means in the embedding.
    """
    check_n_clusters(n_clusters, len(embedding))
    started = time.perf_counter()
    embedding = np.asarray(embedding, dtype=np.float64)
    if config.method == "umap":
        labels = _manifold_labels(embedding, n_clusters, config, seed)
        centres = _cluster_means(embedding, labels, n_clusters, seed)
        inertia = float(((embedding - centres[labels]) ** 2).sum())
    else:
        kmeans = KMeans(n_clusters=n_clusters, n_init=config.n_init, max_iter=config.max_iter,
                        random_state=seed)
        labels = kmeans.fit_predict(embedding)
        centres, inertia = kmeans.cluster_centers_, float(kmeans.inertia_)
    return InitResult(centres=centres.astype(np.float32), labels=labels.astype(np.int64),
                      inertia=inertia, seconds=time.perf_counter() - started)


def _manifold_labels(embedding: np.ndarray, n_clusters: int, config: InitConfig,
                     seed: int) -> np.ndarray:
    import umap
    from sklearn.mixture import GaussianMixture

    n_neighbors = min(config.umap_neighbors, len(embedding) - 1)
    with warnings.catch_warnings():
        # A fixed random_state makes UMAP single-threaded, which it warns about; we want that.
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")
        mapped = umap.UMAP(n_components=config.umap_components or n_clusters,
                           n_neighbors=n_neighbors, min_dist=0.0, metric="euclidean",
                           random_state=seed,
                           init="spectral" if len(embedding) > n_clusters + 1 else "random",
                           ).fit_transform(embedding)
    mixture = GaussianMixture(n_components=n_clusters, covariance_type="full",
                              n_init=config.n_init, max_iter=config.max_iter,
                              random_state=seed)
    return mixture.fit_predict(mapped)


def _cluster_means(embedding: np.ndarray, labels: np.ndarray, n_clusters: int,
                   seed: int) -> np.ndarray:
    """Per-cluster means; an empty cluster gets a random point so every centre is usable."""
    rng = np.random.default_rng(seed)
    centres = np.empty((n_clusters, embedding.shape[1]))
    for k in range(n_clusters):
        members = embedding[labels == k]
        centres[k] = members.mean(axis=0) if len(members) else embedding[rng.integers(
            len(embedding))]
    return centres


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
    initial_labels: np.ndarray | None = None,
    on_update: UpdateCallback | None = None,
) -> DECResult:
    """Self-train ``model`` (see ``build_dec_model``) on ``x`` until labels settle or maxiter.

    With ``initial_labels`` and ``config.warmup_iterations``, the first iterations train
    towards that assignment (one-hot targets) instead of towards the sharpened q: the encoder
    learns the initial partition before self-training refines it. Without the warm-up, an
    initialisation that is not a Euclidean partition of the embedding (UMAP's) is first
    flattened into its nearest-centre version, losing what made it good.
    """
    warmup = config.warmup_iterations if initial_labels is not None else 0
    if initial_labels is not None and len(initial_labels) != len(x):
        raise ValueError(f"{len(initial_labels)} initial labels for {len(x)} images")
    optimizer = keras.optimizers.SGD(learning_rate=config.learning_rate,
                                     momentum=config.momentum)
    compute = with_precision(model, config.precision)
    variables = compute.trainable_variables

    n, batch_size = len(x), config.batch_size
    data = tf.constant(x)

    @tf.function(jit_compile=use_xla(), reduce_retracing=True)
    def train_step(batch, target):
        with tf.GradientTape() as tape:
            q = compute(batch, training=True)
            q = tf.clip_by_value(q, 1e-12, 1.0)
            loss = tf.reduce_mean(tf.reduce_sum(target * tf.math.log(target / q), axis=1))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    @tf.function
    def train_interval(index, steps, target):
        """``steps`` consecutive batches in one graph call: no Python between two steps."""
        total = tf.constant(0.0)
        for _ in tf.range(steps):
            end = tf.minimum(index + batch_size, n)
            total += train_step(data[index:end], target[index:end])
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
        q = predict_soft(compute, x)
        labels = q.argmax(axis=1)
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
        index, mean_loss = train_interval(index, tf.constant(steps), target)
        loss = float(mean_loss)
        iteration += steps
    if compute is not model:
        model.set_weights(compute.get_weights())
    return DECResult(labels=previous, q=q, iterations=iteration, converged=converged,
                     history=history, seconds=time.perf_counter() - started)
