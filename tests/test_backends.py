"""Packages for each KFP backend target, held to what that backend accepts and does.

``kfp_backend`` stands in for the backend: the fields its protos know, the way it resolves a
task's inputs (``{{workflow.uid}}``, then the driver's placeholders), and the executor command
the launcher runs.
"""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import yaml
from kfp import dsl
from kfp_backend import TARGET_COVERS, inputs_as_resolved, refused_fields, run_executor
from mlflow import MlflowClient

from dec_lib import steps
from dec_lib.errors import ConfigError
from dec_lib.runtime import events
from pipelines import backends
from pipelines.cli import main
from pipelines.dag import MLFLOW_SECRET_KEYS

EVERY_OPTION = ["--gpus", "2", "--gpu-node-selector", "pool=gpu", "--gpu-toleration", "spot",
                "--dec-on-gpu", "--checkpoint-pvc", "dec-checkpoints", "--no-cache"]
"""Every Kubernetes setting the package can carry: the most fields a backend must accept."""


def _compile(tmp_path, capsys, *options) -> tuple[dict, dict, str]:
    path = tmp_path / "dec.yaml"
    assert main(["compile", "--output", str(path), *options]) == 0
    spec, platform = yaml.safe_load_all(path.read_text())
    return spec, platform, capsys.readouterr().out


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """The package for each target, with every option, and what compile printed."""
    compiled = {}
    for target in backends.BACKENDS:
        path = tmp_path_factory.mktemp(f"kfp-{target}") / "dec.yaml"
        assert main(["compile", "--output", str(path), "--kfp-backend", target,
                     *EVERY_OPTION]) == 0
        compiled[target] = tuple(yaml.safe_load_all(path.read_text()))
    return compiled


@pytest.mark.parametrize("target", list(backends.BACKENDS))
def test_each_targets_package_uses_only_fields_its_backends_accept(packages, target):
    _, platform = packages[target]
    for version in TARGET_COVERS[target]:
        assert refused_fields(platform, version) == [], version


def test_kfps_own_package_is_what_older_backends_refuse(packages):
    # Without the rewrite, 2.14 refuses ``optional`` and 2.2's driver the name parameters:
    # the check above would catch a package that forgot them.
    _, platform = packages["2.15"]
    assert any(path.endswith(".optional") for path in refused_fields(platform, "2.14"))
    refused = refused_fields(platform, "2.2")
    assert any(path.endswith(".secretNameParameter") for path in refused)
    assert any(path.endswith(".pvcNameParameter") for path in refused)


def test_older_targets_keep_the_secret_and_the_volume_by_plain_name(packages):
    _, platform = packages["2.2"]
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for config in executors.values():
        (secret,) = config["secretAsEnv"]
        assert secret["secretName"] == "mlflow-credentials"
        assert {k["secretKey"] for k in secret["keyToEnv"]} == set(MLFLOW_SECRET_KEYS)
    assert executors["exec-pretrain"]["pvcMount"] == [
        {"constant": "dec-checkpoints", "mountPath": "/mnt/dec-checkpoints"}]


@pytest.mark.parametrize(("target", "required"), [("2.15", False), ("2.5", True),
                                                    ("2.2", True)])
def test_compile_says_which_secret_keys_a_target_requires(tmp_path, capsys, target, required):
    _, _, out = _compile(tmp_path, capsys, "--kfp-backend", target)
    assert backends.BACKENDS[target].covers in out
    assert all((key in out) is required for key in MLFLOW_SECRET_KEYS)


@pytest.mark.parametrize("target", list(backends.BACKENDS))
def test_the_package_names_the_backends_it_runs_on(packages, target):
    spec, _ = packages[target]
    assert spec["pipelineInfo"]["description"].endswith(
        f"Runs on {backends.BACKENDS[target].covers}.")


def test_the_run_key_constant_is_kfps_job_id_placeholder():
    assert backends.PIPELINE_JOB_ID == dsl.PIPELINE_JOB_ID_PLACEHOLDER


def test_an_unknown_target_is_one_error_naming_the_targets():
    with pytest.raises(ConfigError, match=r"2\.15, 2\.5, 2\.2"):
        backends.backend("2.0")


# ------------------------------------------------------------- the run key, as the backend does it

@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "images.npz"
    np.savez(path, x=np.random.default_rng(0).random((40, 8, 8), dtype=np.float32))
    return path


def _run_ingest(spec, backend, run_id, data_file, uri, workdir, display_name=""):
    """The ingest executor of one pipeline run, its inputs resolved as ``backend`` does."""
    parameters = inputs_as_resolved(spec, "ingest", backend=backend, run_id=run_id,
                                    display_name=display_name,
                                    arguments={"data": {"dataset": str(data_file)},
                                               "tracking_uri": uri})
    process, output = run_executor(spec, "ingest", parameters, workdir)
    assert process.returncode == 0, process.stderr[-3000:]
    return output["artifacts"]["dataset"]["artifacts"][0]["metadata"]["tracking"]


@pytest.mark.parametrize(("target", "backend"), [("2.15", "2.15"), ("2.2", "2.2")])
def test_two_recurring_runs_without_a_display_name_get_two_mlflow_runs(
        packages, target, backend, data_file, tmp_path):
    spec, _ = packages[target]  # uncached: ingest takes the run key
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    one = _run_ingest(spec, backend, first, data_file, uri, tmp_path / "one")
    two = _run_ingest(spec, backend, second, data_file, uri, tmp_path / "two")
    assert one["mlflow_run_id"] != two["mlflow_run_id"]
    client = MlflowClient(uri)
    for tracked, run_id in ((one, first), (two, second)):
        assert client.get_run(tracked["mlflow_run_id"]).data.tags["dec.pipeline_run"] == run_id


def test_a_retried_step_finds_its_runs_mlflow_run_whatever_the_display_name(
        packages, data_file, tmp_path):
    spec, _ = packages["2.15"]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id, name = str(uuid.uuid4()), """nightly 'retrain' "dec" """
    parameters = inputs_as_resolved(spec, "ingest", backend="2.15", run_id=run_id,
                                    display_name=name,
                                    arguments={"data": {"dataset": str(data_file)},
                                               "tracking_uri": uri})
    ctx = steps.TrackingContext(parameters["run_key"], uri, parameters["experiment"])
    data = parameters["data"]
    first = steps.ingest(data, 0, str(tmp_path / "a.npz"), ctx)
    retried = steps.ingest(data, 0, str(tmp_path / "b.npz"), ctx)
    assert first["tracking"]["mlflow_run_id"] == retried["tracking"]["mlflow_run_id"]


def test_a_package_for_a_newer_backend_fails_on_an_old_one_with_one_line(
        packages, data_file, tmp_path, capsys):
    spec, _ = packages["2.15"]
    parameters = inputs_as_resolved(spec, "ingest", backend="2.2", run_id=str(uuid.uuid4()),
                                    arguments={"data": {"dataset": str(data_file)}})
    assert parameters["run_key"] == dsl.PIPELINE_JOB_ID_PLACEHOLDER  # 2.2 leaves it alone
    with pytest.raises(SystemExit) as exit_:
        steps.ingest(parameters["data"], 0, str(tmp_path / "x.npz"), steps.TrackingContext(
            parameters["run_key"], f"sqlite:///{tmp_path / 'mlflow.db'}"))
    assert exit_.value.code == 1
    reported = map(events.parse, capsys.readouterr().err.splitlines())
    (line,) = [e.message for e in reported if e and e.kind == events.ERROR]
    assert "--kfp-backend 2.2" in line and "unresolved" in line
