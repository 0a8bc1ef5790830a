"""MLflow bookkeeping: one MLflow run per pipeline run, shared by every step.

Each step runs in its own process (its own pod on a cluster), so the steps cannot hand a run
object to each other. They agree on the run through a key that is unique per pipeline run (the
KFP run's id): the first step to arrive creates the run and tags it with the key, later steps
find it by the tag.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

from dec_lib.errors import ConfigError, DecError, TrackingError, short_text
from dec_lib.names import DEFAULT_EXPERIMENT
from dec_lib.runtime import events

log = logging.getLogger(__name__)

RUN_KEY_TAG = "dec.pipeline_run"
RUN_KEY_DIGEST_TAG = "dec.pipeline_run_sha256"
"""The run key's SHA-256, which the steps search by: a key may hold any character, a digest
only hex digits, which a filter string cannot misread."""

T = TypeVar("T")


def sqlite_uri(work_dir: str | os.PathLike) -> str:
    """The embedded default store: SQLite in the work dir, by absolute path."""
    return f"sqlite:///{Path(work_dir).resolve() / 'mlflow.db'}"


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The tracking URI to use: ``uri`` if given, else ``$MLFLOW_TRACKING_URI``.

    Raises
    ------
    TrackingError
        When neither is set: MLflow would otherwise log to ``./mlruns`` of whichever process
        runs, and each step would write somewhere else.
    """
    uri = (uri or os.environ.get("MLFLOW_TRACKING_URI") or "").strip()
    if not uri:
        raise TrackingError(
            "no MLflow tracking URI: pass --mlflow-uri or set MLFLOW_TRACKING_URI "
            "(e.g. sqlite:////abs/path/mlflow.db or http://mlflow:5000)")
    return uri


_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]+):[^@\s/]*@", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with any password inside a URL (``scheme://user:password@host``) masked."""
    return _USERINFO.sub(r"\1:***@", text)


def split_credentials(uri: str) -> tuple[str, str | None, str | None]:
    """``uri`` without ``user:password@``, and the user and password (None when absent).

    MLflow reads credentials from ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``; kept there, they stay
    out of pipeline parameters, logs and summaries, where a URI travels.

    Returns
    -------
    tuple
        (URI without credentials, user or None, password or None), percent-decoded; a URI that
        is not http(s) or holds no user comes back unchanged.
    """
    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https") or parsed.username is None:
        return uri, None, None
    host = parsed.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parsed.port:
        netloc += f":{parsed.port}"
    return (parsed._replace(netloc=netloc).geturl(), unquote(parsed.username),
            None if parsed.password is None else unquote(parsed.password))


def artifact_root_for(uri: str) -> str | None:
    """Where a new experiment keeps artifacts: beside a SQLite file, or the server's choice.

    Without this, MLflow puts artifacts under the *current directory* of whichever process
    creates the experiment, and steps started elsewhere could not find them.
    """
    if urlparse(uri).scheme != "sqlite":
        return None
    db_path = Path(uri[len("sqlite:///"):])
    return (db_path.parent / "mlartifacts").resolve().as_uri()


HTTP_RETRY_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
                       "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
"""MLflow's own per-request retries, bounded: after 0, 2 and 4 s (plus up to 1 s of jitter).

MLflow's HTTP client retries every request by itself, 7 times over about 4 minutes by default,
and ``with_retries`` retries the whole action on top: a server that was down took about 16
minutes to be reported. With these, a request rides out a blip of a few seconds, an action
wrapped in ``with_retries`` one of about 30 s, and a server that stays down is reported within
about 40 s. Variables already set in the environment win.
"""


def bound_http_retries() -> None:
    """Set ``HTTP_RETRY_DEFAULTS`` in the environment, where not set already."""
    for name, value in HTTP_RETRY_DEFAULTS.items():
        os.environ.setdefault(name, value)


def with_retries(action: Callable[[], T], what: str, attempts: int = 4,
                 first_delay: float = 1.0, *, upsert: bool = False) -> T:
    """Run ``action``, retrying transient tracking-server failures with exponential backoff.

    Transient: a connection or timeout error, a server error (``INTERNAL_ERROR``,
    ``TEMPORARILY_UNAVAILABLE``, ``REQUEST_LIMIT_EXCEEDED``), MLflow's own retries exhausted, a
    locked SQLite database. Anything else MLflow raises (a run that does not exist, a refused
    value) fails at once; other exceptions pass through untouched.

    An upsert (setting an alias or a tag) is read-then-write in MLflow's SQL store, so two
    writers at once can both try to insert the row and one loses on a uniqueness constraint.
    With ``upsert=True`` that conflict is transient too: the retry finds the row and updates it.

    Parameters
    ----------
    action : callable
        Called with no arguments, once per attempt.
    what : str
        What the action does, for the log and the error ("log metrics").
    attempts : int, default 4
        Tries in all.
    first_delay : float, default 1.0
        Seconds before the second try; doubled before each further one.
    upsert : bool, default False
        The action is an idempotent upsert: retry a uniqueness conflict as well.

    Returns
    -------
    object
        What ``action`` returned.

    Raises
    ------
    TrackingError
        On a permanent failure, or on the last attempt's transient one; passwords in the
        message are masked (``redact``).
    """
    from mlflow.exceptions import MlflowException
    from requests.exceptions import RequestException

    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except (MlflowException, RequestException, ConnectionError, TimeoutError) as error:
            if not (_is_transient(error) or (upsert and _is_conflict(error))) \
                    or attempt == attempts:
                raise TrackingError(f"MLflow: {what} failed: {redact(str(error))}") from error
            log.warning("MLflow: %s failed (attempt %d of %d), retrying in %.0fs: %s",
                        what, attempt, attempts, delay, redact(str(error)))
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def _is_transient(error: Exception) -> bool:
    from mlflow.exceptions import MlflowException

    if isinstance(error, MlflowException):
        code = getattr(error, "error_code", "")
        return code in ("INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED") \
            or "Max retries" in str(error) or "database is locked" in str(error)
    return True


_CONFLICTS = ("UNIQUE constraint failed", "duplicate key value", "Duplicate entry")
"""A uniqueness conflict as SQLite, PostgreSQL and MySQL word it, in MLflow's wrapped error."""


def _is_conflict(error: Exception) -> bool:
    return any(words in str(error) for words in _CONFLICTS)


def configure(uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT) -> str:
    """Point MLflow at ``uri`` and make sure ``experiment`` exists.

    A new experiment keeps its artifacts where ``artifact_root_for`` says; two steps creating it
    at once both end up with the one that won.

    Parameters
    ----------
    uri : str, optional
        The tracking URI (see ``resolve_tracking_uri``).
    experiment : str
        The experiment's name.

    Returns
    -------
    str
        The experiment's id.
    """
    import mlflow

    uri = resolve_tracking_uri(uri)
    bound_http_retries()
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(uri)

    def get_or_create() -> str:
        existing = client.get_experiment_by_name(experiment)
        if existing is not None:
            return existing.experiment_id
        try:
            return client.create_experiment(experiment, artifact_location=artifact_root_for(uri))
        except Exception:  # another step created it first
            existing = client.get_experiment_by_name(experiment)
            if existing is None:
                raise
            return existing.experiment_id

    experiment_id = with_retries(get_or_create, f"open experiment {experiment!r}")
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def filter_literal(value: str, setting: str) -> str:
    """``value`` quoted for an MLflow search filter, where ``setting`` names where it came from.

    MLflow's filter parser has no escapes (``'it''s'`` and ``'it\\'s'`` match nothing), so a value
    is quoted with the quote it does not contain; one holding both cannot be searched for.

    Raises
    ------
    ConfigError
        On ``setting``, when ``value`` holds both quotes.
    """
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ConfigError(setting, f"{value!r} holds both ' and \", which an MLflow search cannot "
                      "express; choose a name without one of them")


def check_run_key(run_key: str) -> str:
    """``run_key`` if it can key one pipeline run's MLflow run.

    An empty key would put every run into one MLflow run, and a key still in ``{{...}}`` is a
    placeholder the backend left alone, the same for every run: KFP backends before 2.5 resolve
    no ``{{$.pipeline_job_*}}`` placeholder.

    Raises
    ------
    ConfigError
        On ``run_key``, for an empty key or an unresolved placeholder, naming the fix.
    """
    if not run_key.strip():
        raise ConfigError("run_key", "is empty: every pipeline run needs a key of its own (the "
                          "compiled pipeline passes the run's id)")
    if run_key.startswith("{{") and run_key.endswith("}}"):
        raise ConfigError("run_key", f"{run_key} reached the step unresolved: this KFP backend "
                          "is older than 2.5; compile with --kfp-backend 2.2")
    return run_key


MEMBER_KEY_SEPARATOR = "/member-"
"""Between a pipeline run's key and a member's index, in the key of the member's own run."""
PARENT_RUN_TAG = "mlflow.parentRunId"
"""MLflow's own tag: its UI shows a member's run nested under the pipeline's."""


def member_run_key(run_key: str, index: int) -> str:
    """The key of member ``index``'s MLflow run in pipeline run ``run_key`` (``members`` > 1)."""
    return f"{run_key}{MEMBER_KEY_SEPARATOR}{index}"


def parent_run_key(run_key: str) -> str | None:
    """The pipeline run's key when ``run_key`` is a member's (``member_run_key``), else None."""
    parent, separator, index = run_key.rpartition(MEMBER_KEY_SEPARATOR)
    return parent if separator and parent and index.isdigit() else None


def find_or_create_run(run_key: str, experiment_id: str) -> str:
    """The id of the MLflow run for pipeline run ``run_key``, created by the first step to ask.

    Runs are found by the key's SHA-256 (``RUN_KEY_DIGEST_TAG``): a key may hold quotes a
    filter cannot carry. The key itself is kept as ``RUN_KEY_TAG`` and as the run's name. A
    member's run (``member_run_key``) is created as a child of the pipeline's run.

    Parameters
    ----------
    run_key : str
        Unique per pipeline run (the KFP run's id).
    experiment_id : str
        Where the run lives.

    Returns
    -------
    str
        The MLflow run id.
    """
    import mlflow

    client = mlflow.MlflowClient()
    digest = hashlib.sha256(run_key.encode()).hexdigest()

    def find() -> str | None:
        runs = client.search_runs([experiment_id], f"tags.`{RUN_KEY_DIGEST_TAG}` = '{digest}'",
                                  max_results=1, order_by=["attributes.start_time ASC"])
        return runs[0].info.run_id if runs else None

    run_id = with_retries(find, f"look up the run of {run_key!r}")
    if run_id is None:
        tags = {RUN_KEY_TAG: run_key, RUN_KEY_DIGEST_TAG: digest}
        parent = parent_run_key(run_key)
        if parent is not None:
            tags[PARENT_RUN_TAG] = find_or_create_run(parent, experiment_id)
        run = with_retries(lambda: client.create_run(experiment_id, run_name=run_key, tags=tags),
                           f"create the run of {run_key!r}")
        run_id = run.info.run_id
    return run_id


STEP_RUNNING, STEP_DONE, STEP_FAILED, STEP_KILLED = "running", "done", "failed", "killed"
FAILED_STEP_TAG = "dec.failed_step"
FAILURE_TAG = "dec.failure"
PERMANENT_TAG = "dec.failure_permanent"
HEARTBEAT_TAG = "dec.heartbeat"

STALE_RUN_SECONDS = 6 * 3600
"""A RUNNING pipeline run none of whose steps reported (``dec.heartbeat``) for this long was lost
(a pod killed with SIGKILL, a node gone): the next pipeline run marks it KILLED. Long enough for
any step between two reports; ``$DEC_STALE_RUN_SECONDS`` overrides it."""
_HEARTBEAT_EVERY = 60.0
_last_heartbeat = 0.0


class StepInterrupted(KeyboardInterrupt):
    """SIGTERM or SIGINT reached a step: it stops, and its run is marked KILLED, not FAILED."""

    def __init__(self, signum: int):
        import signal

        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


class RepeatedFailure(DecError):
    """A retried step whose previous attempt failed with an error no retry can fix."""


@contextmanager
def step_run(run_key: str, step: str, *, tracking_uri: str | None = None,
             experiment: str = DEFAULT_EXPERIMENT, final: bool = False) -> Iterator[Any]:
    """Make the pipeline run's MLflow run active for one step, and time the step.

    The run stays RUNNING between steps and is ended FINISHED only by the ``final`` step (the
    pipeline's last, or a cacheable step's run of its own): a run that stops anywhere before is
    not a success. A failing step ends it FAILED, a step stopped by SIGTERM or SIGINT KILLED,
    either way with the step and the reason as tags (``dec.failed_step``, ``dec.failure``) and
    the step's tag ``failed`` or ``killed``, never left ``running``. A retried step whose last
    attempt failed with a user error (``dec.failure_permanent``) fails again at once instead of
    repeating work that can only fail the same way. Every call to the server goes through
    ``with_retries``, and when the server is what failed, marking the run is only tried: the
    step's own error, not that one, is what the user sees.

    Parameters
    ----------
    run_key : str
        The pipeline run's key (see ``find_or_create_run``).
    step : str
        The step's name, in the ``step.<name>`` tag and the timing metrics.
    tracking_uri : str, optional
        See ``resolve_tracking_uri``.
    experiment : str
        The experiment the run lives in.
    final : bool, default False
        Whether this step ends the run FINISHED when it succeeds.

    Yields
    ------
    mlflow.ActiveRun
        The pipeline run, active in this process for the step's duration.

    Raises
    ------
    ConfigError
        For a run key no pipeline run can be keyed by (``check_run_key``).
    RepeatedFailure
        When this step already failed in this run with a user error.
    """
    import mlflow

    check_run_key(run_key)
    experiment_id = configure(tracking_uri, experiment)
    run_id = find_or_create_run(run_key, experiment_id)
    # Whoever runs the step (the local CLI) ends this run if the pipeline stops where no step
    # is left to do it: interrupted between two steps, or after a step that died silently.
    events.emit(events.RUN, run_id=run_id)
    _refuse_repeated_permanent_failure(run_id, step)
    close_stale_runs(experiment_id, keep=run_id)
    started = time.perf_counter()
    log.info("%s: started (MLflow run %s)", step, run_id)
    run = with_retries(lambda: mlflow.start_run(run_id=run_id), f"resume MLflow run {run_id}")
    try:
        with _signals_interrupt_the_step():
            with_retries(lambda: mlflow.set_tags({f"step.{step}": STEP_RUNNING,
                                                  HEARTBEAT_TAG: str(int(time.time()))}),
                         "mark the step running")
            yield run
            seconds = time.perf_counter() - started
            log_metrics({f"phase_seconds.{step}": seconds,
                         f"peak_memory_mb.{step}": peak_memory_mb()})
            with_retries(lambda: mlflow.set_tag(f"step.{step}", STEP_DONE), "mark the step done")
    except BaseException as error:
        try:
            end_failed(run_id, step, error)
        except Exception as mark_error:  # never in place of the step's own error
            log.warning("MLflow: could not mark run %s failed: %s", run_id, mark_error)
        raise
    if final:
        with_retries(lambda: _end_run(run_id, "FINISHED"), f"finish MLflow run {run_id}")
    else:
        _leave_run(run_id)
    log.info("%s: done in %.1fs", step, seconds)


def end_failed(run_id: str, step: str, error: BaseException) -> None:
    """End ``run_id`` KILLED (an interruption) or FAILED, with ``step`` and the reason as tags."""
    killed = isinstance(error, KeyboardInterrupt)
    reason = str(error) or type(error).__name__
    if isinstance(error, SystemExit):  # user_errors_exit logged the reason, and exits 1
        reason = "the step exited with a user error (see its log)"
    permanent = isinstance(error, DecError) and not isinstance(error, TrackingError)
    mark_ended(run_id, "KILLED" if killed else "FAILED", {
        f"step.{step}": STEP_KILLED if killed else STEP_FAILED,
        FAILED_STEP_TAG: step,
        FAILURE_TAG: short_text(redact(reason), 240),
        PERMANENT_TAG: str(permanent).lower(),
    })


def mark_ended(run_id: str, status: str, tags: dict[str, str]) -> None:
    """End ``run_id`` with ``status`` and set ``tags`` on it (one try each: used on the way out).

    Ending comes first: it leaves the active run in this process even when the server refuses
    the update, so a step that failed because of the server is not left inside its run.
    """
    import mlflow

    _end_run(run_id, status)
    client = mlflow.MlflowClient()
    for key, value in tags.items():
        client.set_tag(run_id, key, value)


def _leave_run(run_id: str) -> None:
    """Stop being the active run in this process without ending it: the run stays RUNNING.

    ``mlflow.start_run`` registers an exit hook that ends the active run FINISHED, which would
    record every step's exit as the pipeline's success; ending it with status RUNNING is MLflow's
    public way to leave it (it also records an end time, which the last step overwrites).
    """
    import mlflow

    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        with_retries(lambda: mlflow.end_run("RUNNING"), f"leave MLflow run {run_id}")


def _refuse_repeated_permanent_failure(run_id: str, step: str) -> None:
    """Fail at once when this step already failed in this run with an error no retry can fix.

    Kubeflow retries a failed pod whatever the reason (``set_retry``); a retry of a user error
    would repeat minutes of work to fail the same way.
    """
    import mlflow

    run = with_retries(lambda: mlflow.MlflowClient().get_run(run_id), f"read run {run_id}")
    tags = run.data.tags
    if (run.info.status == "FAILED" and tags.get(FAILED_STEP_TAG) == step
            and tags.get(PERMANENT_TAG) == "true"):
        raise RepeatedFailure(f"{tags.get(FAILURE_TAG, 'a user error')} (not retried: the "
                              "previous attempt of this step failed the same way; fix the "
                              "input and start a new run)")


def close_stale_runs(experiment_id: str, keep: str) -> list[str]:
    """Mark KILLED the pipeline runs left RUNNING by steps that died without a word.

    A step killed with SIGKILL (out of memory, a deleted pod, a lost node) cannot end its run,
    and no later step of that pipeline run comes to do it: each pipeline run has its own key, so
    no other run ever reopens it. A run counts as lost once no step has reported
    (``dec.heartbeat``, refreshed at most every minute while a step logs) for
    ``STALE_RUN_SECONDS``. Returns the ids marked.
    """
    import mlflow

    limit = float(os.environ.get("DEC_STALE_RUN_SECONDS", STALE_RUN_SECONDS))
    client = mlflow.MlflowClient()
    runs = with_retries(lambda: client.search_runs([experiment_id], "attributes.status = 'RUNNING'",
                                                   max_results=100),
                        "look for stale runs")
    now = time.time()
    closed = []
    for run in runs:
        tags = run.data.tags
        if run.info.run_id == keep or RUN_KEY_TAG not in tags:
            continue
        try:
            last = float(tags.get(HEARTBEAT_TAG, run.info.start_time / 1000))
        except ValueError:
            last = run.info.start_time / 1000
        if now - last < limit:
            continue
        running = [k for k, v in tags.items() if k.startswith("step.") and v == STEP_RUNNING]
        try:
            mark_ended(run.info.run_id, "KILLED", {
                **{k: STEP_KILLED for k in running},
                FAILED_STEP_TAG: running[0][len("step."):] if running else "unknown",
                FAILURE_TAG: f"lost: no step reported for {int(now - last)} s; found by a "
                             "later pipeline run",
            })
            closed.append(run.info.run_id)
            log.warning("MLflow: run %s (pipeline run %s) was left RUNNING by a step that "
                        "died; marked KILLED", run.info.run_id, tags[RUN_KEY_TAG])
        except Exception as error:  # another run's bookkeeping must not fail this one
            log.warning("MLflow: could not close stale run %s: %s", run.info.run_id, error)
    return closed


def heartbeat() -> None:
    """Record on the active run that its step is alive (at most once a minute)."""
    global _last_heartbeat
    import mlflow

    now = time.time()
    if now - _last_heartbeat < _HEARTBEAT_EVERY or mlflow.active_run() is None:
        return
    _last_heartbeat = now
    with_retries(lambda: mlflow.set_tag(HEARTBEAT_TAG, str(int(now))), "record a heartbeat")


@contextmanager
def _signals_interrupt_the_step() -> Iterator[None]:
    """SIGTERM (what Kubernetes and the local CLI send) and SIGINT raise ``StepInterrupted``.

    Python's default for SIGTERM is to die on the spot, leaving the run RUNNING and the step
    tagged ``running``. The first signal ignores further ones, so a second Ctrl-C cannot cut the
    bookkeeping short. Only in the main thread (where Python delivers signals).
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise StepInterrupted(signum)

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _end_run(run_id: str, status: str) -> None:
    """End ``run_id`` with ``status``; again after a try that left the run ended but not marked."""
    import mlflow

    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        mlflow.end_run(status)  # leaves the active run first, then tells the server
    else:
        mlflow.MlflowClient().set_terminated(run_id, status)


def peak_memory_mb() -> float:
    """This process's peak resident memory (each step is its own process, or pod)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def log_params(params: dict[str, Any]) -> None:
    """Log ``params`` on the active run, None as ``none``, with retries."""
    import mlflow

    with_retries(lambda: mlflow.log_params({k: _param_value(v) for k, v in params.items()}),
                 "log parameters")


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    """Log ``metrics`` (at ``step``, if given) on the active run, with retries.

    Each call also refreshes the run's heartbeat, so a step that logs is never taken for lost
    (``close_stale_runs``).
    """
    import mlflow

    with_retries(lambda: mlflow.log_metrics({k: float(v) for k, v in metrics.items()},
                                            step=step), "log metrics")
    heartbeat()


def _param_value(value: Any) -> str:
    return "none" if value is None else str(value)


def run_record(run_id: str) -> dict[str, Any]:
    """A step run's parameters and latest metrics, to hand on in an artifact's metadata.

    Returns
    -------
    dict
        ``mlflow_run_id``, ``params`` and ``metrics`` (finite ones only: KFP metadata cannot
        carry NaN); what ``adopt`` takes.
    """
    import mlflow

    run = with_retries(lambda: mlflow.MlflowClient().get_run(run_id), f"read run {run_id}")
    # Non-finite values cannot travel in KFP metadata.
    return {"mlflow_run_id": run_id, "params": dict(run.data.params),
            "metrics": {k: v for k, v in run.data.metrics.items() if math.isfinite(v)}}


def adopt(step: str, record: dict[str, Any] | None) -> None:
    """Copy a cacheable step's record (``run_record``) into the active pipeline run.

    Cacheable steps log to a run of their own, keyed by their work, because a cache hit runs
    nothing; the first uncached step adopts their records, so the pipeline's run shows every
    step's parameters, times and results either way and links to the step's own run.
    """
    import mlflow

    active = mlflow.active_run()
    if not record or (active is not None and record["mlflow_run_id"] == active.info.run_id):
        return
    existing = active.data.params if active is not None else {}
    params = {k: v for k, v in record.get("params", {}).items() if k not in existing}
    if params:
        log_params(params)
    log_metrics(record.get("metrics", {}))
    with_retries(lambda: mlflow.set_tag(f"{step}.mlflow_run_id", record["mlflow_run_id"]),
                 "tag the adopted step")


_BUILT_IN_SCHEMES = ("", "file", "sqlite", "http", "https", "postgresql", "mysql", "mssql",
                     "databricks", "databricks-uc", "uc")
_SQLITE_MAGIC = b"SQLite format 3\x00"


def check_tracking_uri(uri: str, local: bool = True) -> str:
    """``uri`` if MLflow can use it, checked in milliseconds before anything starts.

    MLflow discovers an unusable URI late and slowly: a read-only SQLite path after about 100 s
    of its own retries, a file that is not a database or an unknown scheme as a traceback. The
    scheme must be one MLflow knows (built in, or a plugin's ``mlflow.tracking_store`` entry
    point). With ``local`` (the store is on this machine), a SQLite file must be a database or
    not exist yet, in a folder that can be written.

    Parameters
    ----------
    uri : str
        The tracking URI, as the user gave it.
    local : bool, default True
        Whether a SQLite path refers to this machine's file system.

    Returns
    -------
    str
        ``uri``, unchanged.

    Raises
    ------
    TrackingError
        One line naming the URI (its password masked) and what is wrong.
    """
    from importlib.metadata import entry_points

    bare = redact(uri)
    scheme = urlparse(uri).scheme.lower()
    plugins = {entry.name for entry in entry_points(group="mlflow.tracking_store")}
    if scheme not in _BUILT_IN_SCHEMES and scheme not in plugins:
        known = ", ".join(s for s in _BUILT_IN_SCHEMES if s) + (
            f", {', '.join(sorted(plugins))}" if plugins else "")
        raise TrackingError(f"--mlflow-uri {short_text(bare, 120)}: unknown scheme "
                            f"{short_text(scheme, 40)!r}; MLflow reads {known}")
    if local and scheme == "sqlite" and uri.lower().startswith("sqlite:///"):
        # SQLAlchemy's form: three slashes then the path (relative, or absolute with a fourth).
        path = uri[len("sqlite:///"):].split("?", 1)[0]
        if path and path != ":memory:":
            _check_sqlite_file(bare, Path(unquote(path)))
    return uri


def _check_sqlite_file(uri: str, path: Path) -> None:
    import stat
    import tempfile

    where = f"--mlflow-uri {short_text(uri, 120)}"
    try:
        info = os.stat(path)
    except FileNotFoundError:
        info = None
    except OSError as error:
        raise TrackingError(f"{where}: cannot use {path}: {error.strerror or error}") from None
    if info is not None:
        if not stat.S_ISREG(info.st_mode):
            raise TrackingError(f"{where}: {path} is not a regular file")
        try:
            with open(path, "rb") as f:
                head = f.read(len(_SQLITE_MAGIC))
        except OSError as error:
            raise TrackingError(f"{where}: cannot read {path}: {error.strerror or error}"
                                ) from None
        if head and head != _SQLITE_MAGIC:
            raise TrackingError(f"{where}: {path} is not an SQLite database; point the URI "
                                "at a new file or at an MLflow database")
    try:  # SQLite writes a journal beside the file: the folder itself must take a write
        with tempfile.TemporaryFile(dir=path.parent):
            pass
        if info is not None and not os.access(path, os.W_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as error:
        raise TrackingError(f"{where}: cannot write the database in {path.parent} "
                            f"({error.strerror or error}); use a writable path") from None


def end_if_left_running(run_id: str, status: str, reason: str,
                        steps: tuple[str, ...] = ()) -> str:
    """End ``run_id`` with ``status`` if its steps left it RUNNING; returns where it stopped.

    For the local CLI, which outlives its steps: interrupted between two steps, or after a step
    that died without a word, nobody else would end the run. ``steps`` (in order) name the
    place when no step was running ("after ingest").

    Parameters
    ----------
    run_id : str
        The pipeline run's MLflow run.
    status : str
        ``KILLED`` or ``FAILED``.
    reason : str
        Recorded as ``dec.failure``.
    steps : tuple of str
        The pipeline's steps in order.

    Returns
    -------
    str
        The step that was running, the step that failed, ``after <last step done>`` or
        ``before the first step``.
    """
    import mlflow

    run = with_retries(lambda: mlflow.MlflowClient().get_run(run_id), f"read run {run_id}")
    tags = run.data.tags
    running = [k[len("step."):] for k, v in tags.items()
               if k.startswith("step.") and v == STEP_RUNNING]
    done = [s for s in steps if tags.get(f"step.{s}") == STEP_DONE]
    where = (running[0] if running else tags.get(FAILED_STEP_TAG)
             or (f"after {done[-1]}" if done else "before the first step"))
    if run.info.status == "RUNNING":
        mark_ended(run_id, status, {
            **{f"step.{s}": STEP_KILLED if status == "KILLED" else STEP_FAILED
               for s in running},
            FAILED_STEP_TAG: where, FAILURE_TAG: short_text(reason, 240)})
    return where


class MlflowTracker:
    """The phases' tracker (``dec_lib.core.tracker.Tracker``) for the active MLflow run.

    A step opens the run (``step_run``); this only writes to it, through the same retrying
    calls as the rest of the step.
    """

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log ``params`` to the active run.

        Parameters
        ----------
        params : Mapping
            Dotted names to values; None is logged as ``none``.
        """
        log_params(dict(params))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log ``metrics`` to the active run, at ``step`` when given.

        Parameters
        ----------
        metrics : Mapping
            Dotted names to numbers.
        step : int, optional
            The epoch or iteration they belong to.
        """
        log_metrics(dict(metrics), step=step)

    def log_artifacts(self, folder: str | os.PathLike, artifact_path: str) -> None:
        """Upload every file in ``folder`` to the active run under ``artifact_path``.

        Parameters
        ----------
        folder : str or os.PathLike
            A local folder.
        artifact_path : str
            The folder's name in the run.
        """
        import mlflow

        with_retries(lambda: mlflow.log_artifacts(str(folder), artifact_path=artifact_path),
                     f"log the {artifact_path}")
