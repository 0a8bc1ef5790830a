"""The DEC model's one home: an encoder followed by the clustering layer.

Everything that needs to know how a DEC model is put together (the clustering layer's name,
where its encoder ends, how its soft assignments become cluster labels) asks this module, so
that the estimator, the pipeline's steps and the champion gate read a model the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from dec_lib.errors import DecError
from dec_lib.model.autoencoder import EMBEDDING_LAYER
from dec_lib.model.clustering import ClusteringLayer
from dec_lib.model.forward import predict_batched

CLUSTERING_LAYER = "clustering"
"""The clustering layer's name in every DEC model, saved ones included."""


def build_dec_model(encoder: keras.Model, centres: np.ndarray, alpha: float) -> keras.Model:
    """The encoder followed by a clustering layer whose centres start at ``centres``.

    Parameters
    ----------
    encoder : keras.Model
        Maps images to the embedding; the DEC model shares (and trains) its weights.
    centres : numpy.ndarray
        Initial cluster centres, n_clusters x embedding dimensions; or members x n_clusters x
        dimensions when the encoder's embedding is several members' side by side (see
        ``mean_of_members``).
    alpha : float
        Degrees of freedom of the Student's t kernel.

    Returns
    -------
    keras.Model
        Images in, soft assignments q out.
    """
    centres = np.asarray(centres)
    members = centres.shape[0] if centres.ndim == 3 else 1
    layer = ClusteringLayer(centres.shape[-2], alpha=alpha, members=members,
                            name=CLUSTERING_LAYER)
    model = keras.Model(encoder.input, layer(encoder.output), name="dec")
    layer.set_weights([np.asarray(centres, dtype=np.float32)])
    return model


def mean_of_members(models: Sequence[keras.Model], orders: Sequence[np.ndarray]) -> keras.Model:
    """One DEC model whose q is the mean of the members' q, their clusters numbered alike.

    Each member's encoder is copied in under names of its own (``member_<i>_...``), all reading
    the same images; their embeddings are concatenated, and the clustering layer holds each
    member's centres, reordered by ``orders[i]``. The result saves, loads and serves like any
    DEC model: ``dec_encoder`` gives the concatenated embedding.

    Parameters
    ----------
    models : sequence of keras.Model
        Two or more DEC models of one member each, with the same input, number of clusters,
        ``alpha`` and embedding width.
    orders : sequence of numpy.ndarray
        Per member, ``order[j]``: the member's cluster that becomes cluster j
        (``dec_lib.model.agreement.aligned_order``).

    Returns
    -------
    keras.Model

    Raises
    ------
    DecError
        Fewer than two models, a model that is not a DEC model of one member, or members that
        differ in input, clusters, ``alpha`` or embedding width.
    """
    if len(models) < 2 or len(orders) != len(models):
        raise DecError(f"a mean of members needs two or more models and an order for each; got "
                       f"{len(models)} models and {len(orders)} orders")
    layers = []
    for i, model in enumerate(models):
        if not is_dec_model(model) or clustering_layer(model).members != 1:
            raise DecError(f"member {i} is not a DEC model of one member")
        layers.append(clustering_layer(model))
    shapes = {(m.input_shape[1:], layer.n_clusters, layer.alpha, cluster_centres(m).shape)
              for m, layer in zip(models, layers, strict=True)}
    if len(shapes) > 1:
        raise DecError("members differ in input, clusters, alpha or embedding width: "
                       f"{sorted(map(str, shapes))}")
    images = keras.Input(shape=models[0].input_shape[1:], name=models[0].input.name)
    embeddings = []
    for i, model in enumerate(models):
        encoder = dec_encoder(model)
        copy = keras.models.clone_model(
            encoder, input_tensors=images,
            clone_function=lambda layer, i=i: layer.__class__.from_config(
                {**layer.get_config(), "name": f"member_{i}_{layer.name}"}))
        copy.set_weights(encoder.get_weights())
        embeddings.append(copy.output)
    # Named as a single encoder's embedding, so ``encoder_of`` finds it (a warm start continues
    # a mean of members as one model).
    joined = keras.layers.Concatenate(name=EMBEDDING_LAYER)(embeddings)
    centres = np.stack([cluster_centres(m)[np.asarray(order)]
                        for m, order in zip(models, orders, strict=True)])
    return build_dec_model(keras.Model(images, joined, name="encoder"), centres,
                           layers[0].alpha)


def is_dec_model(model: keras.Model) -> bool:
    """Whether ``model`` ends in the clustering layer (a DEC model, not an autoencoder).

    Parameters
    ----------
    model : keras.Model
        A model as saved by the pipeline: an autoencoder or a DEC model.

    Returns
    -------
    bool
    """
    return CLUSTERING_LAYER in {layer.name for layer in model.layers}


def clustering_layer(model: keras.Model) -> ClusteringLayer:
    """The clustering layer of a DEC model: its centres and ``alpha``.

    Parameters
    ----------
    model : keras.Model
        A DEC model (see ``build_dec_model``).

    Returns
    -------
    ClusteringLayer
    """
    return model.get_layer(CLUSTERING_LAYER)


def cluster_centres(model: keras.Model) -> np.ndarray:
    """The centres of a DEC model, n_clusters x embedding dimensions (members x n_clusters x
    each member's dimensions for a mean of members).

    Parameters
    ----------
    model : keras.Model
        A DEC model.

    Returns
    -------
    numpy.ndarray
    """
    return clustering_layer(model).get_weights()[0]


def dec_encoder(model: keras.Model) -> keras.Model:
    """The encoder inside a DEC model: images in, the embedding out, weights shared.

    Parameters
    ----------
    model : keras.Model
        A DEC model.

    Returns
    -------
    keras.Model
    """
    return keras.Model(model.input, clustering_layer(model).input, name="encoder")


def soft_assignments(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """q for every row of ``x``: each image's Student's t similarity to each centre.

    Parameters
    ----------
    model : keras.Model
        A DEC model.
    x : numpy.ndarray
        Images, N x pixels.

    Returns
    -------
    numpy.ndarray
        N x n_clusters; rows sum to one.
    """
    return predict_batched(model, x)


def cluster_labels(q: np.ndarray) -> np.ndarray:
    """Each image's cluster: the one it is most similar to under ``q``.

    Parameters
    ----------
    q : numpy.ndarray
        Soft assignments, N x n_clusters (see ``soft_assignments``).

    Returns
    -------
    numpy.ndarray
        N cluster ids.
    """
    return np.asarray(q).argmax(axis=1)
