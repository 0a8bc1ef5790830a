"""What every pipeline step shares: error reporting, its MLflow run, its start, the data's
fingerprint.

A KFP component hands its artifact paths to one of these and copies the returned metadata onto
its output artifacts; everything else a step does (validation, training, MLflow logging, timing,
progress) is here, where it can be tested without Kubeflow.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import hashlib
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dec_lib import names
from dec_lib.config import RunConfig
from dec_lib.errors import DecError
from dec_lib.mlops import tracking
from dec_lib.runtime import devices, events, thread_pools
from dec_lib.runtime.progress import setup_logging

log = logging.getLogger("dec.steps")


_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES,
                   errno.EPERM}


def user_errors_exit(step: Callable) -> Callable:
    """Turn a user mistake into one log line and exit status 1 instead of a traceback.

    The line is also reported as an error event (``dec_lib.runtime.events``), so that the local
    CLI, which otherwise sees only that a task failed, can tell the user why.

    Parameters
    ----------
    step : callable
        A pipeline step.

    Returns
    -------
    callable
        ``step``, exiting with status 1 on a user mistake (a ``DecError``, a storage error) and
        with 128 + the signal number when interrupted.
    """

    @functools.wraps(step)
    def wrapper(*args, **kwargs):
        try:
            return step(*args, **kwargs)
        except tracking.StepInterrupted as interrupted:
            # step_run has marked the run KILLED; the usual exit status of a signalled process.
            _report(f"{step.__name__}: {interrupted}; MLflow run marked KILLED")
            sys.exit(128 + interrupted.signum)
        except (DecError, OSError) as error:
            if isinstance(error, OSError) and not isinstance(error, DecError):
                if not error.filename and error.errno not in _STORAGE_ERRNOS:
                    raise  # not about storage: a real bug, keep the traceback
                # Disk full, quota, read-only: the user's environment, not a bug of ours.
                error = f"{error.filename or 'writing output'}: {error.strerror or error}"
            message = f"{step.__name__}: {error}"
            if is_permanent(error) and "not retried" not in message:
                message += " (not retried: a retry cannot fix this)"
            _report(message)
            sys.exit(1)

    return wrapper


def is_permanent(error: object) -> bool:
    """Whether ``error`` is a user mistake (bad data, settings, names), which a retry repeats.

    Tracking failures and storage errors (a full disk) may pass, so they stay retryable.

    Parameters
    ----------
    error : object
        The exception, or the message that stands for one.

    Returns
    -------
    bool
        True for a ``DecError`` other than a ``TrackingError``.
    """
    return isinstance(error, DecError) and not isinstance(error, tracking.TrackingError)


def _report(message: str) -> None:
    """One line to the log and as an error event, which the local CLI shows the user."""
    log.error(message)
    events.emit(events.ERROR, message=message)


@dataclass
class TrackingContext:
    """Which MLflow run a step writes to.

    Parameters
    ----------
    run_key : str
        The pipeline run's key (its KFP run id); empty for a cacheable step (see ``own``).
    tracking_uri : str, default ""
        MLflow tracking URI; empty means ``$MLFLOW_TRACKING_URI``.
    experiment : str
        MLflow experiment (``dec_lib.names.DEFAULT_EXPERIMENT`` unless given).
    owns_run : bool, default False
        The run is this step's own (a cacheable step's, see ``own``), not the pipeline's.
    """

    run_key: str
    tracking_uri: str = ""
    experiment: str = names.DEFAULT_EXPERIMENT
    owns_run: bool = False

    def step(self, name: str):
        """The step's MLflow run, as a context manager (``tracking.step_run``).

        Only the pipeline's last step (``dec_lib.names.LAST_STEP``), a step's own run, or a
        member's last step (``dec_lib.names.DEC_TRAIN`` in a member's run), ends the run
        FINISHED.

        Parameters
        ----------
        name : str
            The step, one of ``dec_lib.names.STEPS``.
        """
        return tracking.step_run(self.run_key, name, tracking_uri=self.tracking_uri or None,
                                 experiment=self.experiment,
                                 final=self.owns_run or name == names.LAST_STEP
                                 or (name == names.DEC_TRAIN
                                     and tracking.parent_run_key(self.run_key) is not None))

    def own(self, step: str, *work: Any) -> TrackingContext:
        """This context, or, without a pipeline run key (a cacheable step), a run of its own.

        The own run is keyed by the step's work: a rerun of the same work logs to the same run.

        Parameters
        ----------
        step : str
            The step.
        *work
            What the step's result depends on (JSON-serialisable, else its ``str``).

        Returns
        -------
        TrackingContext
            ``self`` when it has a run key; else a copy keyed by ``step`` and ``work``.
        """
        if self.run_key:
            return self
        key = hashlib.sha256(json.dumps(work, sort_keys=True, default=str).encode())
        return dataclasses.replace(self, run_key=f"{step}-{key.hexdigest()[:16]}", owns_run=True)


def begin(step: str, tensorflow: bool = True) -> None:
    """What every step does first, in this order.

    Logging, as events (``dec_lib.runtime.events``) for whoever runs the step; thread pools
    sized to the pod's CPU limit, which must happen before TensorFlow and numba start their
    pools; then, on a step given GPUs, the check that TensorFlow sees them, before any data is
    read, so a node without a working GPU fails in seconds with one line.

    Parameters
    ----------
    step : str
        The step, for the GPU check's message.
    tensorflow : bool, default True
        Whether the step uses TensorFlow, whose thread pools are then sized too.
    """
    setup_logging(events=True)
    thread_pools.size_thread_pools(tensorflow=tensorflow)
    devices.check_gpus(step)


def config_from_sections(seed: int = 0, **sections: dict[str, Any]) -> RunConfig:
    """A validated RunConfig from the sections a step receives; the others keep defaults.

    Parameters
    ----------
    seed : int, default 0
        The run's seed.
    **sections : dict
        Configuration sections by name (``data``, ``pretrain``, ...), as KFP passes them.

    Returns
    -------
    RunConfig
        The configuration, validated.
    """
    return RunConfig.from_dict({"seed": seed, **sections})


def log_sections(config: RunConfig, *sections: str) -> None:
    """Log the settings of ``sections`` (and the seed) as the MLflow run's parameters.

    Parameters
    ----------
    config : RunConfig
        The step's configuration.
    *sections : str
        The sections the step uses.
    """
    flat = config.flat()
    tracking.log_params({k: v for k, v in flat.items()
                         if k.split(".")[0] in sections or k == "seed"})


def finite(meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` with NaN and infinities as None: KFP artifact metadata refuses them.

    Parameters
    ----------
    meta : dict
        Artifact metadata.

    Returns
    -------
    dict
        A copy whose non-finite floats are None.
    """
    return {k: None if isinstance(v, float) and not np.isfinite(v) else v
            for k, v in meta.items()}


def fingerprint(x: np.ndarray, y: np.ndarray | None = None) -> str:
    """Content hash of the images and their labels: equal data, equal fingerprint, whatever
    file or URI it came from.

    It covers everything ingest hands on, so an object replaced under the same URI is new data
    whenever it changes what the steps read: other pixels, more images, or other labels (which
    the promotion gate scores against). Bytes that decode to the same data (a PNG re-encoded)
    leave it unchanged; ingest records the digest of the raw bytes read as
    ``data.source_sha256`` beside it.

    Parameters
    ----------
    x : numpy.ndarray
        The images.
    y : numpy.ndarray, optional
        Their labels.

    Returns
    -------
    str
        The first 16 hex digits of a SHA-256 over the shape, pixels and labels.
    """
    digest = hashlib.sha256()
    digest.update(str(x.shape).encode())
    digest.update(np.ascontiguousarray(x).tobytes())
    if y is not None:
        digest.update(b"labels")
        digest.update(np.ascontiguousarray(y, dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]


