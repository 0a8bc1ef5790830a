"""The registered model behind a real ``mlflow models serve``: JSON over HTTP, as clients see it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import register_small_dec
from servers import free_port, stop

pytestmark = pytest.mark.e2e

N_CLUSTERS = 4
START_TIMEOUT_S = 120


@dataclass
class Registered:
    tracking_uri: str
    model_uri: str
    mapping: dict[int, int]
    local_model: object  # the same version, loaded in this process with mlflow.pyfunc


@pytest.fixture(scope="module")
def registered_model(tmp_path_factory, mnist_subset) -> Registered:
    """A tiny DEC, trained in seconds, logged and registered as the register step does it."""
    import mlflow

    uri, model_uri, mapping = register_small_dec(tmp_path_factory.mktemp("registry"),
                                                 mnist_subset, "dec-serving-test", N_CLUSTERS)
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        local_model = mlflow.pyfunc.load_model(model_uri)
    finally:
        mlflow.set_tracking_uri(previous)
    return Registered(uri, model_uri, mapping, local_model)


@pytest.fixture(scope="module")
def server(registered_model, tmp_path_factory) -> str:
    """``mlflow models serve`` on a free loopback port; always stopped, whatever the tests do."""
    root = tmp_path_factory.mktemp("serve")
    port = free_port()
    bin_dir = Path(sys.executable).parent  # mlflow runs `uvicorn` from PATH
    env = {**os.environ, "MLFLOW_TRACKING_URI": registered_model.tracking_uri,
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    log_path = root / "server.log"
    with open(log_path, "wb") as log:
        # Its own process group: `mlflow models serve` starts uvicorn as a child, and both
        # must go when the tests end.
        process = subprocess.Popen(
            [str(bin_dir / "mlflow"), "models", "serve", "-m", registered_model.model_uri,
             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _pings(url):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-3000:]
                pytest.fail(f"mlflow models serve did not answer /ping within "
                            f"{START_TIMEOUT_S} s (exit status {process.poll()}):\n{tail}")
            time.sleep(0.5)
        yield url
    finally:
        stop(process)


def _pings(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _post(url: str, body: bytes | dict) -> tuple[int, dict | str]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(f"{url}/invocations", data=data, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


@pytest.fixture(scope="module")
def digits(mnist_subset) -> np.ndarray:
    """Sixteen real digits as uint8 N×28×28."""
    return np.rint(mnist_subset.x[300:316] * 255).astype(np.uint8).reshape(16, 28, 28)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(lambda d: {"inputs": d.tolist()}, id="uint8 Nx28x28"),
        pytest.param(lambda d: {"inputs": {"images": (d.reshape(len(d), -1) / 255).tolist()}},
                     id="named float Nx784"),
    ],
)
def test_the_server_answers_each_image_as_the_loaded_model_does(server, registered_model,
                                                                 digits, payload):
    status, body = _post(server, payload(digits))

    assert status == 200, body
    rows = body["predictions"]
    assert len(rows) == len(digits)
    assert all(set(row) == {"cluster", "label", "confidence"} for row in rows)
    clusters = np.array([row["cluster"] for row in rows])
    labels = np.array([row["label"] for row in rows])
    confidence = np.array([row["confidence"] for row in rows])
    assert ((clusters >= 0) & (clusters < N_CLUSTERS)).all()
    assert labels.tolist() == [registered_model.mapping.get(int(c), -1) for c in clusters]
    assert ((confidence >= 1 / N_CLUSTERS - 1e-6) & (confidence <= 1 + 1e-6)).all()

    expected = registered_model.local_model.predict(digits)
    np.testing.assert_array_equal(clusters, expected["cluster"])
    np.testing.assert_array_equal(labels, expected["label"])
    np.testing.assert_allclose(confidence, expected["confidence"], rtol=1e-6)


def test_a_malformed_batch_gets_a_clear_error_and_the_server_keeps_answering(server, digits):
    status, body = _post(server, {"inputs": np.zeros((2, 27, 27), np.uint8).tolist()})
    assert status == 400
    assert "each image must have 784 pixels, got 729" in body["message"]

    status, body = _post(server, b"{not json")
    assert 400 <= status < 500, body

    assert _pings(server)
    status, body = _post(server, {"inputs": digits[:3].tolist()})
    assert status == 200 and len(body["predictions"]) == 3


def test_dec_pipeline_serve_answers_without_the_venv_on_path(registered_model, digits,
                                                             tmp_path):
    """What the README tells users: ``.venv/bin/dec-pipeline serve``, venv not activated.

    ``mlflow models serve`` alone starts ``uvicorn`` from PATH and exits with status 127
    here; the command puts its own environment first.
    """
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PATH"] = "/usr/bin:/bin"  # no venv, as for a user who never activated it
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", "serve", "--model",
             registered_model.model_uri, "--port", str(port), "--mlflow-uri",
             registered_model.tracking_uri],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _pings(url):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"dec-pipeline serve did not answer (exit status "
                            f"{process.poll()}):\n{log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)
        status, body = _post(url, {"inputs": digits[:5].tolist()})
        assert status == 200 and len(body["predictions"]) == 5
        assert f"serving {registered_model.model_uri} at {url}/invocations" in \
            log_path.read_text()
    finally:
        stop(process)
