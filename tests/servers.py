"""Real processes for the tests: free ports, a clean environment, an ``mlflow server``, stopping.

Shared by every test that starts a server, so that each starts, waits and cleans up one way.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any ``MLFLOW_*`` setting of the caller's, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return {**env, "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def stop(process: subprocess.Popen) -> None:
    """Stop ``process`` and its process group (started with ``start_new_session=True``):
    politely, then for good."""
    for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue


def wait_until_up(url: str, process: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                pytest.fail(f"{url} did not come up:\n{tail}")
            time.sleep(0.3)


@contextmanager
def mlflow_server(root: Path, *extra_args: str, env: dict[str, str] | None = None
                  ) -> Iterator[str]:
    """A real ``mlflow server`` on loopback (SQLite store, proxied artifacts); yields its URL."""
    port = free_port()
    mlflow = os.path.join(os.path.dirname(sys.executable), "mlflow")
    log = root / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [mlflow, "server", "--backend-store-uri", f"sqlite:///{root}/server.db",
             "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1", *extra_args],
            stdout=out, stderr=subprocess.STDOUT, cwd=root, env=env or clean_env(),
            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/health", process, log)
        yield url
    finally:
        stop(process)


S3_TEST_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}
"""moto accepts any key; these are dummies so that boto never looks for real ones."""


@contextmanager
def s3_server(root: Path) -> Iterator[str]:
    """moto's S3-compatible server on loopback, started and stopped here; yields its URL.

    Clients reach it as they reach MinIO: ``AWS_ENDPOINT_URL`` set to the URL, and the dummy
    `S3_TEST_CREDENTIALS`.
    """
    port = free_port()
    log = root / "moto.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out, stderr=subprocess.STDOUT, cwd=root, env=clean_env(),
            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/moto-api/", process, log)
        yield url
    finally:
        stop(process)
