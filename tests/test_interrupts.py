"""Ctrl-C and ``kill`` to ``dec-pipeline run``: the step stops with it, the run says KILLED,
and running the same command again resumes pretraining from its checkpoint.

Real processes: the CLI, kfp.local's step process below it, a SQLite store.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dec_lib import names
from dec_lib.mlops import tracking
from pipelines.interrupts import descendants

pytestmark = pytest.mark.e2e

OUR_LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+dec")
"""A line the CLI logged itself (``dec_lib.runtime.progress.LOG_FORMAT``)."""

ROOT = Path(__file__).resolve().parents[1]
# Long enough pretraining to interrupt, with a checkpoint every 2 epochs to resume from.
ARGS = ["--preset", "quick", "--set", "data.n_samples=300", "--set", "pretrain.epochs=60",
        "--set", "pretrain.checkpoint_every=2", "--set", "autoencoder.hidden_dims=[64,64]",
        "--set", "dec.maxiter=20", "--set", "dec.update_interval=10", "--set", "init.n_init=1",
        "--set", "init.method=kmeans", "--set", "dec.warmup_iterations=0"]


def _start(work: Path, *extra: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.Popen([sys.executable, "-m", "pipelines.cli", "run", *ARGS, *extra,
                             "--work-dir", str(work)], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for_line(process: subprocess.Popen, pattern: str, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        if pattern in line:
            return line
    raise AssertionError(f"no line with {pattern!r}; stderr: {process.stderr.read()[-2000:]}")


def _runs(work: Path):
    import mlflow

    client = mlflow.MlflowClient(tracking.sqlite_uri(work))
    experiment = client.get_experiment_by_name(names.DEFAULT_EXPERIMENT)
    return client, client.search_runs([experiment.experiment_id],
                                      order_by=["attributes.start_time ASC"])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_cli_stops_the_step_marks_the_run_killed_and_a_rerun_resumes(
        tmp_path, signum):
    cli = _start(tmp_path)
    _wait_for_line(cli, "pretrain: epoch 6/")  # two checkpoints written by now
    steps_below = descendants(cli.pid)
    assert steps_below, "the step should run as a child process of the CLI"
    started = time.monotonic()
    cli.send_signal(signum)  # to the CLI only, as `kill` does
    assert cli.wait(60) == 128 + signum
    stopping = time.monotonic() - started
    # One line besides the CLI's own log lines (what it runs, the tracking URI).
    stderr = [line for line in cli.stderr.read().strip().splitlines()
              if not OUR_LOG_LINE.match(line)]
    assert len(stderr) == 1, stderr
    assert stderr[0].startswith(f"interrupted by {signal.Signals(signum).name}: stopped "
                                "pretrain; MLflow run ")
    assert "Traceback" not in cli.stdout.read()
    time.sleep(0.5)
    assert not [pid for pid in steps_below if Path(f"/proc/{pid}").exists()
                and b") Z" not in Path(f"/proc/{pid}/stat").read_bytes()], "orphaned step"
    assert stopping < 30

    client, (run,) = _runs(tmp_path)
    assert run.info.status == "KILLED"
    assert run.data.tags["step.pretrain"] == "killed"
    assert run.data.tags[tracking.FAILED_STEP_TAG] == "pretrain"
    assert client.search_model_versions("name='dec-mnist'") == []

    # The same command again: pretraining resumes from the interrupted run's checkpoint.
    rerun = _start(tmp_path)
    _, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err[-3000:]
    _, (killed, finished) = _runs(tmp_path)
    assert killed.info.status == "KILLED" and finished.info.status == "FINISHED"
    assert finished.data.metrics["pretrain.resumed_from_epoch"] >= 2
