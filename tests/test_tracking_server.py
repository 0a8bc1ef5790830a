"""The pipeline against a real ``mlflow server`` on loopback: artifacts go through the server."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from servers import mlflow_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory):
    with mlflow_server(tmp_path_factory.mktemp("server")) as url:
        yield url


def test_pipeline_logs_and_registers_through_a_tracking_server(tracking_server, tmp_path,
                                                               mnist_subset):
    work = tmp_path / "work"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "--quiet", "run", "--preset", "quick",
         "--set", "data.n_samples=500", "--set", "pretrain.epochs=2", "--set", "dec.maxiter=40",
         "--set", "init.n_init=1", "--work-dir", str(work), "--mlflow-uri", tracking_server],
        capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "models:/dec-mnist@champion" in result.stdout
    # Nothing local is needed any more: the model comes back through the server alone.
    shutil.rmtree(work)
    code = ("import numpy as np, mlflow\n"
            "m = mlflow.pyfunc.load_model('models:/dec-mnist@champion')\n"
            "x = np.load('probe.npy')\n"
            "print(len(m.predict(x)))\n")
    images = (mnist_subset.x[:7] * 255).round().astype(np.uint8).reshape(7, 28, 28)
    np.save(tmp_path / "probe.npy", images)
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=tmp_path, timeout=300,
                            env={**env, "MLFLOW_TRACKING_URI": tracking_server})
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.strip().splitlines()[-1] == "7"
