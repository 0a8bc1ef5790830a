"""The model registry under concurrent and repeated registration, with real processes.

Two processes run the pipeline's register step for one model name at the same moment, against a
real ``mlflow server`` and against one SQLite file; and one pipeline run's register step runs
twice, as when a step is retried. No version may be lost or doubled, and ``champion`` must name
one version that was told it is the champion.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from dec_lib import steps, tracking

pytestmark = pytest.mark.e2e

PROCESSES = 2
EACH = 3
"""Registrations per process, one after the other: more chances for the two to overlap."""

REGISTER_PROCESS = """
import json, sys, time
from pathlib import Path

import keras, mlflow  # everything imported before the start line, so both start together
from dec_lib import model_io, serving, steps

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return {**env, "TF_CPP_MIN_LOG_LEVEL": "2"}


def _stop(process: subprocess.Popen) -> None:
    for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory):
    """A real ``mlflow server`` on loopback (SQLite store, proxied artifacts)."""
    root = tmp_path_factory.mktemp("integrity-server")
    port = _free_port()
    mlflow = os.path.join(os.path.dirname(sys.executable), "mlflow")
    with open(root / "server.log", "wb") as log:
        process = subprocess.Popen(
            [mlflow, "server", "--backend-store-uri", f"sqlite:///{root}/server.db",
             "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, cwd=root, env=_clean_env(),
            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    tail = (root / "server.log").read_text(errors="replace")[-2000:]
                    pytest.fail(f"mlflow server did not start:\n{tail}")
                time.sleep(0.3)
        yield url
    finally:
        _stop(process)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A small DEC model and the report the evaluate step would write for it."""
    from dec_lib.autoencoder import build_autoencoder, encoder_of
    from dec_lib.config import AutoencoderConfig
    from dec_lib.model_io import save_model
    from dec_lib.seeding import seed_everything
    from dec_lib.training import build_dec_model

    root = tmp_path_factory.mktemp("tiny-model")
    seed_everything(0)
    autoencoder = build_autoencoder(784, AutoencoderConfig(hidden_dims=[32], embedding_dim=4))
    model = build_dec_model(encoder_of(autoencoder), np.eye(4, dtype=np.float32)[:3], alpha=1.0)
    save_model(model, root / "dec" / "dec.keras")
    report = root / "report.json"
    report.write_text(json.dumps({"metrics": {"acc": 0.5}, "mapping": {"0": 1, "1": 2, "2": 3},
                                  "image_shape": [28, 28], "fingerprint": "0123456789abcdef"}))
    return root / "dec", report


def _register_at_once(uri: str, name: str, model, root: Path) -> list[list[dict]]:
    """PROCESSES processes, each registering EACH versions of ``name``, released together."""
    model_dir, report = model
    start = root / "start"
    processes = [subprocess.Popen(
        [sys.executable, "-c", REGISTER_PROCESS, str(model_dir), str(report), name, uri,
         f"p{i}", str(EACH), str(start)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_clean_env(),
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
            _stop(process)


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
