"""MLflow credentials in the environment never reach a file, a log, MLflow or the terminal.

A small real run (kfp.local, SQLite store) with MLFLOW_TRACKING_USERNAME, _PASSWORD and _TOKEN
set to fresh random values, which SQLite ignores; then every byte it left behind is searched
for them: the work dir (logs, MLflow's database, artifacts, KFP outputs, checkpoints), the
compiled pipeline, the run's MLflow parameters and tags, and everything printed.
"""

from __future__ import annotations

import base64
import os
import secrets
import socket
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e

CLI = [sys.executable, "-m", "pipelines.cli"]
SMALL = ["--preset", "quick", "--set", "data.n_samples=600", "--set", "pretrain.epochs=3",
         "--set", "dec.maxiter=60", "--set", "dec.update_interval=20", "--set", "init.n_init=2"]


@pytest.fixture(scope="module")
def credentials() -> dict[str, str]:
    return {"MLFLOW_TRACKING_USERNAME": f"user-{secrets.token_hex(8)}",
            "MLFLOW_TRACKING_PASSWORD": f"pw-{secrets.token_urlsafe(18)}",
            "MLFLOW_TRACKING_TOKEN": f"tok-{secrets.token_urlsafe(24)}"}


def _needles(credentials: dict[str, str]) -> dict[str, bytes]:
    """Each secret as it could be written: as is, and inside a basic-auth header.

    The user name is not one: MLflow records it, as it should, as the author of the logged model
    (the ``mlflow.user`` tag), the way a shared server shows who did what.
    """
    user, password = (credentials["MLFLOW_TRACKING_USERNAME"],
                      credentials["MLFLOW_TRACKING_PASSWORD"])
    return {"password": password.encode(), "token": credentials["MLFLOW_TRACKING_TOKEN"].encode(),
            "basic-auth header": base64.b64encode(f"{user}:{password}".encode())}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return {**env, "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def _found_in(data: bytes, needles: dict[str, bytes]) -> list[str]:
    return [name for name, needle in needles.items() if needle in data]


@pytest.fixture(scope="module")
def secret_run(tmp_path_factory, credentials):
    work = tmp_path_factory.mktemp("secret-run")
    run = subprocess.run([*CLI, "run", *SMALL, "--work-dir", str(work / "work"),
                          "--summary", str(work / "summary.json")],
                         capture_output=True, text=True, timeout=600, env=_env(**credentials))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    compiled = work / "pipeline.yaml"
    compile_ = subprocess.run([*CLI, "compile", *SMALL, "--output", str(compiled)],
                              capture_output=True, text=True, timeout=300,
                              env=_env(**credentials))
    assert compile_.returncode == 0, compile_.stderr[-3000:]
    return work, run, compile_, compiled


def test_no_file_the_run_wrote_holds_a_secret(secret_run, credentials):
    work, _, _, _ = secret_run
    needles = _needles(credentials)
    files = [path for path in (work / "work").rglob("*") if path.is_file()]
    # What must be there, so that the search means something.
    names = {path.name for path in files}
    assert "mlflow.db" in names and any(path.suffix == ".log" for path in files)
    assert any(path.name == "MLmodel" for path in files)
    leaks = {str(path): found for path in files if (found := _found_in(path.read_bytes(),
                                                                        needles))}
    assert leaks == {}


def test_the_compiled_pipeline_names_the_secret_but_holds_no_value(secret_run, credentials):
    _, _, compile_, compiled = secret_run
    text = compiled.read_bytes()
    assert b"mlflow-credentials" in text and b"MLFLOW_TRACKING_PASSWORD" in text
    assert _found_in(text, _needles(credentials)) == []
    assert _found_in((compile_.stdout + compile_.stderr).encode(), _needles(credentials)) == []


def test_mlflow_params_tags_and_printed_output_hold_no_secret(secret_run, credentials):
    import json

    from mlflow import MlflowClient

    work, run, _, _ = secret_run
    summary = json.loads((work / "summary.json").read_text())
    client = MlflowClient(summary["tracking_uri"])
    recorded = client.get_run(summary["mlflow_run_id"]).data
    version = client.get_model_version_by_alias(summary["model_name"], "champion")
    values = json.dumps([recorded.params, recorded.tags, version.tags,
                         summary]).encode()
    assert recorded.params and recorded.tags  # there is something to search
    needles = _needles(credentials)
    assert _found_in(values, needles) == []
    assert _found_in((run.stdout + run.stderr).encode(), needles) == []


def test_a_password_inside_the_tracking_uri_is_not_printed(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens: the run fails at its first step
    password = f"pw-{secrets.token_urlsafe(18)}"
    run = subprocess.run(
        [*CLI, "run", *SMALL, "--work-dir", str(tmp_path / "work"), "--mlflow-uri",
         f"http://dec-user:{password}@127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=300,
        env=_env(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0"))  # short retries: it fails either way
    assert run.returncode == 1
    printed = run.stdout + run.stderr
    logs = "".join(path.read_text(errors="replace")
                   for path in (tmp_path / "work").rglob("*.log"))
    assert "127.0.0.1" in printed  # the failure is reported, and names the server
    assert password not in printed and password not in logs
