"""Cacheable steps log to runs of their own, which the pipeline's run adopts (see dag.py)."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow import MlflowClient

from dec_lib import steps


@pytest.fixture(scope="module")
def data_file(tmp_path_factory, mnist_subset):
    path = tmp_path_factory.mktemp("cached") / "digits.npz"
    np.savez(path, x=mnist_subset.x[:300].reshape(-1, 28, 28), y=mnist_subset.y[:300])
    return path


def test_a_cached_steps_record_lands_in_the_pipeline_run(data_file, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cacheable = steps.TrackingContext("", uri, "cache-test")  # no run key, as when cacheable
    data = {"dataset": str(data_file)}
    ingested = steps.ingest(data, 0, str(tmp_path / "data.npz"), cacheable)
    again = steps.ingest(data, 0, str(tmp_path / "data2.npz"), cacheable)
    # The same work logs to the same run of its own: a rerun does not scatter runs.
    assert ingested["tracking"]["mlflow_run_id"] == again["tracking"]["mlflow_run_id"]
    assert ingested["tracking"]["params"]["data.n_images"] == "300"

    pretrained = steps.pretrain(str(tmp_path / "data.npz"), {"hidden_dims": [32, 32, 64]},
                                {"epochs": 2, "optimizer": "adam", "learning_rate": 1e-3,
                                 "checkpoint_every": 0}, 0, str(tmp_path / "ae"), cacheable)
    assert "phase_seconds.pretrain" in pretrained["tracking"]["metrics"]

    pipeline = steps.TrackingContext("job-1", uri, "cache-test")
    steps.init_clusters(str(tmp_path / "data.npz"), str(tmp_path / "ae"), {"method": "kmeans",
                      "n_init": 2}, {}, 0, str(tmp_path / "init.npz"), pipeline,
                      upstream={"ingest": ingested["tracking"],
                                "pretrain": pretrained["tracking"]})

    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("cache-test").experiment_id],
                                "tags.`dec.pipeline_run` = 'job-1'")
    assert run.data.params["data.n_images"] == "300"
    assert run.data.params["pretrain.epochs"] == "2"
    for step in ("ingest", "pretrain", "init_clusters"):
        assert f"phase_seconds.{step}" in run.data.metrics
    assert run.data.metrics["pretrain.final_loss"] == pytest.approx(
        pretrained["final_loss"])
    assert run.data.tags["pretrain.mlflow_run_id"] == pretrained["tracking"]["mlflow_run_id"]
