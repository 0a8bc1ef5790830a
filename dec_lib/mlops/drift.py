"""How far new data is from a model's training data, in the model's own embedding, label-free.

Two figures, both from the soft assignments q of a DEC model:

- the share of new images whose cluster confidence (max q) is below the median confidence the
  model had on its training data. On data like the training data it is about 0.5, by the
  definition of a median; images the model has no cluster for push it towards 1.
- the total variation distance between the model's cluster-size distribution on its training
  data and on the new data: 0 when every cluster keeps its share, 1 when no image lands where
  training images did. Added images of one kind, or a class that vanished, show here.

The training side is recorded when a version is registered (`reference_tags`), so a later run
compares the champion with new data without the champion's data. These figures explain why a
run retrained; they decide nothing (the gate scores both models on the data, see
`dec_lib.mlops.promotion`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["Drift", "Reference", "measure_drift", "reference_from_tags", "reference_of"]

MEDIAN_TAG = "drift.reference.median_confidence"
SHARES_TAG = "drift.reference.cluster_shares"


@dataclass(frozen=True)
class Reference:
    """A model on its training data: median confidence and each cluster's share of images."""

    median_confidence: float
    cluster_shares: tuple[float, ...]

    def tags(self) -> dict[str, str]:
        """As model-version tags (strings), read back by `reference_from_tags`."""
        return {MEDIAN_TAG: f"{self.median_confidence:.6f}",
                SHARES_TAG: json.dumps([round(s, 6) for s in self.cluster_shares])}


@dataclass(frozen=True)
class Drift:
    """How far new data is from a model's training data, by the two figures of this module."""

    low_confidence_share: float
    """Share of the new images below the training median confidence (about 0.5: no drift)."""
    cluster_size_tvd: float
    """Total variation distance between training and new cluster-size distributions, 0..1."""
    n_images: int

    def metrics(self) -> dict[str, float]:
        """The two figures as MLflow metrics (``drift.*``)."""
        return {"drift.low_confidence_share": self.low_confidence_share,
                "drift.cluster_size_tvd": self.cluster_size_tvd}

    def describe(self) -> str:
        """One sentence for the log, saying what each figure would be without drift."""
        return (f"{self.low_confidence_share:.1%} of {self.n_images} images below the "
                f"champion's training median confidence (about 50% when nothing drifted); "
                f"cluster sizes moved by {self.cluster_size_tvd:.3f} (total variation)")


def _cluster_shares(q: np.ndarray) -> np.ndarray:
    counts = np.bincount(q.argmax(axis=1), minlength=q.shape[1])
    return counts / max(int(counts.sum()), 1)


def reference_of(q: np.ndarray) -> Reference:
    """The reference of a model whose soft assignments on its training data are ``q``."""
    q = np.asarray(q)
    return Reference(median_confidence=float(np.median(q.max(axis=1))),
                     cluster_shares=tuple(float(s) for s in _cluster_shares(q)))


def reference_from_tags(tags: Mapping[str, str] | None) -> Reference | None:
    """The reference stored by `Reference.tags`; None for a version registered without one."""
    tags = tags or {}
    if MEDIAN_TAG not in tags or SHARES_TAG not in tags:
        return None
    try:
        shares = tuple(float(s) for s in json.loads(tags[SHARES_TAG]))
        return Reference(float(tags[MEDIAN_TAG]), shares)
    except (TypeError, ValueError):
        return None


def measure_drift(q: np.ndarray, reference: Reference) -> Drift:
    """The drift of the data whose soft assignments (by the reference's model) are ``q``.

    Parameters
    ----------
    q : numpy.ndarray
        Soft assignments of the new data, shape (n_images, n_clusters), by the model whose
        training data ``reference`` describes.
    reference : Reference

    Returns
    -------
    Drift

    Raises
    ------
    ValueError
        When ``q`` and ``reference`` have different numbers of clusters (another model).
    """
    q = np.asarray(q)
    if q.shape[1] != len(reference.cluster_shares):
        raise ValueError(f"q has {q.shape[1]} clusters, the reference "
                         f"{len(reference.cluster_shares)}")
    low = float(np.mean(q.max(axis=1) < reference.median_confidence))
    tvd = 0.5 * float(np.abs(_cluster_shares(q) - np.asarray(reference.cluster_shares)).sum())
    return Drift(low_confidence_share=low, cluster_size_tvd=tvd, n_images=int(q.shape[0]))
