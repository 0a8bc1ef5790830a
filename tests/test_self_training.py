"""DEC's self-training loop: stopping rules, what the history says, and the warm-up."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from dec_lib.config import AutoencoderConfig, DECConfig, InitConfig, PretrainConfig
from dec_lib.model.autoencoder import build_autoencoder, embed, encoder_of, pretrain_autoencoder
from dec_lib.model.dec_model import CLUSTERING_LAYER, build_dec_model, soft_assignments
from dec_lib.model.initialisation import init_centres
from dec_lib.model.self_training import train_dec
from dec_lib.runtime.seeding import seed_everything

TINY = AutoencoderConfig(hidden_dims=[64, 64, 128], embedding_dim=10)
N_CLUSTERS = 10

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


# --- warm-up towards the initial assignment ---------------------------------------------------


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
