"""Choosing among independently trained clusterings without labels: the one the others agree with.

A run's partition depends on its pretraining draw, and a few draws merge part of one class into
another (BENCHMARKS.md, "`best`'s tail"). Such a merge belongs to its draw, so where most
members are sound, the member whose partition agrees best with the others' is a sound one. The
agreement is the adjusted Rand index, which ignores how clusters are numbered and needs no labels.
Members whose clusterings are combined into one model are first numbered alike
(``aligned_order``): each member's clusters matched one to one to the reference member's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score

from dec_lib.errors import DataError

__all__ = ["AgreementChoice", "agreement_medoid", "aligned_order"]


@dataclass(frozen=True)
class AgreementChoice:
    """The chosen member and how each member agreed with the rest.

    Attributes
    ----------
    index : int
        The member with the highest mean agreement; the lowest index among equals.
    agreement : numpy.ndarray
        Each member's mean adjusted Rand index with the other members.
    pairwise : numpy.ndarray
        members x members adjusted Rand indices, 1 on the diagonal.
    """

    index: int
    agreement: np.ndarray
    pairwise: np.ndarray


def agreement_medoid(labelings: Sequence) -> AgreementChoice:
    """The labeling that agrees best, on average, with all the others (the partitions' medoid).

    Parameters
    ----------
    labelings : sequence of array-like
        Cluster ids of the same points from each member, non-negative whole numbers. Two members
        always tie; three or more are needed for the choice to mean anything.

    Returns
    -------
    AgreementChoice

    Raises
    ------
    DataError
        Fewer than two labelings, labelings of different lengths or of no points, or ids that
        are not non-negative whole numbers.
    """
    members = _checked(labelings)
    n = len(members)
    pairwise = np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            pairwise[i, j] = pairwise[j, i] = adjusted_rand_score(members[i], members[j])
    agreement = (pairwise.sum(axis=1) - 1.0) / (n - 1)
    return AgreementChoice(int(np.argmax(agreement)), agreement, pairwise)


def aligned_order(reference, labels, n_clusters: int) -> np.ndarray:
    """How to renumber ``labels``' clusters as ``reference``'s: the one-to-one matching of
    clusters that puts the most points in the same cluster (Hungarian algorithm, no labels).

    Parameters
    ----------
    reference, labels : array-like
        Cluster ids of the same points from two members, whole numbers in [0, n_clusters).
    n_clusters : int
        How many clusters each member has; a cluster no point falls in is matched too.

    Returns
    -------
    numpy.ndarray
        ``order`` with ``order[j]`` the cluster of ``labels`` matched to ``reference``'s
        cluster j: a permutation of ``range(n_clusters)``.

    Raises
    ------
    DataError
        Labelings of different lengths or of no points, or ids outside [0, n_clusters).
    """
    reference, labels = _checked([reference, labels])
    if max(reference.max(), labels.max()) >= n_clusters:
        raise DataError("labelings", f"cluster ids reach {max(reference.max(), labels.max())}, "
                        f"beyond {n_clusters} clusters")
    overlap = np.zeros((n_clusters, n_clusters), dtype=np.int64)
    np.add.at(overlap, (reference, labels), 1)
    rows, columns = linear_sum_assignment(overlap, maximize=True)
    return columns[np.argsort(rows)]


def _checked(labelings: Sequence) -> list[np.ndarray]:
    """The labelings as flat arrays, after checking they label the same points with valid ids."""
    members = [np.asarray(labels).ravel() for labels in labelings]
    if len(members) < 2:
        raise DataError("labelings", f"need at least two members to compare, got {len(members)}")
    for i, labels in enumerate(members):
        if labels.size == 0:
            raise DataError("labelings", f"member {i} labels no points")
        if labels.size != members[0].size:
            raise DataError("labelings", f"member {i} labels {labels.size} points, member 0 "
                            f"{members[0].size}")
        if labels.dtype.kind not in "iu" or labels.min() < 0:
            raise DataError("labelings", f"member {i}'s cluster ids are not non-negative "
                            "integers")
    return members
