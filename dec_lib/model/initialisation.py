"""The initial clusters DEC starts from, on the autoencoder's embedding.

``kmeans`` is the published recipe; ``umap`` follows N2D (McConville et al. 2020). A warm start
takes them instead from a trained DEC model (``init_from_model``).
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
from sklearn.cluster import KMeans

from dec_lib.config import InitConfig
from dec_lib.data.validation import check_n_clusters
from dec_lib.model.autoencoder import embed
from dec_lib.model.clustering import soft_assignment
from dec_lib.model.component_merging import merge_connected
from dec_lib.model.dec_model import cluster_centres, cluster_labels, clustering_layer, dec_encoder

log = logging.getLogger(__name__)


@dataclass
class InitResult:
    """Initial centres and the assignment they came from.

    Attributes
    ----------
    centres : numpy.ndarray
        n_clusters x embedding dimensions, float32: what the clustering layer starts from.
    """

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

    Parameters
    ----------
    embedding : numpy.ndarray
        The autoencoder's embedding of the images, N x embedding dimensions.
    n_clusters : int
        How many clusters.
    config : InitConfig
        The method and its settings.
    seed : int, default 0
        Seeds K-Means, UMAP and the mixture: one seed, one initialisation.

    Returns
    -------
    InitResult

    Raises
    ------
    ConfigError
        On ``dec.n_clusters`` when the embedding has too few points for that many clusters.
    """
    check_n_clusters(n_clusters, len(embedding))
    started = time.perf_counter()
    embedding = np.asarray(embedding, dtype=np.float64)
    labels, centres, inertia = METHODS[config.method](embedding, n_clusters, config, seed)
    return InitResult(centres=centres.astype(np.float32), labels=labels.astype(np.int64),
                      inertia=inertia, seconds=time.perf_counter() - started)


def _kmeans(embedding: np.ndarray, n_clusters: int, config: InitConfig,
            seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """K-Means on the embedding, as published: labels, centres and inertia."""
    kmeans = KMeans(n_clusters=n_clusters, n_init=config.n_init, max_iter=config.max_iter,
                    random_state=seed)
    labels = kmeans.fit_predict(embedding)
    return labels, kmeans.cluster_centers_, float(kmeans.inertia_)


def _manifold(embedding: np.ndarray, n_clusters: int, config: InitConfig,
              seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """UMAP + Gaussian mixture (N2D): labels, their means in the embedding, and inertia."""
    labels = _manifold_labels(embedding, n_clusters, config, seed)
    centres = _cluster_means(embedding, labels, n_clusters, seed)
    return labels, centres, float(((embedding - centres[labels]) ** 2).sum())


LAYOUT_POINT_EPOCHS = 3_500_000
"""The layout's work when ``init.umap_epochs`` is 0, in points x epochs: 50 epochs at 70,000
points. On MNIST's and Fashion-MNIST's 70,000 images, 50 epochs give the same initial ACC as
UMAP's 200 in a quarter of the time (BENCHMARKS.md, "Fewer layout epochs"). On the 1,797
scikit-learn digits they lose 0.018, which is why the count grows as the data shrinks."""


def layout_epochs(n_points: int, requested: int = 0) -> int:
    """Epochs of UMAP's layout optimisation for ``n_points`` points.

    UMAP itself runs fewer epochs on more points (500 up to 10,000, then 200), and the
    mixture needs only the layout's clusters, which settled within 50 epochs at 70,000 points.
    ``requested`` of 0 spends ``LAYOUT_POINT_EPOCHS``, so the count falls smoothly as the data
    grow: at least 50 epochs, and never more than UMAP's own.

    Parameters
    ----------
    n_points : int
        Points UMAP learns its map from.
    requested : int, default 0
        ``init.umap_epochs``; anything but 0 is used as given.

    Returns
    -------
    int
    """
    if requested:
        return requested
    umaps_own = 500 if n_points <= 10_000 else 200
    return min(umaps_own, max(50, -(-LAYOUT_POINT_EPOCHS // max(n_points, 1))))


def _manifold_labels(embedding: np.ndarray, n_clusters: int, config: InitConfig,
                     seed: int, umap_args: Mapping[str, Any] | None = None) -> np.ndarray:
    """UMAP of the embedding, then a full-covariance Gaussian mixture on the map.

    With ``init.umap_fit_samples`` below the number of points, both are fitted on a seeded
    random subset and the rest are mapped and assigned through them: UMAP's cost grows with
    the points it learns from, and a few thousand per cluster already fix the manifold.
    With ``init.mixture_components`` above ``n_clusters``, the mixture's components are then
    joined where UMAP's neighbour graph connects them most (``merge_connected``).
    ``umap_args`` override UMAP's keyword arguments, so that a benchmark can try a variant on
    this very code path instead of a copy of it.
    """
    import umap
    from sklearn.mixture import GaussianMixture

    fit_rows = slice(None)
    if 0 < config.umap_fit_samples < len(embedding):
        rng = np.random.default_rng(seed)
        fit_rows = np.sort(rng.choice(len(embedding), config.umap_fit_samples, replace=False))
    fitted_on = embedding[fit_rows]
    n_neighbors = min(config.umap_neighbors, len(fitted_on) - 1)
    with warnings.catch_warnings():
        # A fixed random_state makes UMAP single-threaded, which it warns about; we want that.
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")
        settings = {"n_components": config.umap_components or n_clusters,
                    "n_neighbors": n_neighbors, "min_dist": 0.0, "metric": "euclidean",
                    "random_state": seed,
                    "n_epochs": layout_epochs(len(fitted_on), config.umap_epochs),
                    "init": "spectral" if len(fitted_on) > n_clusters + 1 else "random"}
        reducer = umap.UMAP(**{**settings, **(umap_args or {})})
        mapped_fit = reducer.fit_transform(fitted_on)
        mapped = mapped_fit if isinstance(fit_rows, slice) else reducer.transform(embedding)
    n_components = max(n_clusters, min(config.mixture_components, len(fitted_on)))
    mixture = GaussianMixture(n_components=n_components, covariance_type="full",
                              n_init=config.n_init, max_iter=config.max_iter,
                              random_state=seed)
    components_fit = mixture.fit_predict(mapped_fit)
    components = components_fit if isinstance(fit_rows, slice) else mixture.predict(mapped)
    if n_components == n_clusters:
        return components
    log.info("init_clusters: joining %d mixture components into %d clusters", n_components,
             n_clusters)
    return merge_connected(components_fit, reducer.graph_, n_components, n_clusters)[components]


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


METHODS: dict[str, Callable[[np.ndarray, int, InitConfig, int],
                            tuple[np.ndarray, np.ndarray, float]]] = {
    "kmeans": _kmeans,
    "umap": _manifold,
}
"""Initialisations by ``init.method``; ``tests/test_initialisation.py`` checks that the names
are exactly those the setting allows (``dec_lib.config.INIT_METHODS``)."""
METHOD_NAMES = {"kmeans": "K-Means", "umap": "UMAP + Gaussian mixture"}
"""What the log calls each method."""


def init_from_model(model: keras.Model, x: np.ndarray) -> InitResult:
    """A warm start's initialisation: a trained DEC model's centres and its assignment of ``x``.

    Parameters
    ----------
    model : keras.Model
        A DEC model (the registered champion's).
    x : numpy.ndarray
        Images, N x pixels.

    Returns
    -------
    InitResult
        The model's own centres, unchanged (members x clusters x dimensions for a mean of
        members, which DEC then continues as one), and the clusters it assigns ``x`` to.
    """
    started = time.perf_counter()
    centres = cluster_centres(model)
    embedding = embed(dec_encoder(model), x)  # one pass; q follows from it and the centres
    labels = cluster_labels(soft_assignment(embedding, centres, clustering_layer(model).alpha))
    # A mean of members' centres, side by side, are centres in the concatenated embedding.
    joined = np.concatenate(list(centres), axis=1) if centres.ndim == 3 else centres
    inertia = float(((embedding - joined[labels]) ** 2).sum())
    return InitResult(centres=centres, labels=labels.astype(np.int64), inertia=inertia,
                      seconds=time.perf_counter() - started)
