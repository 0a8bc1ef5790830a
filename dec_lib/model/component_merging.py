"""Joining mixture components that one connected region of a neighbour graph holds.

A Gaussian mixture asked for exactly ``n_clusters`` components spends them by volume: a large
class is cut in two, and a small class beside a larger one is left inside it. Fitting more
components and then joining the ones the neighbour graph connects most strongly undoes that
where pieces of one class share more edges than two classes do. Where classes touch, it joins
them instead: BENCHMARKS.md ("More mixture components") has both cases.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse


def merge_connected(labels: np.ndarray, graph: scipy.sparse.spmatrix, n_components: int,
                    n_groups: int) -> np.ndarray:
    """Which group each mixture component joins, merging the most connected pair at a time.

    The pair to merge is the one whose shared edge weight is the largest fraction of the
    smaller one's total: a fragment that lies inside a larger region is joined to it, whatever
    its size, while two regions that only touch are kept apart. Empty components are joined
    first, since they hold nothing.

    Parameters
    ----------
    labels : numpy.ndarray
        Each graph node's component, in ``0 .. n_components - 1``.
    graph : scipy.sparse.spmatrix
        Node x node edge weights, for example UMAP's fuzzy neighbour graph (``graph_``).
    n_components : int
        How many components there are, counting empty ones.
    n_groups : int
        How many groups to end with, at most ``n_components``.

    Returns
    -------
    numpy.ndarray
        ``n_components`` group numbers in ``0 .. n_groups - 1``, numbered in the order of
        their smallest component, so that equal inputs give equal numbers.
    """
    edges = scipy.sparse.coo_matrix(graph)
    weight = np.zeros((n_components, n_components))
    np.add.at(weight, (labels[edges.row], labels[edges.col]), edges.data)
    weight = (weight + weight.T) / 2
    volume = weight.sum(axis=1)
    occupied = np.bincount(labels, minlength=n_components) > 0
    group = np.arange(n_components)
    active = list(range(n_components))
    while len(active) > n_groups:
        between = weight[np.ix_(active, active)]
        smaller = np.minimum.outer(volume[active], volume[active])
        empty = ~np.logical_and.outer(occupied[active], occupied[active])
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.where(empty, np.inf, np.where(smaller > 0, between / smaller, 0.0))
        np.fill_diagonal(score, -np.inf)
        i, j = np.unravel_index(np.argmax(score), score.shape)
        keep, gone = active[min(i, j)], active[max(i, j)]
        weight[keep] += weight[gone]
        weight[:, keep] += weight[:, gone]
        volume[keep] += volume[gone]
        occupied[keep] |= occupied[gone]
        group[group == gone] = keep
        active.remove(gone)
    return np.unique(group, return_inverse=True)[1]
