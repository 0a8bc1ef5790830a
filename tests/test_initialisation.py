"""Initial clusters on the embedding (K-Means, UMAP + Gaussian mixture), and the cluster count."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse

from dec_lib.config import InitConfig
from dec_lib.data.validation import check_n_clusters
from dec_lib.errors import ConfigError
from dec_lib.model.component_merging import merge_connected
from dec_lib.model.initialisation import init_centres, layout_epochs
from dec_lib.model.metrics import cluster_accuracy

# --- init_centres ----------------------------------------------------------------------------


def _blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0, 0], [20, 0, 0], [0, 20, 0], [0, 0, 20]], dtype=float)
    y = np.repeat(np.arange(4), 30)
    rng.shuffle(y)
    return centres[y] + rng.normal(scale=0.5, size=(len(y), 3)), y, centres


def test_init_centres_finds_well_separated_blobs():
    x, y, centres = _blobs()
    result = init_centres(x.astype(np.float32), 4, InitConfig(n_init=3), seed=0)
    assert cluster_accuracy(y, result.labels) == 1.0
    assert result.centres.shape == (4, 3)
    assert result.centres.dtype == np.float32
    assert result.labels.dtype == np.int64
    # every true centre has a found centre close by
    dist = np.linalg.norm(centres[:, None, :] - result.centres[None, :, :], axis=2)
    assert dist.min(axis=1).max() < 0.5
    assert result.inertia > 0


def test_init_centres_is_repeatable_under_a_seed():
    x, _, _ = _blobs(1)
    a = init_centres(x, 4, InitConfig(n_init=1), seed=5)
    b = init_centres(x, 4, InitConfig(n_init=1), seed=5)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.centres, b.centres)


def test_more_clusters_than_points_is_a_config_error():
    with pytest.raises(ConfigError, match="5 clusters for only 3 samples") as info:
        init_centres(np.zeros((3, 2), dtype=np.float32), 5, InitConfig())
    assert info.value.key == "dec.n_clusters"


@pytest.mark.parametrize("n_clusters", [11, 0, 2.0, True])
def test_check_n_clusters_refuses_impossible_counts(n_clusters):
    with pytest.raises(ConfigError) as info:
        check_n_clusters(n_clusters, 10)
    assert info.value.key == "dec.n_clusters"


def test_check_n_clusters_accepts_two_to_n():
    assert check_n_clusters(np.int64(10), 10) == 10
    assert check_n_clusters(2, 10) == 2


# --- manifold initialisation and warm-up ------------------------------------------------------


def _rings(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two concentric rings in 3-D: a manifold split that no Euclidean partition finds."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, 2 * np.pi, 400)
    y = np.repeat([0, 1], 200)
    radius = np.where(y == 0, 1.0, 4.0)
    x = np.stack([radius * np.cos(angle), radius * np.sin(angle),
                  rng.normal(scale=0.05, size=400)], axis=1)
    return x + rng.normal(scale=0.05, size=x.shape), y


def test_umap_init_separates_what_kmeans_cannot():
    x, y = _rings()
    kmeans = init_centres(x, 2, InitConfig(method="kmeans", n_init=3), seed=0)
    manifold = init_centres(x, 2, InitConfig(method="umap", n_init=2, umap_neighbors=10),
                            seed=0)
    assert cluster_accuracy(y, kmeans.labels) < 0.8
    assert cluster_accuracy(y, manifold.labels) == 1.0
    # centres are the clusters' means in the input space
    for k in range(2):
        np.testing.assert_allclose(manifold.centres[k], x[manifold.labels == k].mean(axis=0),
                                   rtol=1e-5, atol=1e-5)


def test_umap_init_is_repeatable_under_a_seed():
    x, _, _ = _blobs(2)
    config = InitConfig(method="umap", n_init=1, umap_neighbors=10)
    a = init_centres(x, 4, config, seed=3)
    b = init_centres(x, 4, config, seed=3)
    np.testing.assert_array_equal(a.labels, b.labels)


def test_umap_fitted_on_a_subset_maps_and_assigns_every_point():
    x, y = _rings()
    config = InitConfig(method="umap", n_init=2, umap_neighbors=10, umap_fit_samples=200)
    subset = init_centres(x, 2, config, seed=0)
    assert subset.labels.shape == (400,)
    # the 200 points it never learned from are assigned through the map, as well as the rest
    assert cluster_accuracy(y, subset.labels) == 1.0
    np.testing.assert_array_equal(subset.labels, init_centres(x, 2, config, seed=0).labels)


def test_a_short_umap_layout_still_separates_the_manifold_and_reaches_umap(monkeypatch):
    import umap

    asked = []

    class Recording(umap.UMAP):
        def __init__(self, **kwargs):
            asked.append(kwargs.get("n_epochs"))
            super().__init__(**kwargs)

    monkeypatch.setattr(umap, "UMAP", Recording)
    x, y = _rings()
    short = init_centres(x, 2, InitConfig(method="umap", n_init=2, umap_neighbors=10,
                                          umap_epochs=50), seed=0)
    assert cluster_accuracy(y, short.labels) == 1.0
    init_centres(x, 2, InitConfig(method="umap", n_init=2, umap_neighbors=10), seed=0)
    assert asked == [50, 500]  # 0 on 400 points: UMAP's own count for small data


@pytest.mark.parametrize(("n_points", "epochs"), [
    (70_000, 50),    # MNIST: a quarter of UMAP's 200, measured to give the same initial ACC
    (25_748, 136),   # the imbalanced MNIST of bench/imbalanced.py
    (17_500, 200),   # where the budget meets UMAP's own count for large data
    (12_000, 200),   # never more than UMAP would run
    (8_000, 438),
    (1_797, 500),    # scikit-learn's digits: UMAP's own count, which 50 epochs fell short of
    (2, 500),
])
def test_the_layout_runs_fewer_epochs_as_the_data_grow(n_points, epochs):
    assert layout_epochs(n_points) == epochs
    assert layout_epochs(n_points, requested=30) == 30  # a set count is used as given


def test_a_fit_subset_as_large_as_the_data_is_the_whole_data():
    x, _, _ = _blobs(2)
    whole = init_centres(x, 4, InitConfig(method="umap", n_init=1, umap_neighbors=10), seed=3)
    same = init_centres(x, 4, InitConfig(method="umap", n_init=1, umap_neighbors=10,
                                         umap_fit_samples=len(x)), seed=3)
    np.testing.assert_array_equal(whole.labels, same.labels)


def _uneven(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One long class of 600 points and two small blobs of 40 beside each other, in 3-D."""
    rng = np.random.default_rng(seed)
    along = rng.uniform(0, 30, 600)
    long = np.stack([along, np.zeros(600), np.zeros(600)], axis=1)
    small = np.repeat([[15.0, 8.0, 0.0], [15.0, 11.0, 0.0]], 40, axis=0)
    x = np.concatenate([long, small]) + rng.normal(scale=0.3, size=(680, 3))
    return x, np.repeat([0, 1, 2], [600, 40, 40])


def test_more_mixture_components_joined_by_the_graph_keep_small_classes_apart():
    x, y = _uneven()
    config = InitConfig(method="umap", n_init=2, umap_neighbors=10)
    # As many components as clusters: the long class is cut and the two small ones share one.
    assert cluster_accuracy(y, init_centres(x, 3, config, seed=0).labels) < 0.7
    config.mixture_components = 9
    joined = init_centres(x, 3, config, seed=0)
    assert cluster_accuracy(y, joined.labels) == 1.0
    assert joined.centres.shape == (3, 3)
    np.testing.assert_array_equal(joined.labels, init_centres(x, 3, config, seed=0).labels)


def test_joining_with_a_fitted_subset_assigns_every_point():
    x, y = _uneven()
    config = InitConfig(method="umap", n_init=2, umap_neighbors=10, mixture_components=9,
                        umap_fit_samples=500)
    labels = init_centres(x, 3, config, seed=0).labels
    assert labels.shape == (680,) and set(labels) == {0, 1, 2}
    assert cluster_accuracy(y, labels) > 0.95


def test_merge_connected_joins_the_most_connected_pair_first():
    # nodes 0-3 are component 0, 4-5 component 1 (linked densely to component 0), 6-7
    # component 2 (one weak link to component 1); component 3 is empty and goes first
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    edges = [(0, 1), (1, 2), (2, 3), (3, 4), (2, 4), (1, 5), (4, 5), (6, 7), (5, 6)]
    weight = [1, 1, 1, 1, 1, 1, 1, 1, 0.1]
    rows, cols = zip(*edges, strict=True)
    graph = scipy.sparse.coo_matrix((weight * 2, (rows + cols, cols + rows)), shape=(8, 8))
    np.testing.assert_array_equal(merge_connected(labels, graph, 4, 3), [0, 1, 2, 0])
    np.testing.assert_array_equal(merge_connected(labels, graph, 4, 2), [0, 0, 1, 0])
    np.testing.assert_array_equal(merge_connected(labels, graph, 4, 4), [0, 1, 2, 3])


def test_the_initialisations_are_exactly_those_the_setting_allows():
    from dec_lib.config import INIT_METHODS
    from dec_lib.model.initialisation import METHOD_NAMES, METHODS

    assert set(METHODS) == set(METHOD_NAMES) == set(INIT_METHODS)
