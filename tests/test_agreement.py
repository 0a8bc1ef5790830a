"""Choosing a member by agreement: the sound member wins, however clusters are numbered."""

from __future__ import annotations

import numpy as np
import pytest

from dec_lib.errors import DataError
from dec_lib.model.agreement import agreement_medoid, aligned_order


def _classes(n_per_class: int = 200, n_classes: int = 5) -> np.ndarray:
    return np.repeat(np.arange(n_classes), n_per_class)


def test_member_that_merges_part_of_a_class_is_not_chosen():
    rng = np.random.default_rng(0)
    truth = _classes()
    sound = []
    for _ in range(2):  # sound members: a few scattered errors each, clusters renumbered
        labels = truth.copy()
        flip = rng.choice(truth.size, 20, replace=False)
        labels[flip] = rng.integers(0, 5, 20)
        sound.append(rng.permutation(5)[labels])
    tail = truth.copy()
    tail[(truth == 3) & (np.arange(truth.size) % 200 < 80)] = 1  # 40% of class 3 in class 1's
    for order in ([tail, *sound], [sound[0], tail, sound[1]], [*sound, tail]):
        choice = agreement_medoid(order)
        assert not np.array_equal(order[choice.index], tail)
        tail_index = next(i for i, m in enumerate(order) if m is tail)
        assert choice.agreement[tail_index] == choice.agreement.min()


def test_identical_partitions_tie_to_the_first_and_agree_fully():
    truth = _classes(50, 4)
    choice = agreement_medoid([truth, (truth + 1) % 4, 3 - truth])
    assert choice.index == 0
    np.testing.assert_allclose(choice.agreement, 1.0)
    np.testing.assert_allclose(choice.pairwise, np.ones((3, 3)))


def test_pairwise_is_symmetric_with_ones_on_the_diagonal():
    rng = np.random.default_rng(1)
    members = [rng.integers(0, 3, 300) for _ in range(4)]
    choice = agreement_medoid(members)
    np.testing.assert_allclose(choice.pairwise, choice.pairwise.T)
    np.testing.assert_allclose(np.diag(choice.pairwise), 1.0)
    assert choice.agreement.shape == (4,)


@pytest.mark.parametrize("members, message", [
    ([np.zeros(5, int)], "at least two members"),
    ([np.zeros(5, int), np.zeros(4, int)], "member 1 labels 4 points, member 0 5"),
    ([np.zeros(0, int), np.zeros(0, int)], "member 0 labels no points"),
    ([np.zeros(5, int), -np.ones(5, int)], "member 1's cluster ids"),
    ([np.zeros(5, int), np.full(5, 0.5)], "member 1's cluster ids"),
])
def test_refuses_what_cannot_be_compared(members, message):
    with pytest.raises(DataError, match=message):
        agreement_medoid(members)


def test_aligned_order_renumbers_a_member_as_the_reference_without_labels():
    rng = np.random.default_rng(1)
    reference = rng.integers(0, 6, 500)
    renumbering = rng.permutation(6)
    member = renumbering[reference]
    member[:40] = rng.integers(0, 6, 40)  # some disagreement
    order = aligned_order(reference, member, 6)
    np.testing.assert_array_equal(order, renumbering)
    assert (order[reference[40:]] == member[40:]).all()


def test_aligned_order_is_a_permutation_even_where_a_cluster_is_empty():
    reference = np.array([0, 0, 1, 1, 2, 2])
    member = np.array([3, 3, 1, 1, 1, 1])  # clusters 0 and 2 unused, 1 holds two of reference's
    order = aligned_order(reference, member, 4)
    assert sorted(order) == [0, 1, 2, 3]
    assert order[0] == 3 and 1 in (order[1], order[2])


@pytest.mark.parametrize("labels, message", [
    ([np.array([0, 1, 5]), np.array([0, 1, 2])], "beyond 3 clusters"),
    ([np.array([0, 1, 2]), np.array([0, 1])], "member 1 labels 2 points"),
    ([np.array([0, 1, 2]), np.array([0.5, 1, 2])], "not non-negative integers"),
])
def test_aligned_order_refuses_labelings_it_cannot_match(labels, message):
    with pytest.raises(DataError, match=message):
        aligned_order(*labels, 3)
