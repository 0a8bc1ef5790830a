"""The clustering layer and DEC's two distributions.

``soft_assignment`` and ``target_distribution`` exist twice on purpose: as NumPy functions (the
readable reference, also used on the full data set between updates) and inside
``ClusteringLayer`` (the differentiable version trained with the encoder).

A model of several members (``combine=mean``) has one set of centres per member, numbered alike,
over the concatenation of the members' embeddings; its q is the mean of the members' q. The
centres are then members x clusters x each member's embedding width.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


def soft_assignment(embedding: np.ndarray, centres: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """q_ij: Student's t similarity of embedding i to centre j, normalised per row.

    Parameters
    ----------
    embedding : numpy.ndarray
        Points, N x dimensions.
    centres : numpy.ndarray
        Cluster centres, K x dimensions; or members x K x dimensions / members, for an
        embedding that concatenates the members' embeddings.
    alpha : float, default 1.0
        Degrees of freedom of the Student's t kernel.

    Returns
    -------
    numpy.ndarray
        N x K, float64; rows sum to one.
    """
    embedding = np.asarray(embedding, dtype=np.float64)
    centres = np.asarray(centres, dtype=np.float64)
    if centres.ndim == 3:  # several members: the mean of each member's q
        parts = np.split(embedding, centres.shape[0], axis=1)
        return np.mean([soft_assignment(part, c, alpha) for part, c in zip(parts, centres,
                                                                            strict=True)], axis=0)
    sq_dist = ((embedding[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
    q = (1.0 + sq_dist / alpha) ** (-(alpha + 1.0) / 2.0)
    return q / q.sum(axis=1, keepdims=True)


def target_distribution(q: np.ndarray) -> np.ndarray:
    """p_ij = (q_ij^2 / f_j) normalised per row, f_j the soft cluster frequency.

    Squaring sharpens confident assignments; dividing by f_j stops large clusters from swallowing
    the rest.

    Parameters
    ----------
    q : numpy.ndarray
        Soft assignments, N x K.

    Returns
    -------
    numpy.ndarray
        p, N x K, float64; rows sum to one.
    """
    q = np.asarray(q, dtype=np.float64)
    weight = q**2 / q.sum(axis=0)
    return weight / weight.sum(axis=1, keepdims=True)


@keras.saving.register_keras_serializable(package="dec")
class ClusteringLayer(keras.layers.Layer):
    """Maps embeddings to soft cluster assignments; the cluster centres are its weights.

    Parameters
    ----------
    n_clusters : int
        How many centres.
    alpha : float, default 1.0
        Degrees of freedom of the Student's t kernel; saved with the layer.
    members : int, default 1
        With more than one, the embedding is that many members' embeddings side by side, the
        centres one set per member, and q the mean of the members' q (the module's docstring).
    """

    def __init__(self, n_clusters: int, alpha: float = 1.0, members: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.n_clusters = int(n_clusters)
        self.alpha = float(alpha)
        self.members = int(members)

    def build(self, input_shape):
        """Create the centres, one row per cluster (per member), as wide as the embedding."""
        width = int(input_shape[-1])
        if self.members == 1:
            shape = (self.n_clusters, width)
        else:
            if width % self.members:
                raise ValueError(f"an embedding {width} wide cannot be {self.members} members' "
                                 "embeddings of one width")
            shape = (self.members, self.n_clusters, width // self.members)
        self.centres = self.add_weight(name="centres", shape=shape, initializer="glorot_uniform")

    def call(self, embedding):
        """q for a batch of embeddings, differentiable in the embedding and the centres."""
        if self.members == 1:
            return self._student_t(embedding, self.centres)
        parts = ops.split(embedding, self.members, axis=-1)
        return ops.mean(ops.stack([self._student_t(part, self.centres[i])
                                   for i, part in enumerate(parts)]), axis=0)

    def _student_t(self, embedding, centres):
        diff = ops.expand_dims(embedding, axis=1) - ops.expand_dims(centres, axis=0)
        sq_dist = ops.sum(ops.square(diff), axis=2)
        q = ops.power(1.0 + sq_dist / self.alpha, -(self.alpha + 1.0) / 2.0)
        return q / ops.sum(q, axis=1, keepdims=True)

    def compute_output_shape(self, input_shape):
        """(batch, n_clusters)."""
        return (input_shape[0], self.n_clusters)

    def get_config(self):
        """The layer's settings, ``alpha`` and ``members`` included, so a saved model reloads
        faithfully (a model saved before ``members`` existed reloads with 1)."""
        return {**super().get_config(), "n_clusters": self.n_clusters, "alpha": self.alpha,
                "members": self.members}
