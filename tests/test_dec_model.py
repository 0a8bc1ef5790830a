"""The DEC model: encoder plus clustering layer, its encoder, its soft assignments."""

from __future__ import annotations

import numpy as np
import pytest

from dec_lib.config import AutoencoderConfig
from dec_lib.errors import DecError
from dec_lib.model.autoencoder import build_autoencoder, embed, encoder_of
from dec_lib.model.clustering import ClusteringLayer, soft_assignment
from dec_lib.model.dec_model import (
    CLUSTERING_LAYER,
    build_dec_model,
    cluster_centres,
    cluster_labels,
    dec_encoder,
    is_dec_model,
    mean_of_members,
    soft_assignments,
)
from dec_lib.model.saving import load_model, save_model
from dec_lib.runtime.seeding import seed_everything

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


def test_the_encoder_of_a_dec_model_gives_the_embedding_its_q_is_computed_from():
    seed_everything(0)
    autoencoder = build_autoencoder(20, AutoencoderConfig(hidden_dims=[8], embedding_dim=3))
    centres = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    model = build_dec_model(encoder_of(autoencoder), centres, alpha=1.0)
    x = np.random.default_rng(1).random((6, 20), dtype=np.float32)
    embedding = embed(dec_encoder(model), x)
    np.testing.assert_allclose(embedding, embed(encoder_of(autoencoder), x), atol=1e-6)
    q = soft_assignments(model, x)
    np.testing.assert_allclose(q, soft_assignment(embedding, centres, 1.0), atol=1e-5)
    np.testing.assert_array_equal(cluster_labels(q), q.argmax(axis=1))
    np.testing.assert_array_equal(cluster_centres(model), centres)
    assert is_dec_model(model) and not is_dec_model(autoencoder)


def test_embed_refuses_a_dec_model_instead_of_returning_its_soft_assignments():
    encoder = encoder_of(build_autoencoder(20, AutoencoderConfig(hidden_dims=[8],
                                                                 embedding_dim=3)))
    model = build_dec_model(encoder, np.zeros((2, 3), np.float32), alpha=1.0)
    with pytest.raises(TypeError, match="soft_assignments"):
        embed(model, np.zeros((2, 20), np.float32))


# --- mean_of_members -------------------------------------------------------------------------


def _member(seed: int, n_clusters: int = 4, embedding_dim: int = 3, alpha: float = 1.0):
    seed_everything(seed)
    encoder = encoder_of(build_autoencoder(20, AutoencoderConfig(hidden_dims=[8],
                                                                 embedding_dim=embedding_dim)))
    centres = np.random.default_rng(seed).normal(size=(n_clusters, embedding_dim))
    return build_dec_model(encoder, centres.astype(np.float32), alpha=alpha)


def test_a_mean_of_members_averages_their_q_in_the_references_numbering(tmp_path):
    members = [_member(0), _member(1), _member(2)]
    orders = [np.arange(4), np.array([2, 0, 3, 1]), np.array([1, 3, 0, 2])]
    model = mean_of_members(members, orders)
    x = np.random.default_rng(5).random((40, 20), dtype=np.float32)
    expected = np.mean([soft_assignments(m, x)[:, order] for m, order in
                        zip(members, orders, strict=True)], axis=0)
    np.testing.assert_allclose(soft_assignments(model, x), expected, rtol=1e-5, atol=1e-7)
    # One model: its encoder gives the members' embeddings side by side, under unique names,
    # and its centres are each member's, reordered.
    assert embed(dec_encoder(model), x).shape == (40, 9)
    np.testing.assert_allclose(embed(encoder_of(model), x), embed(dec_encoder(model), x))
    np.testing.assert_array_equal(cluster_centres(model)[1], cluster_centres(members[1])[orders[1]])
    assert len({layer.name for layer in model.layers}) == len(model.layers)
    # It saves and reloads in safe mode, q unchanged.
    reloaded = load_model(save_model(model, tmp_path / "mean.keras"))
    np.testing.assert_allclose(soft_assignments(reloaded, x), soft_assignments(model, x),
                               rtol=1e-6)


def test_members_that_cannot_be_averaged_are_refused():
    with pytest.raises(DecError, match="two or more models"):
        mean_of_members([_member(0)], [np.arange(4)])
    with pytest.raises(DecError, match="differ in input, clusters, alpha or embedding width"):
        mean_of_members([_member(0), _member(1, n_clusters=5)], [np.arange(4), np.arange(5)])
    with pytest.raises(DecError, match="differ"):
        mean_of_members([_member(0), _member(1, alpha=2.0)], [np.arange(4)] * 2)
    mean = mean_of_members([_member(0), _member(1)], [np.arange(4)] * 2)
    with pytest.raises(DecError, match="member 1 is not a DEC model of one member"):
        mean_of_members([_member(0), mean], [np.arange(4)] * 2)
