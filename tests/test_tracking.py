"""``dec_lib.mlops.tracking`` on its own: one MLflow run per pipeline run, its lifecycle, the
retries around every call, and the checks of a tracking URI, against one SQLite store.

Fast: no step, no training, no server; every sleep of ``with_retries`` is patched out.
"""

from __future__ import annotations

import math
import time
import uuid

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    BAD_REQUEST,
    INTERNAL_ERROR,
    RESOURCE_DOES_NOT_EXIST,
    TEMPORARILY_UNAVAILABLE,
)

from dec_lib.errors import ConfigError, DataError, TrackingError
from dec_lib.mlops import tracking


@pytest.fixture(scope="module")
def uri(tmp_path_factory):
    """One SQLite store for the module: creating its schema is the slow part."""
    uri = tracking.sqlite_uri(tmp_path_factory.mktemp("tracking"))
    tracking.configure(uri, "warm-up")
    yield uri
    mlflow.set_tracking_uri(None)


@pytest.fixture
def store(uri):
    """The store and a fresh experiment of this test's own, so tests see only their runs."""
    experiment = tracking.configure(uri, f"test-{uuid.uuid4().hex[:8]}")
    yield uri, experiment
    while mlflow.active_run() is not None:
        mlflow.end_run()


@pytest.fixture
def no_sleep(monkeypatch):
    """The delays ``with_retries`` would have slept, without sleeping them."""
    slept: list[float] = []
    monkeypatch.setattr(tracking.time, "sleep", slept.append)
    return slept


def _run(run_id: str):
    return MlflowClient().get_run(run_id)


def _key() -> str:
    return f"pipeline-{uuid.uuid4()}"


# --- the run key -----------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["5f0c3e1a-8a4b-4c57-9e3a-0d1f2b3c4d5e", "it's mine",
                                 'say "hi"', """both ' and " in one"""])
def test_a_run_key_finds_its_own_run_and_no_other(store, key):
    _, experiment = store
    mine = tracking.find_or_create_run(key, experiment)
    other = tracking.find_or_create_run(key + " (2)", experiment)
    assert tracking.find_or_create_run(key, experiment) == mine != other
    assert _run(mine).data.tags[tracking.RUN_KEY_TAG] == key


def test_a_key_the_backend_left_unresolved_is_refused_naming_the_fix(store):
    uri, _ = store
    with pytest.raises(ConfigError, match=r"--kfp-backend 2\.2"), \
            tracking.step_run("{{$.pipeline_job_uuid}}", "init_clusters", tracking_uri=uri):
        pass


def test_an_empty_key_is_refused_instead_of_sharing_one_run(store):
    uri, _ = store
    with pytest.raises(ConfigError, match="empty"), \
            tracking.step_run("", "init_clusters", tracking_uri=uri):
        pass


@pytest.mark.parametrize("name", ["dec-mnist", "Bob's digits", 'the "best" digits'])
def test_a_model_name_with_a_quote_is_searchable(store, name):
    client = MlflowClient()
    name = f"{name} {uuid.uuid4().hex[:6]}"
    client.create_registered_model(name)
    client.create_model_version(name, "file:///nowhere", tags={"mlflow_run_id": "abc"})
    found = client.search_model_versions(
        f"name={tracking.filter_literal(name, 'model_name')} and tags.mlflow_run_id='abc'")
    assert [v.name for v in found] == [name]


def test_a_name_with_both_quotes_is_refused_naming_the_setting():
    with pytest.raises(ConfigError, match="model_name"):
        tracking.filter_literal("""it's "x" """, "model_name")


# --- URIs and credentials --------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("http://bob:s3cret@mlflow:5000/api", "http://bob:***@mlflow:5000/api"),
    ("failed: HTTPS://u:p%40ss@host/x and http://a:b@c", "failed: HTTPS://u:***@host/x and "
                                                         "http://a:***@c"),
    ("postgresql://dec:pw@db/mlflow", "postgresql://dec:***@db/mlflow"),
    ("http://bob@mlflow:5000", "http://bob@mlflow:5000"),
    ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
])
def test_redact_masks_every_password_in_a_url_and_nothing_else(text, expected):
    assert tracking.redact(text) == expected


@pytest.mark.parametrize(("uri", "expected"), [
    ("http://bob:s3cret@mlflow:5000/api", ("http://mlflow:5000/api", "bob", "s3cret")),
    ("https://b%40b:p%3Ass@host/", ("https://host/", "b@b", "p:ss")),
    ("http://token@host", ("http://host", "token", None)),
    ("http://u:p@[::1]:5000", ("http://[::1]:5000", "u", "p")),
    ("http://host:5000", ("http://host:5000", None, None)),
    ("postgresql://dec:pw@db/mlflow", ("postgresql://dec:pw@db/mlflow", None, None)),
])
def test_split_credentials_takes_user_and_password_out_of_http_uris(uri, expected):
    assert tracking.split_credentials(uri) == expected


def test_artifacts_go_beside_a_sqlite_file_and_elsewhere_where_the_server_says(tmp_path):
    db = tmp_path / "sub" / "mlflow.db"
    assert tracking.artifact_root_for(f"sqlite:///{db}") == (
        (tmp_path / "sub" / "mlartifacts").resolve().as_uri())
    assert tracking.artifact_root_for("http://mlflow:5000") is None
    assert tracking.artifact_root_for("postgresql://db/mlflow") is None


def test_no_tracking_uri_anywhere_is_refused_naming_both_ways_to_give_one(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(TrackingError, match=r"--mlflow-uri.*MLFLOW_TRACKING_URI"):
        tracking.resolve_tracking_uri("  ")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://from-env")
    assert tracking.resolve_tracking_uri() == "http://from-env"
    assert tracking.resolve_tracking_uri("http://given") == "http://given"


# --- with_retries ----------------------------------------------------------------------------


def _failing(errors: list[BaseException], result: str = "done"):
    """An action that raises ``errors`` in turn, then returns ``result``; counts its calls."""
    calls = []

    def action():
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return result

    return action, calls


@pytest.mark.parametrize("transient", [
    MlflowException("boom", error_code=INTERNAL_ERROR),
    MlflowException("busy", error_code=TEMPORARILY_UNAVAILABLE),
    MlflowException("(sqlite3.OperationalError) database is locked",
                    error_code=RESOURCE_DOES_NOT_EXIST),
    MlflowException("Max retries exceeded with url: /api", error_code=RESOURCE_DOES_NOT_EXIST),
    ConnectionError("refused"),
    TimeoutError("slow"),
], ids=["internal", "unavailable", "locked", "max-retries", "connection", "timeout"])
def test_a_transient_failure_is_retried_with_doubling_delays(no_sleep, transient):
    action, calls = _failing([transient, transient])
    assert tracking.with_retries(action, "read a run") == "done"
    assert len(calls) == 3
    assert no_sleep == [1.0, 2.0]


def test_a_permanent_failure_is_not_retried(no_sleep):
    action, calls = _failing([MlflowException("no such run",
                                              error_code=RESOURCE_DOES_NOT_EXIST)])
    with pytest.raises(TrackingError, match="MLflow: read a run failed: no such run"):
        tracking.with_retries(action, "read a run")
    assert len(calls) == 1 and no_sleep == []


_CONFLICT = MlflowException(
    "(sqlite3.IntegrityError) UNIQUE constraint failed: registered_model_aliases.workspace, "
    "registered_model_aliases.name, registered_model_aliases.alias", error_code=BAD_REQUEST)
"""What MLflow's SQL store raised in CI when two processes set ``champion`` at one moment."""


def test_a_uniqueness_conflict_on_an_upsert_is_retried(no_sleep):
    action, calls = _failing([_CONFLICT])
    assert tracking.with_retries(action, "set alias 'champion'", upsert=True) == "done"
    assert len(calls) == 2 and no_sleep == [1.0]


def test_a_uniqueness_conflict_elsewhere_is_permanent(no_sleep):
    action, calls = _failing([_CONFLICT])
    with pytest.raises(TrackingError, match=r"MLflow: create a run failed: .*UNIQUE constraint"):
        tracking.with_retries(action, "create a run")
    assert len(calls) == 1 and no_sleep == []


def test_the_last_attempt_s_error_is_raised_with_its_password_masked(no_sleep):
    error = ConnectionError("cannot reach http://bob:s3cret@mlflow:5000")
    action, calls = _failing([error] * 10)
    with pytest.raises(TrackingError) as raised:
        tracking.with_retries(action, "log metrics", attempts=3, first_delay=0.5)
    assert len(calls) == 3 and no_sleep == [0.5, 1.0]
    assert "s3cret" not in str(raised.value) and "bob:***@mlflow" in str(raised.value)
    assert raised.value.__cause__ is error


def test_an_error_that_is_not_about_tracking_passes_through_untouched(no_sleep):
    action, calls = _failing([KeyError("bug")])
    with pytest.raises(KeyError):
        tracking.with_retries(action, "log metrics")
    assert len(calls) == 1 and no_sleep == []


# --- check_tracking_uri ----------------------------------------------------------------------


@pytest.mark.parametrize("uri", ["http://mlflow:5000", "https://u:p@mlflow", "file:///tmp/runs",
                                 "postgresql://db/mlflow", "databricks", "/tmp/mlruns"])
def test_known_schemes_pass(uri):
    assert tracking.check_tracking_uri(uri) == uri


def test_an_unknown_scheme_is_refused_listing_the_known_ones_without_the_password():
    with pytest.raises(TrackingError, match=r"unknown scheme 'htp'.*http, https") as raised:
        tracking.check_tracking_uri("htp://bob:s3cret@mlflow")
    assert "s3cret" not in str(raised.value)


def test_a_new_or_existing_sqlite_database_passes(tmp_path, uri):
    assert tracking.check_tracking_uri(f"sqlite:///{tmp_path / 'new.db'}")
    assert tracking.check_tracking_uri(uri) == uri  # the module's store, a real database
    assert tracking.check_tracking_uri("sqlite:///:memory:")


def test_a_file_that_is_not_a_sqlite_database_is_refused(tmp_path):
    text = tmp_path / "notes.db"
    text.write_text("not a database")
    with pytest.raises(TrackingError, match="not an SQLite database"):
        tracking.check_tracking_uri(f"sqlite:///{text}")
    # Checked only when the store is on this machine.
    assert tracking.check_tracking_uri(f"sqlite:///{text}", local=False)


def test_a_folder_given_as_the_database_is_refused(tmp_path):
    with pytest.raises(TrackingError, match="not a regular file"):
        tracking.check_tracking_uri(f"sqlite:///{tmp_path}")


def test_a_database_in_a_folder_that_does_not_exist_is_refused(tmp_path):
    with pytest.raises(TrackingError, match="cannot write the database"):
        tracking.check_tracking_uri(f"sqlite:///{tmp_path / 'missing' / 'mlflow.db'}")


# --- step_run: the pipeline run's lifecycle --------------------------------------------------


def test_a_step_leaves_the_run_running_with_its_tag_done_its_time_and_its_memory(store):
    uri, _ = store
    with tracking.step_run(_key(), "ingest", tracking_uri=uri) as run:
        assert mlflow.active_run().info.run_id == run.info.run_id
        assert _run(run.info.run_id).data.tags["step.ingest"] == tracking.STEP_RUNNING
    assert mlflow.active_run() is None
    after = _run(run.info.run_id)
    assert after.info.status == "RUNNING"
    assert after.data.tags["step.ingest"] == tracking.STEP_DONE
    assert after.data.metrics["phase_seconds.ingest"] >= 0
    assert after.data.metrics["peak_memory_mb.ingest"] > 0


def test_only_the_final_step_finishes_the_run_and_every_step_shares_it(store):
    uri, _ = store
    key = _key()
    with tracking.step_run(key, "ingest", tracking_uri=uri) as first:
        pass
    with tracking.step_run(key, "register", tracking_uri=uri, final=True) as last:
        pass
    assert first.info.run_id == last.info.run_id
    run = _run(last.info.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["step.ingest"] == run.data.tags["step.register"] == tracking.STEP_DONE


def test_a_failing_step_ends_the_run_failed_with_the_step_and_the_reason(store):
    uri, _ = store
    with pytest.raises(DataError), \
            tracking.step_run(_key(), "ingest", tracking_uri=uri) as run:
        raise DataError("http://bob:s3cret@host/x.npz", "labels must be >= 0")
    assert mlflow.active_run() is None
    tags = _run(run.info.run_id).data.tags
    assert _run(run.info.run_id).info.status == "FAILED"
    assert tags["step.ingest"] == tracking.STEP_FAILED
    assert tags[tracking.FAILED_STEP_TAG] == "ingest"
    assert tags[tracking.FAILURE_TAG] == "http://bob:***@host/x.npz: labels must be >= 0"
    assert tags[tracking.PERMANENT_TAG] == "true"


def test_an_interrupted_step_ends_the_run_killed(store):
    uri, _ = store
    with pytest.raises(KeyboardInterrupt), \
            tracking.step_run(_key(), "pretrain", tracking_uri=uri) as run:
        raise KeyboardInterrupt
    assert _run(run.info.run_id).info.status == "KILLED"
    assert _run(run.info.run_id).data.tags["step.pretrain"] == tracking.STEP_KILLED


def test_a_step_that_failed_with_a_user_error_is_refused_at_once_when_retried(store):
    uri, _ = store
    key = _key()
    with pytest.raises(DataError), tracking.step_run(key, "pretrain", tracking_uri=uri):
        raise DataError("seed", "out of range")
    ran = []
    with pytest.raises(tracking.RepeatedFailure, match=r"seed: out of range.*not retried"), \
            tracking.step_run(key, "pretrain", tracking_uri=uri):
        ran.append(True)
    assert not ran
    # Another step of the run is not refused: only the step that failed would fail the same way.
    with tracking.step_run(key, "evaluate", tracking_uri=uri):
        ran.append(True)
    assert ran == [True]


@pytest.mark.parametrize("error", [TrackingError("MLflow: 503"), RuntimeError("a bug")],
                         ids=["tracking", "bug"])
def test_a_step_that_failed_for_another_reason_runs_again(store, error):
    uri, _ = store
    key = _key()
    with pytest.raises(type(error)), tracking.step_run(key, "pretrain", tracking_uri=uri) as run:
        raise error
    assert _run(run.info.run_id).data.tags[tracking.PERMANENT_TAG] == "false"
    with tracking.step_run(key, "pretrain", tracking_uri=uri):
        pass
    assert _run(run.info.run_id).data.tags["step.pretrain"] == tracking.STEP_DONE


def test_each_step_reports_its_run_id_to_the_cli_as_an_event(store, capfd):
    from dec_lib.runtime import events

    uri, _ = store
    key = _key()
    for step in ("ingest", "pretrain"):
        with tracking.step_run(key, step, tracking_uri=uri) as run:
            pass
    reported = [event.fields["run_id"] for event in map(events.parse,
                                                         capfd.readouterr().err.splitlines())
                if event is not None and event.kind == events.RUN]
    assert reported == [run.info.run_id] * 2


# --- runs left behind ------------------------------------------------------------------------


def _pipeline_run(experiment: str, heartbeat_age_s: float | None = None,
                  **step_tags: str) -> str:
    """A pipeline run as steps leave it: RUNNING, its key, a heartbeat, step tags."""
    key = _key()
    run_id = tracking.find_or_create_run(key, experiment)
    client = MlflowClient()
    if heartbeat_age_s is not None:
        client.set_tag(run_id, tracking.HEARTBEAT_TAG, str(int(time.time() - heartbeat_age_s)))
    for step, state in step_tags.items():
        client.set_tag(run_id, f"step.{step}", state)
    return run_id


def test_a_run_nobody_reported_on_for_too_long_is_closed_killed_naming_its_step(store,
                                                                                monkeypatch):
    _, experiment = store
    monkeypatch.setenv("DEC_STALE_RUN_SECONDS", "3600")
    lost = _pipeline_run(experiment, 7200, ingest=tracking.STEP_DONE,
                         pretrain=tracking.STEP_RUNNING)
    alive = _pipeline_run(experiment, 60, ingest=tracking.STEP_RUNNING)
    mine = _pipeline_run(experiment, 7200, ingest=tracking.STEP_RUNNING)
    not_ours = MlflowClient().create_run(experiment).info.run_id  # no pipeline key

    assert tracking.close_stale_runs(experiment, keep=mine) == [lost]
    run = _run(lost)
    assert run.info.status == "KILLED"
    assert run.data.tags["step.pretrain"] == tracking.STEP_KILLED
    assert run.data.tags["step.ingest"] == tracking.STEP_DONE
    assert run.data.tags[tracking.FAILED_STEP_TAG] == "pretrain"
    assert "found by a later pipeline run" in run.data.tags[tracking.FAILURE_TAG]
    assert {_run(r).info.status for r in (alive, mine, not_ours)} == {"RUNNING"}


def test_a_run_without_a_heartbeat_counts_from_its_start(store, monkeypatch):
    _, experiment = store
    monkeypatch.setenv("DEC_STALE_RUN_SECONDS", "0")
    lost = _pipeline_run(experiment)
    assert tracking.close_stale_runs(experiment, keep="") == [lost]
    assert _run(lost).data.tags[tracking.FAILED_STEP_TAG] == "unknown"


@pytest.mark.parametrize(("tags", "where"), [
    ({"ingest": tracking.STEP_DONE, "pretrain": tracking.STEP_RUNNING}, "pretrain"),
    ({"ingest": tracking.STEP_DONE, "pretrain": tracking.STEP_DONE}, "after pretrain"),
    ({}, "before the first step"),
])
def test_the_cli_ends_a_run_left_running_and_says_where_it_stopped(store, tags, where):
    _, experiment = store
    run_id = _pipeline_run(experiment, **tags)
    assert tracking.end_if_left_running(run_id, "KILLED", "interrupted (Ctrl-C)",
                                        steps=("ingest", "pretrain", "register")) == where
    run = _run(run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags[tracking.FAILED_STEP_TAG] == where
    assert run.data.tags[tracking.FAILURE_TAG] == "interrupted (Ctrl-C)"
    assert tracking.STEP_RUNNING not in run.data.tags.values()


def test_the_cli_leaves_a_run_its_steps_ended_as_it_is(store):
    uri, _ = store
    with pytest.raises(DataError), tracking.step_run(_key(), "ingest", tracking_uri=uri) as run:
        raise DataError("x.npz", "empty")
    assert tracking.end_if_left_running(run.info.run_id, "KILLED", "interrupted") == "ingest"
    assert _run(run.info.run_id).info.status == "FAILED"
    assert _run(run.info.run_id).data.tags[tracking.FAILURE_TAG] == "x.npz: empty"


# --- a cacheable step's record ---------------------------------------------------------------


def test_a_step_record_travels_into_the_pipeline_run_without_overwriting_it(store):
    _, experiment = store
    client = MlflowClient()
    step_run_id = client.create_run(experiment).info.run_id
    client.log_param(step_run_id, "pretrain.epochs", "3")
    client.log_param(step_run_id, "seed", "7")
    client.log_metric(step_run_id, "pretrain.final_loss", 0.25)
    client.log_metric(step_run_id, "pretrain.lost", math.nan)
    record = tracking.run_record(step_run_id)
    assert record == {"mlflow_run_id": step_run_id,
                      "params": {"pretrain.epochs": "3", "seed": "7"},
                      "metrics": {"pretrain.final_loss": 0.25}}  # NaN cannot travel in KFP

    pipeline = client.create_run(experiment).info.run_id
    client.log_param(pipeline, "seed", "7")  # already logged by an earlier step
    with mlflow.start_run(run_id=pipeline):
        tracking.adopt("pretrain", record)
        tracking.adopt("pretrain", None)  # nothing to adopt
    run = _run(pipeline)
    assert run.data.params == {"seed": "7", "pretrain.epochs": "3"}
    assert run.data.metrics["pretrain.final_loss"] == 0.25
    assert run.data.tags["pretrain.mlflow_run_id"] == step_run_id


def test_a_step_does_not_adopt_its_own_run(store):
    _, experiment = store
    run_id = MlflowClient().create_run(experiment).info.run_id
    with mlflow.start_run(run_id=run_id):
        tracking.adopt("pretrain", {"mlflow_run_id": run_id, "params": {"a": "1"},
                                    "metrics": {"m": 1.0}})
    run = _run(run_id)
    assert run.data.params == {} and run.data.metrics == {}
    assert "pretrain.mlflow_run_id" not in run.data.tags
