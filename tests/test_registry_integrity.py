"""The model registry under concurrent and repeated registration, with real processes.

Two processes run the pipeline's register step for one model name at the same moment, against a
real ``mlflow server`` and against one SQLite file; and one pipeline run's register step runs
twice, as when a step is retried. No version may be lost or doubled, and ``champion`` must name
one version that was told it is the champion.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from servers import clean_env, mlflow_server, stop

from dec_lib import steps
from dec_lib.mlops import tracking

pytestmark = pytest.mark.e2e

PROCESSES = 2
EACH = 3
"""Registrations per process, one after the other: more chances for the two to overlap."""

REGISTER_PROCESS = """
import json, sys, time
from pathlib import Path

import keras, mlflow  # everything imported before the start line, so both start together
from dec_lib.model import saving as model_io
from dec_lib.mlops import champion_gate, registry
from dec_lib import steps

model_dir, report, name, uri, tag, count, start = sys.argv[1:8]
while not Path(start).exists():
    time.sleep(0.005)
results = []
for i in range(int(count)):
    key = f"{tag}-{i}"
    result = steps.register(model_dir, report, name, str(Path(start).parent / key),
                            steps.TrackingContext(key, uri, "integrity"))
    results.append({k: result[k] for k in ("model_version", "alias", "mlflow_run_id")})
print(json.dumps(results))
"""


def _register_at_once(uri: str, name: str, model, root: Path) -> list[list[dict]]:
    """PROCESSES processes, each registering EACH versions of ``name``, released together."""
    model_dir, report = model
    start = root / "start"
    processes = [subprocess.Popen(
        [sys.executable, "-c", REGISTER_PROCESS, str(model_dir), str(report), name, uri,
         f"p{i}", str(EACH), str(start)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(),
        start_new_session=True) for i in range(PROCESSES)]
    try:
        time.sleep(8)  # their imports; the start line waits for the slower one anyway
        start.touch()
        results = []
        for process in processes:
            out, err = process.communicate(timeout=240)
            assert process.returncode == 0, err[-3000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for process in processes:
            stop(process)


def _check_nothing_lost(uri: str, name: str, results: list[list[dict]]) -> dict:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    reported = [r for process in results for r in process]
    versions = {str(v.version): v for v in client.search_model_versions(f"name='{name}'")}

    assert len(reported) == PROCESSES * EACH
    assert len({r["mlflow_run_id"] for r in reported}) == len(reported)
    # Every registration has its own version, each tagged with the run that made it: none lost,
    # none shared, none doubled.
    assert sorted(versions, key=int) == sorted((r["model_version"] for r in reported), key=int)
    for r in reported:
        assert versions[r["model_version"]].tags["mlflow_run_id"] == r["mlflow_run_id"]
    champion = client.get_registered_model(name).aliases["champion"]
    claims = [r["model_version"] for r in reported if r["alias"] == "champion"]
    assert str(champion) in claims  # the champion is a version that was told so
    return {"versions": len(versions), "champion": str(champion), "claims": claims}


def test_two_processes_registering_at_once_through_a_server_lose_no_version(
        tracking_server, tiny_model, tmp_path):
    results = _register_at_once(tracking_server, "concurrent-server", tiny_model, tmp_path)
    outcome = _check_nothing_lost(tracking_server, "concurrent-server", results)
    print(f"server: {outcome}")


def test_two_processes_registering_at_once_in_one_sqlite_file_lose_no_version(
        tiny_model, tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # The store is made first: two processes creating one SQLite schema at once is another test.
    MlflowClient(uri).create_experiment("integrity",
                                        artifact_location=tracking.artifact_root_for(uri))
    results = _register_at_once(uri, "concurrent-sqlite", tiny_model, tmp_path)
    outcome = _check_nothing_lost(uri, "concurrent-sqlite", results)
    print(f"sqlite: {outcome}")


@pytest.fixture()
def register_twice(tracking_server, tiny_model, tmp_path, monkeypatch):
    """``register_twice(name)``: one pipeline run's register step, run twice (a retried step)."""
    import mlflow

    for variable in list(os.environ):
        if variable.startswith("MLFLOW_"):
            monkeypatch.delenv(variable)
    previous = mlflow.get_tracking_uri()
    model_dir, report = tiny_model

    def run(name: str) -> tuple[dict, dict]:
        ctx = steps.TrackingContext(f"retried-{name}", tracking_server, "integrity")
        first = steps.register(str(model_dir), str(report), name, str(tmp_path / "a"), ctx)
        again = steps.register(str(model_dir), str(report), name, str(tmp_path / "b"), ctx)
        return first, again

    yield run
    mlflow.set_tracking_uri(previous)


def test_a_retried_register_step_does_not_register_a_second_version(register_twice,
                                                                    tracking_server):
    from mlflow import MlflowClient

    first, again = register_twice("retried")
    assert again["model_version"] == first["model_version"] == "1"
    assert len(MlflowClient(tracking_server).search_model_versions("name='retried'")) == 1


def test_a_retried_register_step_keeps_the_alias_it_gave_and_reports_it(register_twice,
                                                                         tracking_server):
    from mlflow import MlflowClient

    first, again = register_twice("retried-alias")
    assert first["alias"] == "champion"
    aliases = MlflowClient(tracking_server).get_registered_model("retried-alias").aliases
    assert {alias: str(version) for alias, version in aliases.items()} == {"champion": "1"}
    assert again["alias"] == "champion"


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory):
    with mlflow_server(tmp_path_factory.mktemp("integrity-server")) as url:
        yield url
