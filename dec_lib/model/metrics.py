"""Clustering quality: unsupervised accuracy (Hungarian mapping), NMI, ARI and the confusion matrix.

Labels are used here and nowhere in training.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from dec_lib.errors import DataError


def _as_label_vectors(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    for name, values in (("labels", y_true), ("clusters", y_pred)):
        if values.dtype.kind not in "biuf" or (
                values.dtype.kind == "f" and not np.all(np.isfinite(values)
                                                        & (values == np.round(values)))):
            raise DataError(name, "must be whole numbers")
    y_true, y_pred = y_true.astype(np.int64), y_pred.astype(np.int64)
    if y_true.shape != y_pred.shape:
        raise DataError("labels", f"{y_true.size} true labels for {y_pred.size} predictions")
    if y_true.size == 0:
        raise DataError("labels", "no labels to evaluate")
    if y_true.min() < 0 or y_pred.min() < 0:
        raise DataError("labels", "labels and clusters must be non-negative integers")
    return y_true, y_pred


def contingency(y_true, y_pred) -> np.ndarray:
    """counts[cluster, label]: how many points of each label fell in each cluster.

    Parameters
    ----------
    y_true : array-like
        True labels, non-negative integers.
    y_pred : array-like
        Cluster ids, one per label.

    Returns
    -------
    numpy.ndarray
        n_clusters x n_labels counts.

    Raises
    ------
    DataError
        Labels or clusters that are not non-negative whole numbers, or of unequal length.
    """
    y_true, y_pred = _as_label_vectors(y_true, y_pred)
    counts = np.zeros((y_pred.max() + 1, y_true.max() + 1), dtype=np.int64)
    np.add.at(counts, (y_pred, y_true), 1)
    return counts


def cluster_to_label(y_true, y_pred) -> dict[int, int]:
    """The one-to-one cluster->label mapping that maximises agreement (Hungarian algorithm).

    Clusters left over when there are more clusters than labels map to their majority label.

    Parameters
    ----------
    y_true : array-like
        True labels, non-negative integers.
    y_pred : array-like
        Cluster ids, one per label.

    Returns
    -------
    dict
        Cluster id to label.
    """
    counts = contingency(y_true, y_pred)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    mapping = {int(r): int(c) for r, c in zip(rows, cols, strict=True)}
    for cluster in range(counts.shape[0]):
        if cluster not in mapping and counts[cluster].sum() > 0:
            mapping[cluster] = int(counts[cluster].argmax())
    return mapping


def cluster_accuracy(y_true, y_pred) -> float:
    """Unsupervised accuracy: the best one-to-one matching of clusters to labels.

    Parameters
    ----------
    y_true : array-like
        True labels, non-negative integers.
    y_pred : array-like
        Cluster ids, one per label.

    Returns
    -------
    float
        The fraction of points whose cluster maps to their label, in [0, 1].
    """
    counts = contingency(y_true, y_pred)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / counts.sum())


@dataclass
class ClusteringReport:
    """A clustering scored against true labels: what the evaluate step reports."""

    acc: float
    nmi: float
    ari: float
    mapping: dict[int, int]
    confusion: list[list[int]]
    """confusion[label][predicted label] after mapping clusters to labels."""
    labels: list[int]

    def to_dict(self) -> dict:
        """The report as plain JSON-ready values."""
        return asdict(self)


def evaluate_clustering(y_true, y_pred) -> ClusteringReport:
    """ACC, NMI, ARI, the cluster-to-label mapping and the mapped confusion matrix.

    Parameters
    ----------
    y_true : array-like
        True labels, non-negative integers.
    y_pred : array-like
        Cluster ids, one per label.

    Returns
    -------
    ClusteringReport
    """
    y_true, y_pred = _as_label_vectors(y_true, y_pred)
    mapping = cluster_to_label(y_true, y_pred)
    mapped = np.array([mapping.get(int(c), -1) for c in range(y_pred.max() + 1)])[y_pred]
    labels = sorted(set(np.unique(y_true).tolist()) | set(mapping.values()))
    index = {label: i for i, label in enumerate(labels)}
    position = np.full(max(labels) + 1, -1)
    position[list(index)] = list(index.values())
    kept = mapped >= 0
    confusion = np.zeros((len(labels), len(labels)), dtype=np.int64)
    np.add.at(confusion, (position[y_true[kept]], position[mapped[kept]]), 1)
    return ClusteringReport(
        acc=cluster_accuracy(y_true, y_pred),
        nmi=float(normalized_mutual_info_score(y_true, y_pred)),
        ari=float(adjusted_rand_score(y_true, y_pred)),
        mapping=mapping,
        confusion=confusion.tolist(),
        labels=labels,
    )


SILHOUETTE_SAMPLE = 5000


def sampled_silhouette(embedding: np.ndarray, clusters: np.ndarray,
                       sample_size: int = SILHOUETTE_SAMPLE, seed: int = 0) -> float:
    """Silhouette of ``clusters`` in ``embedding`` on a fixed random sample; -1 if < 2 clusters.

    The sample depends only on the number of points and ``seed``, so two models scored on the
    same data are scored on the same points.

    Parameters
    ----------
    embedding : numpy.ndarray
        Points, N x dimensions.
    clusters : numpy.ndarray
        Their cluster ids.
    sample_size : int, default SILHOUETTE_SAMPLE
        At most this many points: the silhouette is quadratic in their number.
    seed : int, default 0
        Draws the sample.

    Returns
    -------
    float
        In [-1, 1]; -1 when the sample holds fewer than two clusters.
    """
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(seed)
    sample = rng.choice(len(embedding), min(len(embedding), sample_size), replace=False)
    if len(np.unique(clusters[sample])) < 2:
        return -1.0
    return float(silhouette_score(embedding[sample], clusters[sample]))
