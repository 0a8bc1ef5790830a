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
import os
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dec_lib.config.sections import RunConfig
from dec_lib.errors import DecError
from dec_lib.mlops import tracking
from dec_lib.runtime import devices, thread_pools
from dec_lib.runtime.progress import setup_logging

log = logging.getLogger("dec.steps")


ERROR_FILE_ENV = "DEC_ERROR_FILE"

_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES,
                   errno.EPERM}


def user_errors_exit(step: Callable) -> Callable:
    """Turn a user mistake into one log line and exit status 1 instead of a traceback.

    The line also goes to ``$DEC_ERROR_FILE`` when set, so that the local CLI, which sees only
    that a task failed, can tell the user why.
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
    """A user mistake (bad data, settings, names): the same inputs fail the same way again.

    Tracking failures and storage errors (a full disk) may pass, so they stay retryable.
    """
    return isinstance(error, DecError) and not isinstance(error, tracking.TrackingError)


def _report(message: str) -> None:
    """One line to the log and to ``$DEC_ERROR_FILE``, which the local CLI shows the user."""
    log.error(message)
    if os.environ.get(ERROR_FILE_ENV):
        with open(os.environ[ERROR_FILE_ENV], "a", encoding="utf-8") as f:
            f.write(message + "\n")


@dataclass
class TrackingContext:
    """Which MLflow run a step writes to."""

    run_key: str
    tracking_uri: str = ""
    experiment: str = tracking.DEFAULT_EXPERIMENT
    owns_run: bool = False
    """The run is this step's own (a cacheable step's, see ``own``), not the pipeline's."""

    LAST_STEP: typing.ClassVar[str] = "register"

    def step(self, name: str):
        """The step's MLflow run; only the last step, or a step's own run, ends it FINISHED."""
        return tracking.step_run(self.run_key, name, tracking_uri=self.tracking_uri or None,
                                 experiment=self.experiment,
                                 final=self.owns_run or name == self.LAST_STEP)

    def own(self, step: str, *work: Any) -> TrackingContext:
        """Without a pipeline run key (a cacheable step), a run of the step's own, keyed by
        its work: a rerun of the same work logs to the same run."""
        if self.run_key:
            return self
        key = hashlib.sha256(json.dumps(work, sort_keys=True, default=str).encode())
        return dataclasses.replace(self, run_key=f"{step}-{key.hexdigest()[:16]}", owns_run=True)


def begin(step: str, tensorflow: bool = True) -> None:
    """What every step does first, in this order.

    Logging; thread pools sized to the pod's CPU limit, which must happen before TensorFlow and
    numba start their pools; then, on a step given GPUs, the check that TensorFlow sees them,
    before any data is read, so a node without a working GPU fails in seconds with one line.
    """
    setup_logging()
    thread_pools.size_thread_pools(tensorflow=tensorflow)
    devices.check_gpus(step)


def config_from_sections(seed: int = 0, **sections: dict[str, Any]) -> RunConfig:
    """A validated RunConfig from the sections a step receives; the others keep defaults."""
    return RunConfig.from_dict({"seed": seed, **sections})


def log_sections(config: RunConfig, *sections: str) -> None:
    flat = config.flat()
    tracking.log_params({k: v for k, v in flat.items()
                         if k.split(".")[0] in sections or k == "seed"})


def finite(meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` with NaN and infinities as None: KFP artifact metadata refuses them."""
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
    """
    digest = hashlib.sha256()
    digest.update(str(x.shape).encode())
    digest.update(np.ascontiguousarray(x).tobytes())
    if y is not None:
        digest.update(b"labels")
        digest.update(np.ascontiguousarray(y, dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]


