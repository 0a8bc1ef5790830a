"""DEC's four phases as plain functions: arrays and typed config sections in, small results out.

``DEC.fit`` runs them one after another in one process; each pipeline step loads its input
artifacts, runs one of them and saves what it returns, as scikit-learn's ``KMeans.fit`` calls
``_kmeans_single_lloyd``. So both drivers train the same model from the same seed, and report
the same things. A phase never reads or writes the pipeline's files and never imports MLflow:
it writes its progress (with an ETA) to the log and its metrics to a ``Tracker``.

Every training phase begins with ``seed_everything(seed)``: what it draws then depends on the
seed alone, not on what ran before it in the process (a whole ``fit``, or one pipeline step).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from dec_lib.config import AutoencoderConfig, DECConfig, InitConfig, PretrainConfig
from dec_lib.core.tracker import NullTracker, Tracker
from dec_lib.data.validation import check_n_clusters
from dec_lib.model.autoencoder import (
    build_autoencoder,
    effective_epochs,
    embed,
    encoder_of,
    pretrain_autoencoder,
)
from dec_lib.model.dec_model import (
    build_dec_model,
    cluster_labels,
    dec_encoder,
    is_dec_model,
    soft_assignments,
)
from dec_lib.model.initialisation import METHOD_NAMES, InitResult, init_centres, init_from_model
from dec_lib.model.metrics import cluster_accuracy, evaluate_clustering, sampled_silhouette
from dec_lib.model.self_training import DECResult, UpdateRecord, train_dec
from dec_lib.runtime.progress import Progress
from dec_lib.runtime.seeding import seed_everything

log = logging.getLogger(__name__)

MAX_EPOCH_REPORTS = 200
"""At most this many pretraining reports: a small data set may run a thousand short epochs,
and each report is a write to the tracking store and a line on the terminal."""


# --- pretraining -------------------------------------------------------------------------------


@dataclass
class Pretrained:
    """The pretrained autoencoder and how its training went."""

    autoencoder: keras.Model
    epochs: int
    """Epochs trained in all (``effective_epochs``), resumed ones included."""
    losses: list[float]
    """Mean reconstruction MSE per epoch."""
    resumed_from_epoch: int
    seconds: float

    @property
    def final_loss(self) -> float:
        """The last epoch's loss; NaN when no epoch ran."""
        return self.losses[-1] if self.losses else float("nan")


def pretrain(x: np.ndarray, architecture: AutoencoderConfig, config: PretrainConfig, *,
             seed: int, image_shape: tuple[int, ...] | None = None,
             checkpoint_dir: str | os.PathLike | None = None,
             tracker: Tracker | None = None) -> Pretrained:
    """Build an autoencoder from ``seed`` and train it to reconstruct ``x``.

    Parameters
    ----------
    x : numpy.ndarray
        Images, N x pixels, in [0, 1].
    architecture : AutoencoderConfig
        Layer sizes.
    config : PretrainConfig
        Optimizer, epochs, precision, augmentation, checkpoints.
    seed : int
        Seeds the initial weights, the batch order and the augmentation.
    image_shape : tuple of int, optional
        The images' 2-D shape, which the augmentation needs.
    checkpoint_dir : str or os.PathLike, optional
        Resumable checkpoints go here, and training resumes from one found here.
    tracker : Tracker, optional
        Receives ``pretrain.loss`` and ``pretrain.epoch_seconds`` per epoch (at most
        ``MAX_EPOCH_REPORTS`` times), then ``pretrain.final_loss`` and
        ``pretrain.resumed_from_epoch``.

    Returns
    -------
    Pretrained
    """
    tracker = tracker or NullTracker()
    seed_everything(seed)
    autoencoder = build_autoencoder(x.shape[1], architecture)
    epochs = effective_epochs(config, len(x))
    progress = Progress(epochs)
    every = max(1, epochs // MAX_EPOCH_REPORTS)

    def on_epoch(epoch: int, epochs: int, loss: float, seconds: float) -> None:
        if epoch % every and epoch != epochs:
            return
        tracker.log_metrics({"pretrain.loss": loss, "pretrain.epoch_seconds": seconds},
                            step=epoch)
        log.info("pretrain: epoch %s, loss %.5f, %.2fs/epoch", progress.line(epoch), loss,
                 seconds)

    result = pretrain_autoencoder(autoencoder, x, config, seed=seed, image_shape=image_shape,
                                  checkpoint_dir=checkpoint_dir, on_epoch=on_epoch)
    pretrained = Pretrained(autoencoder=autoencoder, epochs=epochs, losses=result.losses,
                            resumed_from_epoch=result.resumed_from_epoch,
                            seconds=result.seconds)
    if result.losses:
        tracker.log_metrics({"pretrain.final_loss": pretrained.final_loss})
    tracker.log_metrics({"pretrain.resumed_from_epoch": result.resumed_from_epoch})
    return pretrained


# --- initialisation ------------------------------------------------------------------------------


@dataclass
class Initialised:
    """The initial clusters, and how they score."""

    init: InitResult
    metrics: dict[str, float]
    """``init_clusters.inertia``, and ``init_clusters.acc``/``.nmi`` when labels were given."""
    warm_start: bool
    """The centres are a trained DEC model's, not found on an embedding."""


def initialise(model: keras.Model, x: np.ndarray, n_clusters: int, config: InitConfig, *,
               seed: int, y: np.ndarray | None = None,
               tracker: Tracker | None = None) -> Initialised:
    """The initial clusters of ``x``: found on the autoencoder's embedding, or, given a trained
    DEC model (a warm start from the champion), that model's centres and assignment.

    Parameters
    ----------
    model : keras.Model
        The pretrained autoencoder, or a DEC model.
    x : numpy.ndarray
        Images, N x pixels.
    n_clusters : int
        How many clusters (``dec.n_clusters``).
    config : InitConfig
        The method (K-Means, or UMAP + Gaussian mixture) and its settings.
    seed : int
        Seeds K-Means, UMAP and the mixture.
    y : numpy.ndarray, optional
        True labels, for the reported scores only; never used to find the clusters.
    tracker : Tracker, optional
        Receives the ``init_clusters.*`` metrics.

    Returns
    -------
    Initialised

    Raises
    ------
    ConfigError
        On ``dec.n_clusters`` when ``x`` has too few images for that many clusters.
    """
    from sklearn.metrics import normalized_mutual_info_score

    tracker = tracker or NullTracker()
    check_n_clusters(n_clusters, len(x))
    seed_everything(seed)
    warm_start = is_dec_model(model)
    if warm_start:
        init = init_from_model(model, x)
        log.info("init_clusters: warm start, the champion's %d centres",
                 init.centres.shape[-2])
    else:
        log.info("init_clusters: %s on the embedding",
                 METHOD_NAMES[config.method])
        init = init_centres(embed(encoder_of(model), x), n_clusters, config, seed=seed)
    metrics = {"init_clusters.inertia": init.inertia}
    if y is not None:  # reported for comparison only; never fed back
        metrics["init_clusters.acc"] = cluster_accuracy(y, init.labels)
        metrics["init_clusters.nmi"] = float(normalized_mutual_info_score(y, init.labels))
    tracker.log_metrics(metrics)
    log.info("init_clusters: %d clusters, inertia %.1f%s", n_clusters, init.inertia,
             "".join(f", {k.split('.')[1]} {v:.4f}" for k, v in metrics.items()
                     if "inertia" not in k))
    return Initialised(init=init, metrics=metrics, warm_start=warm_start)


# --- self-training -------------------------------------------------------------------------------


@dataclass
class Trained:
    """The trained DEC model and its self-training's course."""

    model: keras.Model
    result: DECResult
    updates: list[dict[str, Any]] = field(default_factory=list)
    """One row per target update (iteration, loss, delta_label, and acc when labels were
    given): what the run report plots."""


def self_train(model: keras.Model, centres: np.ndarray, initial_labels: np.ndarray,
               x: np.ndarray, config: DECConfig, *, seed: int, y: np.ndarray | None = None,
               image_shape: tuple[int, ...] | None = None,
               tracker: Tracker | None = None) -> Trained:
    """Put the clustering layer on ``model``'s encoder at ``centres`` and self-train both on ``x``.

    Parameters
    ----------
    model : keras.Model
        The pretrained autoencoder, or a champion's DEC model (a warm start, which has no
        decoder for ``config.reconstruction_weight``); its encoder is trained in place.
    centres : numpy.ndarray
        Initial centres, n_clusters x embedding dimensions.
    initial_labels : numpy.ndarray
        The initialisation's assignment of ``x``, which the warm-up trains towards.
    x : numpy.ndarray
        Images, N x pixels.
    config : DECConfig
        The loop's settings.
    seed : int
        Seeds TensorFlow before the DEC model is built.
    y : numpy.ndarray, optional
        True labels, for monitoring only (``dec.acc``); never used to train.
    image_shape : tuple of int, optional
        The images' 2-D shape, which the augmentation needs.
    tracker : Tracker, optional
        Receives ``dec.delta_label``, ``dec.loss`` and ``dec.acc`` at every update, then
        ``dec_train.iterations`` and ``dec_train.converged``.

    Returns
    -------
    Trained
    """
    tracker = tracker or NullTracker()
    seed_everything(seed)
    autoencoder = None if is_dec_model(model) else model
    model = build_dec_model(encoder_of(model), centres, config.alpha)
    progress = Progress(config.maxiter)
    updates: list[dict[str, Any]] = []

    def on_update(record: UpdateRecord, labels: np.ndarray, maxiter: int) -> None:
        metrics = {"dec.delta_label": record.delta_label}
        if record.iteration > 0:
            metrics["dec.loss"] = record.loss
        extra = ""
        if y is not None:  # monitoring only
            metrics["dec.acc"] = cluster_accuracy(y, labels)
            extra = f", acc {metrics['dec.acc']:.4f}"
        tracker.log_metrics(metrics, step=record.iteration)
        updates.append({"iteration": record.iteration, "loss": record.loss,
                        "delta_label": record.delta_label,
                        **({"acc": metrics["dec.acc"]} if "dec.acc" in metrics else {})})
        log.info("dec_train: iteration %s, changed %.4f, loss %.5f%s",
                 progress.line(record.iteration), record.delta_label, record.loss, extra)

    result = train_dec(model, x, config, initial_labels=initial_labels, on_update=on_update,
                       image_shape=image_shape, autoencoder=autoencoder, seed=seed)
    tracker.log_metrics({"dec_train.iterations": result.iterations,
                         "dec_train.converged": float(result.converged)})
    log.info("dec_train: %s after %d iterations",
             "converged" if result.converged else "stopped at maxiter", result.iterations)
    return Trained(model=model, result=result, updates=updates)


# --- evaluation ----------------------------------------------------------------------------------


@dataclass
class Scores:
    """How well a DEC model clusters some images, and what the report draws from."""

    metrics: dict[str, float]
    """``mean_confidence``, ``n_empty_clusters``, ``silhouette`` (two clusters or more), and
    ``acc``, ``nmi``, ``ari`` when labels were given."""
    cluster_sizes: list[int]
    confusion: list[list[int]] | None
    labels: list[int] | None
    """The true labels the confusion matrix's rows stand for."""
    mapping: dict[int, int]
    """Cluster to its best-matching label (empty without labels)."""
    embedding: np.ndarray
    q: np.ndarray


def evaluate(model: keras.Model, x: np.ndarray, y: np.ndarray | None = None, *,
             tracker: Tracker | None = None) -> Scores:
    """Score the clustering a DEC model gives ``x``: label-free, and against ``y`` if given.

    Parameters
    ----------
    model : keras.Model
        A trained DEC model.
    x : numpy.ndarray
        Images, N x pixels.
    y : numpy.ndarray, optional
        True labels.
    tracker : Tracker, optional
        Receives the scores and ``cluster_size.<k>`` for every cluster.

    Returns
    -------
    Scores
    """
    tracker = tracker or NullTracker()
    embedding = embed(dec_encoder(model), x)
    q = soft_assignments(model, x)
    clusters = cluster_labels(q)
    sizes = np.bincount(clusters, minlength=q.shape[1])
    metrics: dict[str, float] = {
        "mean_confidence": float(q.max(axis=1).mean()),
        "n_empty_clusters": float(np.sum(sizes == 0)),
    }
    if len(np.unique(clusters)) > 1:
        metrics["silhouette"] = sampled_silhouette(embedding, clusters)
    confusion = labels = None
    mapping: dict[int, int] = {}
    if y is not None:
        report = evaluate_clustering(y, clusters)
        metrics.update(acc=report.acc, nmi=report.nmi, ari=report.ari)
        confusion, labels, mapping = report.confusion, report.labels, report.mapping
    tracker.log_metrics(metrics)
    tracker.log_metrics({f"cluster_size.{i}": s for i, s in enumerate(sizes)})
    log.info("evaluate: %s", ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return Scores(metrics=metrics, cluster_sizes=sizes.tolist(), confusion=confusion,
                  labels=labels, mapping=mapping, embedding=embedding, q=q)
