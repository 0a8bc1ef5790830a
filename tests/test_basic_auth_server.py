"""``dec_lib.mlops.tracking`` against a real ``mlflow server --app-name basic-auth`` on loopback.

On a cluster the steps get MLFLOW_TRACKING_USERNAME/PASSWORD from a Kubernetes Secret; here the
same variables point the project's own tracking code at a server that checks them.
"""

import logging
import os
import secrets
import subprocess
import sys
import time

import pytest
from servers import free_port, wait_until_up

from dec_lib.errors import TrackingError
from dec_lib.mlops import tracking

pytestmark = pytest.mark.e2e
# The basic-auth app needs mlflow's "auth" extra (Flask-WTF), which the dev lock does not pin yet.
pytest.importorskip("flask_wtf", reason="mlflow server --app-name basic-auth needs Flask-WTF "
                    "(pip install 'mlflow[auth]')")

ADMIN = "dec-admin"


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    """The server's URL and its admin password (fresh per test session, never a fixed one)."""
    root = tmp_path_factory.mktemp("auth-server")
    password = secrets.token_urlsafe(18)
    config = root / "basic_auth.ini"
    config.write_text("[mlflow]\n"
                      "default_permission = READ\n"
                      f"database_uri = sqlite:///{root}/auth.db\n"
                      f"admin_username = {ADMIN}\n"
                      f"admin_password = {password}\n"
                      "authorization_function = "
                      "mlflow.server.auth:authenticate_request_basic_auth\n"
                      # Checks each password hash once a minute, not on every request.
                      "auth_cache_ttl_seconds = 60\n")
    port = free_port()
    mlflow = os.path.join(os.path.dirname(sys.executable), "mlflow")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    log = open(root / "server.log", "wb")  # noqa: SIM115 (open while the server runs)
    process = subprocess.Popen(
        [mlflow, "server", "--app-name", "basic-auth",
         "--backend-store-uri", f"sqlite:///{root}/server.db",
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, cwd=root,
        env={**env, "MLFLOW_AUTH_CONFIG_PATH": str(config),
             "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16)})
    url = f"http://127.0.0.1:{port}"
    try:
        # The shared deadline: 45 s of its own was too short on 2 busy cores (CI, 2026-12-07).
        wait_until_up(f"{url}/health", process, root / "server.log")
        yield url, password
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture()
def no_mlflow_environment(monkeypatch):
    for name in list(os.environ):
        if name.startswith("MLFLOW_"):
            monkeypatch.delenv(name)


def test_the_right_credentials_create_a_run_and_log_to_it(auth_server, no_mlflow_environment,
                                                          monkeypatch, caplog, capfd):
    import mlflow

    url, password = auth_server
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    caplog.set_level(logging.DEBUG)
    with tracking.step_run("auth-run-1", "probe", tracking_uri=url, experiment="auth") as run:
        tracking.log_metrics({"probe.value": 0.5}, step=1)
    # A later step (a later pod) finds the same run by its key.
    experiment_id = tracking.configure(url, "auth")
    assert tracking.find_or_create_run("auth-run-1", experiment_id) == run.info.run_id
    logged = mlflow.MlflowClient(url).get_run(run.info.run_id).data.metrics
    assert logged["probe.value"] == 0.5 and "phase_seconds.probe" in logged
    out, err = capfd.readouterr()
    assert password not in caplog.text + out + err


def test_a_wrong_password_is_one_clear_error_at_once(auth_server, no_mlflow_environment,
                                                      monkeypatch, caplog, capfd):
    url, password = auth_server
    wrong = password[::-1] + "-wrong"
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", wrong)
    caplog.set_level(logging.DEBUG)
    started = time.perf_counter()
    with pytest.raises(TrackingError) as error, tracking.step_run(
            "auth-run-2", "probe", tracking_uri=url, experiment="auth"):
        pytest.fail("a step ran without valid credentials")
    # Refused credentials are not a server hiccup: no backoff, no retries.
    assert time.perf_counter() - started < 10
    assert "retrying" not in caplog.text
    message = str(error.value)
    assert message.startswith("MLflow: open experiment 'auth' failed") and "401" in message
    out, err = capfd.readouterr()
    for secret in (password, wrong):
        assert secret not in caplog.text + out + err + message
