"""Faults injected into real processes and a real tracking server, and what the user gets.

(a) pretraining killed with SIGKILL mid-epoch, then rerun; (b) a real ``mlflow server`` behind a
fault-injecting proxy (503s, connections dropped or refused) at start, mid-step and at
registration; (c) a work dir that cannot be written, or a file system that fills up.

Where a test keeps retries short it says so: MLflow's own backoff factor and jitter set to 0 and
``with_retries`` starting at 0.05 s, so that a permanent fault fails in about a second. The
shipped budget is measured on its own, by the real CLI against a server that is not there.
"""

from __future__ import annotations

import functools
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from servers import clean_env, free_port, mlflow_server, stop

from dec_lib import steps
from dec_lib.data.datasets import Dataset, save_dataset
from dec_lib.mlops import tracking
from dec_lib.runtime import events

CLI = [sys.executable, "-m", "pipelines.cli"]
SMALL = ["--preset", "quick", "--set", "data.n_samples=600", "--set", "pretrain.epochs=3",
         "--set", "dec.maxiter=60", "--set", "dec.update_interval=20", "--set", "init.n_init=2"]


def _first(dataset: Dataset, n: int) -> Dataset:
    return Dataset(x=dataset.x[:n], y=dataset.y[:n], image_shape=dataset.image_shape,
                   source=dataset.source)


# --- the shipped retry budget, measured while the other tests run -------------------------------


@pytest.fixture(scope="module", autouse=True)
def unreachable_server_run(tmp_path_factory):
    """``dec-pipeline run`` against a tracking server that is not there, with every retry
    setting as shipped; started first because it spends its time waiting, and checked last."""
    work = tmp_path_factory.mktemp("unreachable")
    port = free_port()  # nothing listens there: connections are refused
    started = time.monotonic()
    process = subprocess.Popen(
        [*CLI, "run", *SMALL, "--work-dir", str(work), "--mlflow-uri",
         f"http://127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(),
        start_new_session=True)
    result: dict = {"port": port}

    def wait() -> None:  # in a thread, so that the time taken is the process's own
        result["stdout"], result["stderr"] = process.communicate()
        result["seconds"] = time.monotonic() - started
        result["returncode"] = process.returncode

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()

    def finish() -> dict:
        waiter.join(timeout=max(0.0, started + 240 - time.monotonic()))
        if waiter.is_alive():
            stop(process)
            pytest.fail("dec-pipeline run did not give up on an unreachable server in 4 min")
        return result

    yield finish
    stop(process)


# --- (a) pretraining killed mid-epoch ----------------------------------------------------------

EPOCHS = 6
PRETRAIN = {"epochs": EPOCHS, "batch_size": 16, "optimizer": "adam", "learning_rate": 1e-3,
            "checkpoint_every": 1, "precision": "float32"}
"""The default d-500-500-2000-10 autoencoder on 400 images: about half a second an epoch here,
long enough to be killed in the middle of one."""

PRETRAIN_PROCESS = """
import json, sys
from dec_lib import steps
dataset, out, checkpoints, uri, pretrain = sys.argv[1:6]
ctx = steps.TrackingContext("", uri, "faults")
meta = steps.pretrain(dataset, {}, json.loads(pretrain), 0, out, ctx, checkpoint_root=checkpoints)
print(json.dumps(meta))
"""


def _pretrain_process(dataset: Path, root: Path) -> subprocess.Popen:
    """The pipeline's pretrain step in a process of its own, as a pod runs it."""
    root.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-c", PRETRAIN_PROCESS, str(dataset), str(root / "out"),
         str(root / "checkpoints"), f"sqlite:///{root / 'mlflow.db'}", json.dumps(PRETRAIN)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(),
        start_new_session=True)


def _finished(process: subprocess.Popen, timeout: float = 180) -> dict:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(process)
        raise
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def _weights(path: Path) -> list[np.ndarray]:
    from dec_lib.model.saving import load_model

    return load_model(path).get_weights()


@pytest.mark.e2e
def test_pretraining_killed_mid_epoch_resumes_from_its_checkpoint_to_the_same_model(
        tmp_path, mnist_subset):
    from mlflow import MlflowClient

    dataset = tmp_path / "data.npz"
    save_dataset(_first(mnist_subset, 400), dataset)
    straight = _pretrain_process(dataset, tmp_path / "straight")
    victim = _pretrain_process(dataset, tmp_path / "killed")
    try:
        deadline = time.monotonic() + 150
        while True:  # until the second checkpoint is complete: state.json is written last
            states = list((tmp_path / "killed" / "checkpoints").glob("pretrain-*/state.json"))
            if states and json.loads(states[0].read_text())["epoch"] >= 2:
                break
            assert victim.poll() is None, "pretraining ended before it could be killed"
            assert time.monotonic() < deadline, "no second checkpoint within 150 s"
            time.sleep(0.02)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
    finally:
        stop(victim)
    assert victim.returncode == -signal.SIGKILL
    killed_at = json.loads(states[0].read_text())["epoch"]
    assert 2 <= killed_at < EPOCHS  # killed with epochs still to go
    assert not (tmp_path / "killed" / "out" / "autoencoder.keras").exists()

    resumed = _finished(_pretrain_process(dataset, tmp_path / "killed"))
    reference = _finished(straight)

    assert reference["resumed_from_epoch"] == 0
    assert resumed["resumed_from_epoch"] == killed_at
    assert resumed["final_loss"] == pytest.approx(reference["final_loss"], rel=1e-5)
    for ours, theirs in zip(_weights(tmp_path / "killed" / "out" / "autoencoder.keras"),
                            _weights(tmp_path / "straight" / "out" / "autoencoder.keras"),
                            strict=True):
        np.testing.assert_allclose(ours, theirs, atol=1e-5)
    # The rerun found the killed process's MLflow run (same work, same key) and finished it.
    client = MlflowClient(f"sqlite:///{tmp_path / 'killed' / 'mlflow.db'}")
    run = client.get_run(resumed["tracking"]["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["pretrain.resumed_from_epoch"] == killed_at
    losses = client.get_metric_history(run.info.run_id, "pretrain.loss")
    assert {m.step for m in losses} == set(range(1, EPOCHS + 1))


# --- (b) the tracking server: a real one, behind a proxy that injects faults -------------------


@dataclass
class Fault:
    pattern: re.Pattern
    status: int
    remaining: int | None
    """How many more matching requests get the fault; None: all of them."""
    after_forwarding: bool
    """The server does the work and the client gets the error: an answer lost on the way."""
    armed_by: re.Pattern | None
    """The fault waits for a request matching this to pass first (None: active at once)."""
    outage_s: float = 0.0
    """Instead of an answer: drop the connection and refuse connections for this long."""


class FaultProxy:
    """A loopback HTTP proxy in front of a real server, injecting faults when told to."""

    HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length",
                            "host", "proxy-connection", "te", "trailer", "upgrade"})

    def __init__(self, upstream: str):
        parsed = urlparse(upstream)
        self.upstream = (parsed.hostname, parsed.port)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.faults: list[Fault] = []
        self.log: list[tuple[str, str, int]] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._timers: list[threading.Timer] = []
        self.dropping = False
        """Set from a fault until the socket is closed: requests get no answer meanwhile."""
        self.up()

    def up(self) -> None:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _ProxyHandler)
        server.daemon_threads = True
        server.proxy = self
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        self._server = server

    def down(self) -> None:
        """Stop listening: connections are refused until ``up``."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self.down()

    def fail(self, path: str = ".", *, status: int = 503, times: int | None = None,
             after_forwarding: bool = False, armed_by: str | None = None,
             outage_s: float = 0.0) -> None:
        with self.lock:
            self.faults.append(Fault(re.compile(path), status, times, after_forwarding,
                                     re.compile(armed_by) if armed_by else None, outage_s))

    def heal(self) -> None:
        with self.lock:
            self.faults.clear()

    def count(self, status: int) -> int:
        with self.lock:
            return sum(1 for _, _, answered in self.log if answered == status)

    def take(self, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.armed_by is not None:
                    if fault.armed_by.search(path):
                        fault.armed_by = None  # armed from the next request on
                    continue
                if fault.pattern.search(path) and fault.remaining != 0:
                    if fault.remaining is not None:
                        fault.remaining -= 1
                    return fault
        return None

    def outage(self, seconds: float) -> None:
        self.dropping = True

        def go_down() -> None:
            self.down()
            self.dropping = False

        threading.Thread(target=go_down, daemon=True).start()
        timer = threading.Timer(seconds, self.up)
        self._timers.append(timer)
        timer.start()

    def forward(self, method: str, path: str, headers, body: bytes | None):
        connection = http.client.HTTPConnection(*self.upstream, timeout=120)
        try:
            connection.request(method, path, body=body, headers={
                k: v for k, v in headers.items() if k.lower() not in self.HOP_BY_HOP})
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()


class _ProxyHandler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def _body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip(), 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else None

    def _handle(self) -> None:
        proxy: FaultProxy = self.server.proxy
        body = self._body()
        fault = None if proxy.dropping else proxy.take(self.path)
        if fault is not None and fault.outage_s:
            proxy.outage(fault.outage_s)
        if proxy.dropping:
            self.close_connection = True  # no answer at all
            return
        if fault is None or fault.after_forwarding:
            status, headers, payload = proxy.forward(self.command, self.path, self.headers,
                                                     body)
        if fault is not None:
            status, headers = fault.status, [("Content-Type", "application/json")]
            payload = json.dumps({"error_code": "TEMPORARILY_UNAVAILABLE",
                                  "message": "injected by the test's proxy"}).encode()
        with proxy.lock:
            proxy.log.append((self.command, self.path, status))
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in FaultProxy.HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory):
    with mlflow_server(tmp_path_factory.mktemp("faults-server")) as url:
        yield url


@pytest.fixture()
def proxy(tracking_server):
    proxy = FaultProxy(tracking_server)
    yield proxy
    proxy.close()


@pytest.fixture()
def step_env(monkeypatch, capsys):
    """A step's environment in this process: no MLflow settings, and the process-wide MLflow
    state put back afterwards; yields what reads the error lines the step reported."""
    import mlflow

    for name in list(os.environ):
        if name.startswith("MLFLOW_"):
            monkeypatch.delenv(name)
    previous = mlflow.get_tracking_uri()

    def reported_errors() -> list[str]:
        lines = capsys.readouterr().err.splitlines()
        return [e.message for e in map(events.parse, lines) if e and e.kind == events.ERROR]

    yield reported_errors
    assert mlflow.active_run() is None, "a failed step left its MLflow run active"
    mlflow.set_tracking_uri(previous)


@pytest.fixture()
def short_retries(step_env, monkeypatch):
    """Retries kept short (see the module's docstring); their number is as shipped."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0")
    monkeypatch.setattr(tracking, "with_retries",
                        functools.partial(tracking.with_retries, first_delay=0.05))
    return step_env


def _register(proxy: FaultProxy, model, name: str, run_key: str, tmp_path: Path) -> dict:
    model_dir, report = model
    ctx = steps.TrackingContext(run_key, proxy.url, "faults")
    return steps.register(str(model_dir), str(report), name, str(tmp_path / run_key), ctx)


def _registry(url: str, name: str) -> tuple[list[int], dict[str, int]]:
    """Versions and aliases of ``name``, read from the server itself, not through the proxy."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(url)
    try:
        model = client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return [], {}
        raise
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
    return versions, {alias: int(version) for alias, version in model.aliases.items()}


REGISTRY = r"/(registered-models|model-versions)/"
START = r"/experiments/get-by-name"
MID_STEP = r"/runs/log-batch"


@pytest.mark.e2e
@pytest.mark.parametrize(("where", "path", "times"), [
    ("at start", START, 3),
    ("mid-step", MID_STEP, 3),
    ("at registration", REGISTRY, 3),
    ("everywhere", ".", 8),
])
def test_a_few_503s_are_retried_and_the_step_succeeds(proxy, tracking_server, tiny_model,
                                                      short_retries, tmp_path, where, path,
                                                      times):
    name = f"transient-{where.replace(' ', '-')}"
    proxy.fail(path, times=times)
    result = _register(proxy, tiny_model, name, f"run-{name}", tmp_path)

    assert proxy.count(503) == times
    assert result["alias"] == "champion" and result["model_version"] == "1"
    assert _registry(tracking_server, name) == ([1], {"champion": 1})


@pytest.mark.e2e
def test_a_server_restart_mid_registration_is_ridden_out_with_the_shipped_retries(
        proxy, tracking_server, tiny_model, step_env, tmp_path):
    # Shipped settings: the dropped request and the refused ones are retried after 0, 2 and 4 s.
    proxy.fail(r"/model-versions/create", times=1, outage_s=3.0)
    started = time.monotonic()
    result = _register(proxy, tiny_model, "restart", "run-restart", tmp_path)

    assert time.monotonic() - started > 3.0  # it did wait for the server to come back
    assert result["alias"] == "champion"
    assert _registry(tracking_server, "restart") == ([1], {"champion": 1})


def _one_clear_failure(reported_errors, error: pytest.ExceptionInfo, what: str) -> str:
    assert error.value.code == 1
    lines = reported_errors()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"register: MLflow: {what}") and "503" in lines[0], lines[0]
    return lines[0]


@pytest.mark.e2e
@pytest.mark.parametrize(("where", "path", "armed_by", "what"), [
    ("at start", START, None, "open experiment 'faults' failed"),
    ("mid-step", r"/runs/", r"/runs/log-batch", ""),
    ("at registration", REGISTRY, None, ""),
])
def test_a_permanent_503_is_one_clear_failure_in_bounded_time_and_the_registry_is_unchanged(
        proxy, tracking_server, tiny_model, short_retries, tmp_path, where, path, armed_by,
        what):
    name = f"permanent-{where.replace(' ', '-')}"
    _register(proxy, tiny_model, name, f"run-{name}-0", tmp_path)  # version 1, champion
    before = _registry(tracking_server, name)
    # "mid-step": from the step's first logged parameter on, every run update fails, including
    # logging the model (a run update) and marking the run failed.
    proxy.fail(path, armed_by=armed_by)
    started = time.monotonic()
    with pytest.raises(SystemExit) as error:
        _register(proxy, tiny_model, name, f"run-{name}-1", tmp_path)
    seconds = time.monotonic() - started

    _one_clear_failure(short_retries, error, what)
    assert seconds < 30, f"{seconds:.1f} s to give up with short retries"
    assert proxy.count(503) >= 4 * 4  # 4 attempts of 4 requests (1 + 3 MLflow retries)
    assert _registry(tracking_server, name) == before == ([1], {"champion": 1})


@pytest.mark.e2e
def test_a_503_when_aliasing_keeps_the_champion_and_a_retried_step_finishes_the_version(
        proxy, tracking_server, tiny_model, short_retries, tmp_path):
    _register(proxy, tiny_model, "aliasing", "run-aliasing-0", tmp_path)
    proxy.fail(r"/registered-models/alias")
    with pytest.raises(SystemExit) as error:
        _register(proxy, tiny_model, "aliasing", "run-aliasing-1", tmp_path)
    _one_clear_failure(short_retries, error, "read the champion of 'aliasing' failed")
    # The version was created before the alias could be read; the champion did not move.
    assert _registry(tracking_server, "aliasing") == ([1, 2], {"champion": 1})

    proxy.heal()  # the step is retried (same pipeline run) once the server is back
    result = _register(proxy, tiny_model, "aliasing", "run-aliasing-1", tmp_path)
    assert result["model_version"] == "2" and result["alias"] == "challenger"
    assert _registry(tracking_server, "aliasing") == ([1, 2], {"champion": 1,
                                                               "challenger": 2})


@pytest.mark.e2e
def test_an_answer_lost_after_the_server_registered_does_not_register_twice(
        proxy, tracking_server, tiny_model, short_retries, tmp_path):
    proxy.fail(r"/model-versions/create", times=1, after_forwarding=True)
    result = _register(proxy, tiny_model, "lost-answer", "run-lost-answer", tmp_path)

    assert proxy.count(503) == 1
    assert _registry(tracking_server, "lost-answer") == (
        [int(result["model_version"])], {"champion": int(result["model_version"])})


@pytest.mark.e2e
def test_an_unreachable_server_at_start_is_one_clear_error_within_a_minute(
        unreachable_server_run):
    result = unreachable_server_run()
    assert result["returncode"] == 1, result["stderr"][-3000:]
    last = result["stderr"].strip().splitlines()[-1]
    assert last.startswith("error: ingest: MLflow: open experiment 'dec' failed: ")
    assert f"127.0.0.1:{result['port']}" in last and "Connection refused" in last
    assert "pretrain: started" not in result["stdout"]
    # Shipped budget: 4 attempts, each of 4 requests retried after 0, 2 and 4 s (+ jitter),
    # 1, 2 and 4 s between attempts: about 31-39 s, plus starting the CLI and the step.
    print(f"unreachable server reported after {result['seconds']:.1f} s")
    assert result["seconds"] < 75, f"{result['seconds']:.0f} s to report an unreachable server"


# --- (c) a work dir that cannot be written, a file system that fills up -------------------------


def _cli_run(work_dir: Path, tmp_path: Path, **popen) -> tuple[subprocess.CompletedProcess, Path]:
    registry = tmp_path / "registry.db"  # a store apart, to see that nothing reached it
    result = subprocess.run(
        [*CLI, "run", *SMALL, "--work-dir", str(work_dir), "--mlflow-uri",
         f"sqlite:///{registry}"],
        capture_output=True, text=True, timeout=300, env=clean_env(), **popen)
    return result, registry


def _one_line_naming(result: subprocess.CompletedProcess, path: Path, problem: str) -> None:
    assert result.returncode == 1, result.stderr[-3000:]
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith(f"error: {path}: the work dir is not writable ({problem})")


def test_a_work_dir_under_a_regular_file_is_one_clear_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    work = blocker / "work"
    result, registry = _cli_run(work, tmp_path)

    _one_line_naming(result, work, "Not a directory")
    assert not registry.exists()


def test_a_read_only_work_dir_is_one_clear_error(tmp_path):
    work = tmp_path / "read-only"
    work.mkdir()
    work.chmod(0o500)
    try:
        try:
            (work / "probe").write_text("")
        except PermissionError:
            pass
        else:
            pytest.skip("permission bits do not stop this user (root): the regular-file and "
                        "full-disk tests cover the same check")
        result, registry = _cli_run(work, tmp_path)
    finally:
        work.chmod(0o700)
    _one_line_naming(result, work, "Permission denied")
    assert not registry.exists()


def _file_size_limit(limit: int):
    """For ``preexec_fn``: no file in the process can grow past ``limit`` bytes, and a write
    past it fails (EFBIG) instead of killing the process; a stand-in for a full disk."""
    import resource

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_full_file_system_at_start_is_one_clear_error(tmp_path):
    work = tmp_path / "full"
    result, registry = _cli_run(work, tmp_path, preexec_fn=_file_size_limit(0))

    _one_line_naming(result, work, "File too large")
    assert not registry.exists()


INGEST_PROCESS = """
import sys
from dec_lib import steps
out, uri = sys.argv[1:3]
steps.ingest({"n_samples": 600}, 0, out, steps.TrackingContext("", uri, "faults"))
"""


@pytest.mark.e2e
def test_a_file_system_that_fills_up_mid_step_is_one_clear_line_naming_the_path(tmp_path):
    # The MLflow store is made first, so that only the step's 1.9 MB dataset meets the limit.
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(uri).create_experiment("faults", artifact_location=tracking.artifact_root_for(uri))
    out = tmp_path / "artifacts" / "dataset"
    result = subprocess.run([sys.executable, "-c", INGEST_PROCESS, str(out), uri],
                            capture_output=True, text=True, timeout=120, env=clean_env(),
                            preexec_fn=_file_size_limit(1_500_000))

    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert "ingest: " in last and str(out) in last
