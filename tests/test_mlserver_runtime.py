"""The KServe runtime's server, run here: ``mlserver start`` on a registered version's files.

The server runs from the serving lock (``requirements-serving.lock``) in its own virtual
environment, as in ``docker/Dockerfile.serving``: MLServer pins other FastAPI and Starlette
versions than MLflow's server, so it cannot share the project's environment. It is configured
the way ``docker/kserve-servingruntime.yaml`` configures it on a cluster (``MLSERVER_MODEL_*``
variables, the version's files as the models folder) and answers the Open Inference Protocol
(V2) at ``/v2/models/<name>/infer``.

Make the environment once (``DEC_SERVING_VENV`` names another place):

    python3.11 -m venv /tmp/mlserver-venv
    /tmp/mlserver-venv/bin/pip install --require-hashes --no-deps -r requirements-serving.lock
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import register_small_dec
from servers import clean_env, free_port, stop

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
SERVING_VENV = Path(os.environ.get("DEC_SERVING_VENV", "/tmp/mlserver-venv"))
MLSERVER = SERVING_VENV / "bin" / "mlserver"
MODEL_NAME = "dec-mnist"
N_CLUSTERS = 4
START_TIMEOUT_S = 180

if not MLSERVER.exists():
    pytest.skip(f"no MLServer environment at {SERVING_VENV} (make it from "
                "requirements-serving.lock, see this module's docstring)",
                allow_module_level=True)


def mlserver_env(model_dir: Path, http_port: int) -> dict[str, str]:
    """The environment docker/kserve-servingruntime.yaml gives the container, with free
    loopback ports and this machine's model folder."""
    import yaml

    runtime = yaml.safe_load((ROOT / "docker" / "kserve-servingruntime.yaml").read_text())
    env = {e["name"]: e["value"] for e in runtime["spec"]["containers"][0]["env"]}
    env.update(MLSERVER_HOST="127.0.0.1", MLSERVER_HTTP_PORT=str(http_port),
               MLSERVER_GRPC_PORT=str(free_port()), MLSERVER_METRICS_PORT=str(free_port()),
               MLSERVER_MODEL_NAME=MODEL_NAME, MLSERVER_MODEL_URI=str(model_dir))
    # The image has dec_lib (the runtime class) on its path, as this checkout does.
    return clean_env(PYTHONPATH=str(ROOT), **env)


@pytest.fixture(scope="module")
def version_files(tmp_path_factory, mnist_subset):
    """A registered version's files, as KServe's storage initializer leaves them, and the
    same version loaded in this process."""
    import mlflow

    root = tmp_path_factory.mktemp("registry")
    uri, model_uri, _ = register_small_dec(root, mnist_subset, MODEL_NAME, N_CLUSTERS)
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        files = Path(mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{MODEL_NAME}/1", dst_path=str(root / "mnt-models")))
        local = mlflow.pyfunc.load_model(model_uri)
    finally:
        mlflow.set_tracking_uri(previous)
    assert (files / "MLmodel").is_file()
    return files, local


@pytest.fixture(scope="module")
def server(version_files, tmp_path_factory):
    files, _ = version_files
    root = tmp_path_factory.mktemp("mlserver")
    port = free_port()
    log_path = root / "mlserver.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([str(MLSERVER), "start", str(files)], stdout=log,
                                   stderr=subprocess.STDOUT, cwd=root,
                                   env=mlserver_env(files, port), start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while _get(f"{url}/v2/models/{MODEL_NAME}/ready") != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlserver did not load {MODEL_NAME} within {START_TIMEOUT_S} s:\n"
                            + log_path.read_text(errors="replace")[-3000:])
            time.sleep(0.5)
        yield url
    finally:
        stop(process)


def _get(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def infer(url: str, body: dict | bytes) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(f"{url}/v2/models/{MODEL_NAME}/infer", data=data,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def v2_images(images: np.ndarray) -> dict:
    datatype = {"uint8": "UINT8", "float32": "FP32"}[images.dtype.name]
    return {"inputs": [{"name": "images", "shape": list(images.shape), "datatype": datatype,
                        "data": images.ravel().tolist()}]}


@pytest.fixture(scope="module")
def digits(mnist_subset) -> np.ndarray:
    return np.rint(mnist_subset.x[300:364] * 255).astype(np.uint8).reshape(64, 28, 28)


@pytest.mark.parametrize("form", ["uint8 Nx28x28", "float Nx784"])
def test_a_batch_of_digits_is_answered_as_the_registered_model_answers(server, version_files,
                                                                       digits, form):
    _, local = version_files
    images = digits if form.startswith("uint8") else (digits.reshape(64, -1) / 255).astype(
        np.float32)
    status, body = infer(server, v2_images(images))
    assert status == 200, body
    outputs = {o["name"]: o for o in body["outputs"]}
    assert set(outputs) == {"cluster", "label", "confidence"}
    expected = local.predict(digits)
    np.testing.assert_array_equal(outputs["cluster"]["data"], expected["cluster"])
    np.testing.assert_array_equal(outputs["label"]["data"], expected["label"])
    np.testing.assert_allclose(outputs["confidence"]["data"], expected["confidence"],
                               rtol=1e-5)
    assert outputs["cluster"]["shape"][0] == 64


def test_a_malformed_request_is_a_4xx_that_says_why_and_the_server_keeps_answering(server,
                                                                                   digits):
    status, body = infer(server, v2_images(np.zeros((2, 27, 27), np.uint8)))
    assert status == 400 and "each image must have 784 pixels, got 729" in body["error"]

    too_short = v2_images(digits[:2])
    too_short["inputs"][0]["data"] = too_short["inputs"][0]["data"][:100]
    status, body = infer(server, too_short)
    assert 400 <= status < 500 and "malformed request" in body["error"], body

    status, body = infer(server, b"{not json")
    assert 400 <= status < 500, body

    status, body = infer(server, v2_images(digits[:3]))
    assert status == 200 and len(body["outputs"][0]["data"]) == 3
