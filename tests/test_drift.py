"""Drift figures: what a person reading a retraining run learns about its data, label-free."""

import numpy as np
import pytest

from dec_lib.mlops.drift import measure_drift, reference_from_tags, reference_of


def _q(confidences, clusters, k=3):
    """Soft assignments with the given max confidence in the given cluster."""
    q = np.zeros((len(clusters), k))
    for row, (c, conf) in enumerate(zip(clusters, confidences, strict=True)):
        q[row] = (1 - conf) / (k - 1)
        q[row, c] = conf
    return q


def test_the_training_data_itself_shows_no_drift():
    rng = np.random.default_rng(0)
    q = _q(rng.uniform(0.4, 1.0, 1001), rng.integers(0, 3, 1001))
    drift = measure_drift(q, reference_of(q))
    assert drift.low_confidence_share == pytest.approx(0.5, abs=0.001)
    assert drift.cluster_size_tvd == 0


def test_images_the_model_has_no_cluster_for_raise_the_low_confidence_share():
    train = _q([0.9, 0.8, 0.95, 0.85], [0, 1, 2, 0])
    new = _q([0.9, 0.4, 0.4, 0.4], [0, 1, 2, 0])
    assert measure_drift(new, reference_of(train)).low_confidence_share == 0.75


def test_cluster_sizes_moving_is_their_total_variation_distance():
    train = _q([0.9] * 4, [0, 0, 1, 2])          # shares 1/2, 1/4, 1/4
    new = _q([0.9] * 4, [2, 2, 2, 2])            # shares 0, 0, 1
    assert measure_drift(new, reference_of(train)).cluster_size_tvd == pytest.approx(0.75)


def test_the_reference_survives_a_round_trip_through_version_tags():
    reference = reference_of(_q([0.9, 0.7, 0.8], [0, 1, 1]))
    back = reference_from_tags(reference.tags())
    assert back.median_confidence == pytest.approx(0.8)
    assert back.cluster_shares == pytest.approx((1 / 3, 2 / 3, 0))
    assert all(isinstance(v, str) for v in reference.tags().values())


def test_a_version_registered_without_a_reference_has_none():
    assert reference_from_tags({}) is None
    assert reference_from_tags({"drift.reference.median_confidence": "x",
                                "drift.reference.cluster_shares": "[1]"}) is None


def test_a_reference_with_other_clusters_is_refused():
    with pytest.raises(ValueError, match="clusters"):
        measure_drift(_q([0.9], [0], k=4), reference_of(_q([0.9], [0], k=3)))
