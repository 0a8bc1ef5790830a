"""The DEC model: encoder plus clustering layer, its encoder, its soft assignments."""

from __future__ import annotations

import numpy as np
import pytest

from dec_lib.config import AutoencoderConfig
from dec_lib.model.autoencoder import build_autoencoder, embed, encoder_of
from dec_lib.model.clustering import ClusteringLayer, soft_assignment
from dec_lib.model.dec_model import (
    CLUSTERING_LAYER,
    build_dec_model,
    cluster_centres,
    cluster_labels,
    dec_encoder,
    is_dec_model,
    soft_assignments,
)
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
