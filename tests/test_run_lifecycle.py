"""One MLflow run per pipeline run: RUNNING from the first step to the last, FINISHED only when
the last step (register) succeeds, FAILED or KILLED otherwise with the step and the reason.

The steps are ``tracking.step_run`` around nothing (no training), against SQLite; the ones that
must exit or be signalled run in a process of their own, as each pipeline step does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import mlflow
import pytest

from dec_lib import steps
from dec_lib.errors import DataError
from dec_lib.mlops import tracking

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = tracking.sqlite_uri(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    yield uri
    mlflow.set_tracking_uri(None)


def _run(uri: str, key: str):
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(tracking.DEFAULT_EXPERIMENT)
    (run,) = client.search_runs([experiment.experiment_id],
                                f"tags.`{tracking.RUN_KEY_TAG}` = '{key}'")
    return run


def _step_in_a_process(uri: str, key: str, step: str, body: str = "pass",
                       **popen) -> subprocess.Popen:
    code = textwrap.dedent(f"""
        import sys, time
        from dec_lib import steps
        @steps.user_errors_exit
        def {step}():
            with steps.TrackingContext({key!r}, {uri!r}).step({step!r}):
                {body}
        {step}()
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT, **popen)


def test_a_step_that_exits_leaves_the_pipeline_run_running_for_the_next(store):
    # The exit hook of mlflow.start_run used to end the run FINISHED at every step's exit.
    assert _step_in_a_process(store, "pipe-1", "ingest").wait(60) == 0
    assert _run(store, "pipe-1").info.status == "RUNNING"
    assert _run(store, "pipe-1").data.tags["step.ingest"] == "done"


def test_the_run_is_finished_only_after_register_succeeds(store):
    ctx = steps.TrackingContext("pipe-2", store)
    for step in ("ingest", "pretrain", "init_clusters", "dec_train", "evaluate"):
        with ctx.step(step):
            pass
        assert _run(store, "pipe-2").info.status == "RUNNING", step
    with ctx.step("register"):
        pass
    run = _run(store, "pipe-2")
    assert run.info.status == "FINISHED"
    assert {run.data.tags[f"step.{s}"] for s in ("ingest", "register")} == {"done"}


def test_a_failing_step_ends_the_run_failed_naming_the_step_and_the_reason(store):
    ctx = steps.TrackingContext("pipe-3", store)
    with ctx.step("ingest"):
        pass
    with pytest.raises(DataError), ctx.step("init_clusters"):
        raise DataError("/data/x.npz", "labels must be >= 0")
    run = _run(store, "pipe-3")
    assert run.info.status == "FAILED"
    assert run.data.tags["step.init_clusters"] == "failed"
    assert run.data.tags[tracking.FAILED_STEP_TAG] == "init_clusters"
    assert "/data/x.npz: labels must be >= 0" in run.data.tags[tracking.FAILURE_TAG]
    assert run.data.tags[tracking.PERMANENT_TAG] == "true"


def test_a_retried_step_that_failed_with_a_user_error_fails_at_once_without_running(store):
    ctx = steps.TrackingContext("pipe-4", store)
    with pytest.raises(DataError), ctx.step("pretrain"):
        raise DataError("seed", "out of range")
    ran = []
    started = time.perf_counter()
    with pytest.raises(tracking.RepeatedFailure, match="not retried"), ctx.step("pretrain"):
        ran.append(True)
    assert not ran and time.perf_counter() - started < 5
    assert _run(store, "pipe-4").info.status == "FAILED"


def test_a_retried_step_after_a_tracking_failure_runs_again(store):
    ctx = steps.TrackingContext("pipe-5", store)
    with pytest.raises(tracking.TrackingError), ctx.step("pretrain"):
        raise tracking.TrackingError("MLflow: 503")
    with ctx.step("pretrain"):
        pass
    assert _run(store, "pipe-5").data.tags["step.pretrain"] == "done"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signalled_step_ends_the_run_killed_and_its_tag_is_not_running(store, signum):
    process = _step_in_a_process(store, f"pipe-sig-{signum}", "pretrain",
                                 "print('ready', flush=True); time.sleep(120)",
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(signum)
    assert process.wait(30) == 128 + signum
    run = _run(store, f"pipe-sig-{signum}")
    assert run.info.status == "KILLED"
    assert run.data.tags["step.pretrain"] == "killed"
    assert run.data.tags[tracking.FAILED_STEP_TAG] == "pretrain"
    assert "Traceback" not in process.stderr.read()


def test_a_run_left_running_by_a_dead_step_is_marked_killed_by_the_next_run(store, monkeypatch):
    lost = _step_in_a_process(store, "pipe-lost", "pretrain",
                              "print('ready', flush=True); time.sleep(120)",
                              stdout=subprocess.PIPE, text=True)
    assert lost.stdout.readline().strip() == "ready"
    lost.kill()  # SIGKILL: nothing in the step can react
    lost.wait(30)
    lost_id = _run(store, "pipe-lost").info.run_id
    assert _run(store, "pipe-lost").info.status == "RUNNING"
    # The lost run last reported an hour ago; the limit is ten minutes. Backdating its heartbeat
    # instead of sleeping keeps the test independent of how slow the machine is.
    an_hour_ago = str(int(time.time()) - 3600)
    mlflow.MlflowClient(store).set_tag(lost_id, tracking.HEARTBEAT_TAG, an_hour_ago)
    monkeypatch.setenv("DEC_STALE_RUN_SECONDS", "600")
    with steps.TrackingContext("pipe-alive", store).step("ingest"):
        pass  # this one reports just now, well within the limit
    with steps.TrackingContext("pipe-next", store).step("ingest"):
        pass
    lost_run = _run(store, "pipe-lost")
    assert lost_run.info.status == "KILLED"
    assert lost_run.data.tags["step.pretrain"] == "killed"
    assert "lost" in lost_run.data.tags[tracking.FAILURE_TAG]
    # A run within the limit is somebody's live run: left alone.
    assert _run(store, "pipe-alive").info.status == "RUNNING"


def test_a_cacheable_steps_own_run_is_finished_when_the_step_is(store):
    ctx = steps.TrackingContext("", store).own("ingest", {"dataset": "x"}, 0)
    with ctx.step("ingest"):
        pass
    assert _run(store, ctx.run_key).info.status == "FINISHED"


def test_ingest_refuses_fewer_images_than_clusters_before_pretraining(store, tmp_path,
                                                                      capsys):
    import numpy as np

    from dec_lib.runtime import events

    path = tmp_path / "five.npz"
    np.savez(path, x=np.zeros((5, 4, 4), np.uint8))
    with pytest.raises(SystemExit) as exit_:
        steps.ingest({"dataset": str(path)}, 0, str(tmp_path / "out"),
                     steps.TrackingContext("pipe-few", store), n_clusters=10)
    assert exit_.value.code == 1
    reported = map(events.parse, capsys.readouterr().err.splitlines())
    (line,) = [e.message for e in reported if e and e.kind == events.ERROR]
    assert line.startswith(f"ingest: {path}: ") and "10 clusters for only 5 samples" in line
    assert "not retried" in line
    run = _run(store, "pipe-few")
    assert run.info.status == "FAILED" and run.data.tags[tracking.FAILED_STEP_TAG] == "ingest"


def test_a_run_interrupted_between_two_steps_is_ended_killed_by_the_cli(store):
    # Ctrl-C one second after "ingest: done": no step is running to record it; the CLI does.
    ctx = steps.TrackingContext("pipe-between", store)
    with ctx.step("ingest"):
        pass
    run_id = _run(store, "pipe-between").info.run_id
    where = tracking.end_if_left_running(run_id, "KILLED", "interrupted by SIGINT",
                                         ("ingest", "pretrain", "register"))
    assert where == "after ingest"
    run = _run(store, "pipe-between")
    assert run.info.status == "KILLED"
    assert run.data.tags[tracking.FAILED_STEP_TAG] == "after ingest"
    # A run its step already ended is left as the step recorded it.
    assert tracking.end_if_left_running(run_id, "FAILED", "later", ()) == "after ingest"
    assert _run(store, "pipe-between").info.status == "KILLED"
