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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

from dec_lib.errors import ConfigError, TrackingError

log = logging.getLogger(__name__)

RUN_KEY_TAG = "dec.pipeline_run"
RUN_KEY_DIGEST_TAG = "dec.pipeline_run_sha256"
"""The run key's SHA-256, which the steps search by: a key may hold any character, a digest
only hex digits, which a filter string cannot misread."""
DEFAULT_EXPERIMENT = "dec"

T = TypeVar("T")


def sqlite_uri(work_dir: str | os.PathLike) -> str:
    """The embedded default store: SQLite in the work dir, by absolute path."""
    return f"sqlite:///{Path(work_dir).resolve() / 'mlflow.db'}"


def resolve_tracking_uri(uri: str | None = None) -> str:
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
    for name, value in HTTP_RETRY_DEFAULTS.items():
        os.environ.setdefault(name, value)


def with_retries(action: Callable[[], T], what: str, attempts: int = 4,
                 first_delay: float = 1.0) -> T:
    """Run ``action``, retrying transient tracking-server failures with exponential backoff."""
    from mlflow.exceptions import MlflowException
    from requests.exceptions import RequestException

    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except (MlflowException, RequestException, ConnectionError, TimeoutError) as error:
            if not _is_transient(error) or attempt == attempts:
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


def configure(uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT) -> str:
    """Point MLflow at ``uri`` and make sure ``experiment`` exists; returns its id."""
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
    """
    if not run_key.strip():
        raise ConfigError("run_key", "is empty: every pipeline run needs a key of its own (the "
                          "compiled pipeline passes the run's id)")
    if run_key.startswith("{{") and run_key.endswith("}}"):
        raise ConfigError("run_key", f"{run_key} reached the step unresolved: this KFP backend "
                          "is older than 2.5; compile with --kfp-backend 2.2")
    return run_key


def find_or_create_run(run_key: str, experiment_id: str) -> str:
    """The id of the MLflow run for pipeline run ``run_key``."""
    import mlflow

    client = mlflow.MlflowClient()
    digest = hashlib.sha256(run_key.encode()).hexdigest()

    def find() -> str | None:
        runs = client.search_runs([experiment_id], f"tags.`{RUN_KEY_DIGEST_TAG}` = '{digest}'",
                                  max_results=1, order_by=["attributes.start_time ASC"])
        return runs[0].info.run_id if runs else None

    run_id = with_retries(find, f"look up the run of {run_key!r}")
    if run_id is None:
        run = with_retries(lambda: client.create_run(
            experiment_id, run_name=run_key, tags={RUN_KEY_TAG: run_key,
                                                   RUN_KEY_DIGEST_TAG: digest}),
            f"create the run of {run_key!r}")
        run_id = run.info.run_id
    return run_id


@contextmanager
def step_run(run_key: str, step: str, *, tracking_uri: str | None = None,
             experiment: str = DEFAULT_EXPERIMENT) -> Iterator[Any]:
    """Make the pipeline run's MLflow run active for one step, and time the step.

    The step's compute time is logged as ``phase_seconds.<step>``; a failing step marks the run
    failed, so a broken pipeline never looks finished in the MLflow UI. Every call to the server
    goes through ``with_retries``, and when the server is what failed, marking the run failed is
    only tried: the step's own error, not that one, is what the user sees.
    """
    import mlflow

    check_run_key(run_key)
    experiment_id = configure(tracking_uri, experiment)
    run_id = find_or_create_run(run_key, experiment_id)
    started = time.perf_counter()
    log.info("%s: started (MLflow run %s)", step, run_id)
    run = with_retries(lambda: mlflow.start_run(run_id=run_id), f"resume MLflow run {run_id}")
    try:
        with_retries(lambda: mlflow.set_tag(f"step.{step}", "running"), "mark the step running")
        yield run
        seconds = time.perf_counter() - started
        log_metrics({f"phase_seconds.{step}": seconds,
                     f"peak_memory_mb.{step}": peak_memory_mb()})
        with_retries(lambda: mlflow.set_tag(f"step.{step}", "done"), "mark the step done")
    except BaseException:
        try:
            _end_run(run_id, "FAILED")
        except Exception as error:  # never in place of the step's own error
            log.warning("MLflow: could not mark run %s failed: %s", run_id, error)
        raise
    with_retries(lambda: _end_run(run_id, "FINISHED"), f"finish MLflow run {run_id}")
    log.info("%s: done in %.1fs", step, seconds)


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
    import mlflow

    with_retries(lambda: mlflow.log_params({k: _param_value(v) for k, v in params.items()}),
                 "log parameters")


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    import mlflow

    with_retries(lambda: mlflow.log_metrics({k: float(v) for k, v in metrics.items()},
                                            step=step), "log metrics")


def _param_value(value: Any) -> str:
    return "none" if value is None else str(value)


def run_record(run_id: str) -> dict[str, Any]:
    """A step run's parameters and latest metrics, to hand on in an artifact's metadata."""
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
