"""DEC's self-training loop: stopping rules, what the history says, and the warm-up."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from dec_lib.config import AutoencoderConfig, DECConfig, InitConfig, PretrainConfig
from dec_lib.model.autoencoder import (
    build_autoencoder,
    embed,
    encoder_of,
    pretrain_autoencoder,
)
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


# --- augmentation (DEC-DA) and the reconstruction loss (IDEC) ----------------------------------


def _fresh(pretrained) -> tuple[keras.Model, keras.Model]:
    """A fresh autoencoder from the pretrained weights, and the DEC model on its encoder."""
    weights, centres = pretrained
    autoencoder = build_autoencoder(784, TINY)
    autoencoder.set_weights(weights)
    return autoencoder, build_dec_model(encoder_of(autoencoder), centres, alpha=1.0)


def _centres(model: keras.Model) -> np.ndarray:
    return model.get_layer(CLUSTERING_LAYER).get_weights()[0]


@pytest.mark.parametrize(("shift", "rotation"), [(2, 0.0), (0, 10.0), (2, 10.0)])
def test_augmented_batches_change_training_and_one_seed_gives_one_model(pretrained, x400,
                                                                         shift, rotation):
    config = _dec_config(maxiter=20, update_interval=10, tol=0.0)
    runs = []
    for seed, moved in ((0, True), (0, True), (1, True), (0, False)):
        _, model = _fresh(pretrained)
        augmented = {"augment_shift": shift, "augment_rotation": rotation} if moved else {}
        train_dec(model, x400, config.__class__(**{**vars(config), **augmented}),
                  image_shape=(28, 28), seed=seed)
        runs.append(_centres(model))
    assert np.array_equal(runs[0], runs[1])  # the augmentation is drawn from the seed
    assert not np.allclose(runs[0], runs[2])  # another seed, other draws
    assert not np.allclose(runs[0], runs[3])  # the augmentation is really applied


def test_shifts_without_a_2d_image_shape_warn_and_train_unshifted(pretrained, x400, caplog):
    _, shifted = _fresh(pretrained)
    _, plain = _fresh(pretrained)
    train_dec(shifted, x400, _dec_config(maxiter=10, tol=0.0, augment_shift=2))
    train_dec(plain, x400, _dec_config(maxiter=10, tol=0.0))
    assert "dec.augment_shift needs 2-D images" in caplog.text
    assert np.array_equal(_centres(shifted), _centres(plain))


def test_a_shift_larger_than_an_eighth_of_small_images_is_capped(pretrained, x400, caplog):
    # The same 784 pixels read as 8 x 98 images: at most 1 pixel, whatever is asked.
    caplog.set_level("INFO")
    runs = []
    for shift in (2, 1, 0):
        _, model = _fresh(pretrained)
        train_dec(model, x400, _dec_config(maxiter=20, update_interval=10, tol=0.0,
                                           augment_shift=shift), image_shape=(8, 98), seed=0)
        runs.append(_centres(model))
    assert np.array_equal(runs[0], runs[1])
    assert not np.allclose(runs[1], runs[2])  # 1 pixel is still a shift
    assert "dec.augment_shift=2 is more than 1/8 of 8x98 images" in caplog.text


def test_the_reconstruction_loss_keeps_the_autoencoder_reconstructing(pretrained, x400):
    """IDEC's point: DEC alone moves the encoder away from what the decoder can invert."""
    def reconstruction_error(autoencoder):
        return float(np.mean((autoencoder.predict(x400, verbose=0) - x400) ** 2))

    errors = {}
    for weight in (0.0, 10.0):
        autoencoder, model = _fresh(pretrained)
        decoder_before = autoencoder.get_layer("reconstruction").get_weights()[0].copy()
        train_dec(model, x400, _dec_config(maxiter=60, update_interval=20, tol=0.0,
                                           learning_rate=0.05, reconstruction_weight=weight),
                  autoencoder=autoencoder)
        decoder_after = autoencoder.get_layer("reconstruction").get_weights()[0]
        # The decoder is trained only when its loss is part of the objective.
        assert np.array_equal(decoder_before, decoder_after) == (weight == 0.0)
        errors[weight] = reconstruction_error(autoencoder)
    assert errors[10.0] < errors[0.0]


def test_the_reconstruction_loss_without_an_autoencoder_warns(pretrained, x400, caplog):
    _, model = _fresh(pretrained)
    train_dec(model, x400, _dec_config(maxiter=5, tol=0.0, reconstruction_weight=1.0))
    assert "dec.reconstruction_weight needs the pretrained autoencoder" in caplog.text
