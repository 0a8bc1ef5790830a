"""Clustering quality against small cases worked out by hand, and against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from dec_lib.errors import DataError
from dec_lib.model.metrics import (
    cluster_accuracy,
    cluster_to_label,
    contingency,
    evaluate_clustering,
)


def test_permuted_cluster_ids_score_perfectly():
    y_true = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    permutation = np.array([2, 3, 0, 1])  # label l lands in cluster permutation[l]
    y_pred = permutation[y_true]
    assert cluster_accuracy(y_true, y_pred) == 1.0
    assert cluster_to_label(y_true, y_pred) == {2: 0, 3: 1, 0: 2, 1: 3}
    report = evaluate_clustering(y_true, y_pred)
    assert report.acc == 1.0
    assert report.nmi == pytest.approx(1.0)
    assert report.ari == pytest.approx(1.0)
    assert report.confusion == (2 * np.eye(4, dtype=int)).tolist()


def test_six_points_three_labels_by_hand():
    #   cluster:  2  2  0  1  1  1
    #   label:    0  0  1  1  2  2
    # counts[cluster][label]: c0=[0,1,0], c1=[0,1,2], c2=[2,0,0]
    # best one-to-one: c2->0 (2) + c1->2 (2) + c0->1 (1) = 5 of 6.
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [2, 2, 0, 1, 1, 1]
    np.testing.assert_array_equal(contingency(y_true, y_pred), [[0, 1, 0], [0, 1, 2], [2, 0, 0]])
    assert cluster_accuracy(y_true, y_pred) == pytest.approx(5 / 6)
    assert cluster_to_label(y_true, y_pred) == {0: 1, 1: 2, 2: 0}
    report = evaluate_clustering(y_true, y_pred)
    assert report.acc == pytest.approx(5 / 6)
    assert report.labels == [0, 1, 2]
    # mapped predictions: 0 0 1 2 2 2; rows are true labels, columns mapped predictions
    assert report.confusion == [[2, 0, 0], [0, 1, 1], [0, 0, 2]]


def test_more_clusters_than_labels_by_hand():
    #   label:    0  0  0  1  1  1
    #   cluster:  0  0  1  1  2  2
    # counts: c0=[2,0], c1=[1,1], c2=[0,2]; one-to-one best: c0->0 + c2->1 = 4 of 6.
    # The left-over cluster 1 maps to its majority label (a tie: the first, 0).
    y_true = [0, 0, 0, 1, 1, 1]
    y_pred = [0, 0, 1, 1, 2, 2]
    assert cluster_accuracy(y_true, y_pred) == pytest.approx(4 / 6)
    assert cluster_to_label(y_true, y_pred) == {0: 0, 2: 1, 1: 0}
    report = evaluate_clustering(y_true, y_pred)
    assert report.acc == pytest.approx(4 / 6)
    # mapped predictions: 0 0 0 0 1 1
    assert report.confusion == [[3, 0], [1, 2]]
    assert sum(map(sum, report.confusion)) == 6


def test_fewer_clusters_than_labels_by_hand():
    y_true = [0, 1, 2, 2]
    y_pred = [0, 0, 0, 0]
    assert cluster_accuracy(y_true, y_pred) == 0.5
    assert cluster_to_label(y_true, y_pred) == {0: 2}
    report = evaluate_clustering(y_true, y_pred)
    assert report.labels == [0, 1, 2]
    assert report.confusion == [[0, 0, 1], [0, 0, 1], [0, 0, 2]]


def test_non_contiguous_label_values_are_kept():
    y_true = [3, 3, 7, 7, 7]
    y_pred = [1, 1, 0, 0, 1]
    assert cluster_accuracy(y_true, y_pred) == pytest.approx(4 / 5)
    assert cluster_to_label(y_true, y_pred) == {1: 3, 0: 7}
    report = evaluate_clustering(y_true, y_pred)
    assert report.labels == [3, 7]
    assert report.confusion == [[2, 0], [1, 2]]


def test_report_serialises_to_plain_types():
    report = evaluate_clustering([0, 1, 1], [1, 0, 0]).to_dict()
    assert set(report) == {"acc", "nmi", "ari", "mapping", "confusion", "labels"}
    assert report["mapping"] == {1: 0, 0: 1}
    assert isinstance(report["confusion"][0][0], int)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_labelings_agree_with_sklearn_and_confusion_sums_to_n(seed):
    rng = np.random.default_rng(seed)
    n = 200
    y_true = rng.integers(0, 10, n)
    # partly informative predictions with 12 clusters
    y_pred = np.where(rng.random(n) < 0.6, (y_true + 3) % 10, rng.integers(0, 12, n))
    report = evaluate_clustering(y_true, y_pred)
    assert report.nmi == pytest.approx(normalized_mutual_info_score(y_true, y_pred), abs=1e-12)
    assert report.ari == pytest.approx(adjusted_rand_score(y_true, y_pred), abs=1e-12)
    confusion = np.array(report.confusion)
    assert confusion.sum() == n
    # rows are true labels: each row sums to that label's count
    for row, label in zip(confusion, report.labels, strict=True):
        assert row.sum() == np.sum(y_true == label)
    # accuracy is at most the mapped agreement, and at least chance for this construction
    assert 0.5 < report.acc <= np.trace(confusion) / n


def test_accuracy_is_the_best_one_to_one_matching_by_brute_force():
    from itertools import permutations

    rng = np.random.default_rng(4)
    y_true = rng.integers(0, 4, 40)
    y_pred = rng.integers(0, 4, 40)
    best = max(np.mean(np.array(perm)[y_pred] == y_true) for perm in permutations(range(4)))
    assert cluster_accuracy(y_true, y_pred) == pytest.approx(best)


@pytest.mark.parametrize(
    "function", [cluster_accuracy, cluster_to_label, evaluate_clustering, contingency]
)
def test_mismatched_lengths_are_refused(function):
    with pytest.raises(DataError, match="3 true labels for 2 predictions"):
        function([0, 1, 1], [0, 1])


def test_empty_and_negative_labels_are_refused():
    with pytest.raises(DataError, match="no labels"):
        cluster_accuracy([], [])
    with pytest.raises(DataError, match="non-negative"):
        cluster_accuracy([0, -1], [0, 1])
    with pytest.raises(DataError, match="non-negative"):
        evaluate_clustering([0, 1], [0, -1])
