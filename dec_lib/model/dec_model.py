"""The DEC model's one home: an encoder followed by the clustering layer.

Everything that needs to know how a DEC model is put together (the clustering layer's name,
where its encoder ends, how its soft assignments become cluster labels) asks this module, so
that the estimator, the pipeline's steps and the champion gate read a model the same way.
"""

from __future__ import annotations

import keras
import numpy as np

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
        Initial cluster centres, n_clusters x embedding dimensions.
    alpha : float
        Degrees of freedom of the Student's t kernel.

    Returns
    -------
    keras.Model
        Images in, soft assignments q out.
    """
    layer = ClusteringLayer(len(centres), alpha=alpha, name=CLUSTERING_LAYER)
    model = keras.Model(encoder.input, layer(encoder.output), name="dec")
    layer.set_weights([np.asarray(centres, dtype=np.float32)])
    return model


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
    """The centres of a DEC model, n_clusters x embedding dimensions.

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
