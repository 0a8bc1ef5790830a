"""Four nights of scheduled retraining on data in an S3-compatible store: the user's story.

Each night is what a recurring run does: ``dec-pipeline run --retrain`` on the same
``s3://`` URI, reached through ``AWS_ENDPOINT_URL`` (moto's server on loopback stands in for
MinIO), under kfp.local's subprocess runner. Every run is keyed by the runner's unique job
name, never by a display name (a recurring run has none). The objects change between nights:

1. v1: the first champion.
2. the same objects: nothing trained or registered, in under a minute.
3. v2, images added: a warm start from the champion, a new version through the gate.
4. v3, half of the images replaced with noise: the new version stays challenger (the champion
   scores far below its own registered score on it: the data went bad).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.servers import S3_TEST_CREDENTIALS, s3_server

pytestmark = pytest.mark.e2e

BUCKET = "nightly"
URI = f"s3://{BUCKET}/digits/mnist.npz"
MODEL = "dec-nightly"
# The quick preset, smaller still: the story, not the model's quality, is under test.
SETTINGS = ["--preset", "quick", "--set", "init.method=kmeans",
            "--set", "init.n_init=2", "--set", "dec.maxiter=200", "--set",
            "dec.update_interval=40", "--set", "dec.warmup_iterations=40"]


def _versions(data):
    """v1: 1,600 digits; v2: 400 more; v3: v2 with half its images replaced by noise."""
    x = (data.x * 255).round().astype(np.uint8).reshape(-1, 28, 28)
    y = data.y
    v1 = {"x": x[:1600], "y": y[:1600]}
    v2 = {"x": x, "y": y}
    rng = np.random.default_rng(4)
    noisy = x.copy()
    replaced = rng.choice(len(x), len(x) // 2, replace=False)
    noisy[replaced] = rng.integers(0, 256, size=(len(replaced), 28, 28), dtype=np.uint8)
    return v1, v2, {"x": noisy, "y": y}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    import boto3

    root = tmp_path_factory.mktemp("nightly")
    with s3_server(root) as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
        env.update(S3_TEST_CREDENTIALS, AWS_ENDPOINT_URL=url)
        client = boto3.client("s3", endpoint_url=url, **{
            "aws_access_key_id": "testing", "aws_secret_access_key": "testing",
            "region_name": "us-east-1"})
        client.create_bucket(Bucket=BUCKET)
        yield root, client, env


def _publish(client, arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    client.put_object(Bucket=BUCKET, Key=URI.split(f"{BUCKET}/", 1)[1], Body=buffer.getvalue())


def _night(root, env, night):
    summary_path = root / f"night-{night}.json"
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "run", *SETTINGS, "--retrain", "--dataset", URI,
         "--model-name", MODEL, "--work-dir", str(root / "work"), "--summary",
         str(summary_path)], capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(summary_path.read_text()), result.stdout


def test_four_nights_of_retraining_on_data_in_s3(store, mnist_subset):
    from mlflow import MlflowClient

    root, s3, env = store
    v1, v2, v3 = _versions(mnist_subset)

    def registry():
        client = MlflowClient(summaries[0]["tracking_uri"])
        versions = sorted(client.search_model_versions(f"name='{MODEL}'"),
                          key=lambda v: int(v.version))
        champion = client.get_model_version_by_alias(MODEL, "champion").version
        return client, [str(v.version) for v in versions], str(champion)

    summaries = []

    # Night 1: v1, no champion yet: pretrain from scratch and register the champion.
    _publish(s3, v1)
    first, out = _night(root, env, 1)
    summaries.append(first)
    client, versions, champion = registry()
    assert versions == ["1"] and champion == "1" and first["alias"] == "champion"
    assert first["promotion"]["decision"] == "promoted"
    run1 = client.get_run(first["mlflow_run_id"])
    assert run1.data.params["data.dataset"] == URI and run1.data.params["data.n_images"] == "1600"
    assert len(run1.data.params["data.source_sha256"]) == 64
    assert run1.data.tags["gate.decision"] == "promoted"
    assert "pretrain.warm_start_from" not in run1.data.params
    assert first["drift"] is None  # no champion to drift from
    tags = client.get_model_version(MODEL, "1").tags
    assert 0 < float(tags["drift.reference.median_confidence"]) <= 1

    # Night 2: the same objects. Nothing trained, nothing registered, in under a minute.
    second, out = _night(root, env, 2)
    summaries.append(second)
    client, versions, champion = registry()
    assert versions == ["1"] and champion == "1"
    assert second["promotion"]["decision"] == "skipped"
    assert "data unchanged since champion version 1" in second["promotion"]["reason"]
    assert "promotion       skipped: data unchanged" in out
    run2 = client.get_run(second["mlflow_run_id"])
    assert run2.data.metrics["dec_train.iterations"] == 0
    assert run2.data.params["pretrain.warm_start_from"] == f"{MODEL}/1"
    assert run2.data.tags["gate.decision"] == "skipped"
    # Nothing trains: each training step only hands the champion on. (Not the night's wall time:
    # six process starts take a minute on a busy 2-core machine, and that says nothing.)
    training = {k: second["phase_seconds"][k] for k in ("pretrain", "init_clusters", "dec_train")}
    assert max(training.values()) < 5, training

    # Night 3: v2 adds 400 images: new data. Warm start, a new version through the gate.
    _publish(s3, v2)
    third, out = _night(root, env, 3)
    summaries.append(third)
    client, versions, champion = registry()
    assert versions == ["1", "2"]
    run3 = client.get_run(third["mlflow_run_id"])
    assert run3.data.params["pretrain.warm_start_from"] == f"{MODEL}/1"
    assert run3.data.params["data.n_images"] == "2000"
    assert run3.data.params["data.source_sha256"] != run1.data.params["data.source_sha256"]
    assert run3.data.metrics["dec_train.iterations"] > 0
    assert third["promotion"]["champion_version"] == "1"
    assert third["promotion"]["decision"] in ("promoted", "challenger")
    assert champion == ("2" if third["promotion"]["decision"] == "promoted" else "1")
    assert run3.data.tags["gate.decision"] == third["promotion"]["decision"]
    # Drift in numbers, label-free, on the run, the gate's record and the version.
    drift3 = third["drift"]
    assert 0 <= drift3["low_confidence_share"] <= 1 and 0 <= drift3["cluster_size_tvd"] <= 1
    assert float(run3.data.tags["gate.drift.low_confidence_share"]) == pytest.approx(
        drift3["low_confidence_share"], abs=1e-4)
    assert "gate.drift.cluster_size_tvd" in client.get_model_version(MODEL, "2").tags
    assert "drift           " in out
    champion_before_night4 = champion

    # Night 4: v3, half of the images are noise. Trained, registered, but no champion.
    _publish(s3, v3)
    fourth, out = _night(root, env, 4)
    summaries.append(fourth)
    client, versions, champion = registry()
    assert versions == ["1", "2", "3"]
    assert fourth["promotion"]["decision"] == "challenger", fourth["promotion"]
    assert fourth["alias"] == "challenger" and champion == champion_before_night4
    assert str(client.get_model_version_by_alias(MODEL, "challenger").version) == "3"
    run4 = client.get_run(fourth["mlflow_run_id"])
    assert run4.data.tags["gate.decision"] == "challenger"
    # Both models score alike on noisy data; the champion's fall from its own registered score
    # is what shows the data went bad.
    assert "the data changed for the worse" in run4.data.tags["gate.reason"], \
        run4.data.tags["gate.reason"]
    # Added digits keep the champion's cluster sizes; noise piles into a few of its clusters.
    assert drift3["cluster_size_tvd"] < 0.1 < fourth["drift"]["cluster_size_tvd"]

    # One MLflow run per night, each under its own key (no display name involved).
    runs = [client.get_run(s["mlflow_run_id"]) for s in summaries]
    assert len({r.info.run_id for r in runs}) == 4
    assert len({r.data.tags["dec.pipeline_run"] for r in runs}) == 4
    print("\n".join(f"night {i}: {s['promotion']['decision']}: {s['promotion']['reason']} "
                    f"({s['wall_seconds']:.0f} s; drift {s['drift']})"
                    for i, s in enumerate(summaries, 1)))
