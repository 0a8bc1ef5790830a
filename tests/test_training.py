"""Centre initialisation and DEC's self-training loop: stopping rules and what the history says."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from dec_lib.config.sections import AutoencoderConfig, DECConfig, InitConfig, PretrainConfig
from dec_lib.data.validation import check_n_clusters
from dec_lib.errors import ConfigError
from dec_lib.model.autoencoder import build_autoencoder, embed, encoder_of, pretrain_autoencoder
from dec_lib.model.clustering import ClusteringLayer
from dec_lib.model.dec_model import CLUSTERING_LAYER, build_dec_model, soft_assignments
from dec_lib.model.initialisation import init_centres
from dec_lib.model.metrics import cluster_accuracy
from dec_lib.model.self_training import train_dec
from dec_lib.runtime.seeding import seed_everything

TINY = AutoencoderConfig(hidden_dims=[64, 64, 128], embedding_dim=10)
N_CLUSTERS = 10

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


# --- build_dec_model -------------------------------------------------------------------------


def test_build_dec_model_sets_centres_and_alpha():
    seed_everything(0)
    encoder = encoder_of(build_autoencoder(20, AutoencoderConfig(hidden_dims=[8],
                                                                 embedding_dim=3)))
    centres = np.arange(12, dtype=np.float32).reshape(4, 3)
    model = build_dec_model(encoder, centres, alpha=2.0)
    layer = model.get_layer(CLUSTERING_LAYER)
    assert isinstance(layer, ClusteringLayer)
    assert layer.alpha == 2.0
    np.testing.assert_array_equal(layer.get_weights()[0], centres)
    assert model.output_shape == (None, 4)
    x = np.random.default_rng(0).random((6, 20), dtype=np.float32)
    q = soft_assignments(model, x)
    np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=1e-5)


# --- train_dec -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def x400(mnist_subset) -> np.ndarray:
    return mnist_subset.x[:400]


@pytest.fixture(scope="module")
def pretrained(x400) -> tuple[list[np.ndarray], np.ndarray]:
    """Weights of a briefly pretrained tiny autoencoder and K-Means centres on its embedding."""
    seed_everything(0)
    autoencoder = build_autoencoder(784, TINY)
    pretrain_autoencoder(autoencoder, x400, PretrainConfig(
        epochs=3, batch_size=100, optimizer="adam", learning_rate=1e-3, checkpoint_every=0))
    init = init_centres(embed(encoder_of(autoencoder), x400), N_CLUSTERS, InitConfig(n_init=2))
    return autoencoder.get_weights(), init.centres


@pytest.fixture
def dec_model(pretrained) -> keras.Model:
    """A fresh DEC model from the pretrained weights (training mutates it, so one per test)."""
    weights, centres = pretrained
    autoencoder = build_autoencoder(784, TINY)
    autoencoder.set_weights(weights)
    return build_dec_model(encoder_of(autoencoder), centres, alpha=1.0)


def _dec_config(**changes) -> DECConfig:
    return DECConfig(**{"n_clusters": N_CLUSTERS, "batch_size": 100, **changes})


def test_train_dec_respects_maxiter_and_records_every_update(dec_model, x400):
    updates: list[tuple[int, np.ndarray, int]] = []
    centres_before = dec_model.get_layer(CLUSTERING_LAYER).get_weights()[0].copy()
    result = train_dec(dec_model, x400, _dec_config(maxiter=7, update_interval=3, tol=0.0),
                       on_update=lambda record, labels, maxiter:
                       updates.append((record.iteration, labels.copy(), maxiter)))

    assert result.iterations == 7
    assert result.converged is False
    assert [h.iteration for h in result.history] == [0, 3, 6, 7]
    assert [u[0] for u in updates] == [0, 3, 6, 7]
    assert all(u[2] == 7 for u in updates)

    # delta_label is the fraction of points whose cluster changed since the previous update
    assert result.history[0].delta_label == 1.0
    for k in range(1, len(updates)):
        expected = np.mean(updates[k][1] != updates[k - 1][1])
        assert result.history[k].delta_label == pytest.approx(expected)
    assert np.isnan(result.history[0].loss)
    assert all(np.isfinite(h.loss) and h.loss >= 0 for h in result.history[1:])

    # the result describes the final model
    assert result.labels.shape == (400,)
    np.testing.assert_array_equal(result.labels, updates[-1][1])
    np.testing.assert_allclose(result.q.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(result.labels, result.q.argmax(axis=1))
    np.testing.assert_array_equal(result.labels, soft_assignments(dec_model, x400).argmax(axis=1))
    # and training moved the centres
    assert not np.allclose(dec_model.get_layer(CLUSTERING_LAYER).get_weights()[0],
                           centres_before)


def test_train_dec_stops_at_the_first_update_below_tol(dec_model, x400):
    result = train_dec(dec_model, x400, _dec_config(maxiter=1000, update_interval=4, tol=1.0))
    assert result.converged is True
    assert result.iterations == 4
    assert len(result.history) == 2
    assert result.history[-1].delta_label < 1.0


def test_train_dec_with_maxiter_zero_only_assigns(dec_model, x400, pretrained):
    _, centres = pretrained
    result = train_dec(dec_model, x400, _dec_config(maxiter=0, update_interval=5, tol=0.0))
    assert result.iterations == 0
    assert result.converged is False
    assert len(result.history) == 1
    np.testing.assert_array_equal(dec_model.get_layer(CLUSTERING_LAYER).get_weights()[0],
                                  centres)
    assert len(np.unique(result.labels)) > 1


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


def test_warmup_trains_towards_the_initial_assignment(mnist_subset):
    keep = mnist_subset.y < 3
    x, digits = mnist_subset.x[keep][:300], mnist_subset.y[keep][:300]
    seed_everything(0)
    autoencoder = build_autoencoder(x.shape[1], TINY)
    pretrain_autoencoder(autoencoder, x, PretrainConfig(epochs=3, optimizer="adam",
                                                        learning_rate=1e-3))
    centres = np.random.default_rng(0).normal(size=(3, TINY.embedding_dim)).astype(np.float32)
    # The initial assignment names cluster k for digit k; random centres do not suggest it.
    config = DECConfig(n_clusters=3, maxiter=200, update_interval=50, tol=0.5,
                       warmup_iterations=200, learning_rate=0.05)

    result = train_dec(build_dec_model(encoder_of(autoencoder), centres, 1.0), x, config,
                       initial_labels=digits)
    assert np.mean(result.labels == digits) > 0.8
    # A large tol must not stop training during the warm-up.
    assert result.iterations == 200 and not result.converged


def test_initial_labels_must_match_the_data(mnist_subset):
    x = mnist_subset.x[:50]
    encoder = encoder_of(build_autoencoder(x.shape[1], TINY))
    model = build_dec_model(encoder, np.zeros((2, TINY.embedding_dim), np.float32), 1.0)
    with pytest.raises(ValueError, match="49 initial labels for 50 images"):
        train_dec(model, x, DECConfig(n_clusters=2, maxiter=5, warmup_iterations=5),
                  initial_labels=np.zeros(49, dtype=np.int64))
