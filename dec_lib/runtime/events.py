"""Events a step reports to whoever runs it: one JSON object per line on the step's stderr.

A step cannot call back into the process that started it: under ``kfp.local`` it is a child
process or a container, on a cluster a pod. What all of them keep is the step's output, which
kfp.local's runners (subprocess and docker) stream into the CLI and a cluster keeps as the pod
log. So a step reports on its output, one JSON object per line, marked by the key ``dec_event``
so that no other line (TensorFlow's, MLflow's, KFP's executor's) can pass for one:

``{"dec_event": "log", "time": ..., "severity": ..., "logger": ..., "message": ...}``
    One record of our loggers (``dec_lib.runtime.progress.LOGGERS``): progress with its ETA,
    warnings, what a step did. The local CLI shows these without ``--verbose``.
``{"dec_event": "run", "run_id": ...}``
    The MLflow run a step opened: the local CLI ends it when the pipeline stops, interrupted or
    crashed, with nobody left to end it.
``{"dec_event": "error", "message": ...}``
    Why a step failed, in one line: the line the local CLI shows the user.

On a cluster the lines stay in the pod log, where they read as structured logs (``severity``
and ``message`` are the fields log collectors such as Cloud Logging pick up).
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from typing import Any, Literal

MARKER = "dec_event"
"""The key that makes a line an event."""

LOG, RUN, ERROR = "log", "run", "error"
KINDS = (LOG, RUN, ERROR)

Kind = Literal["log", "run", "error"]


@dataclass(frozen=True)
class Event:
    """One event read back from a step's output.

    Parameters
    ----------
    kind : {"log", "run", "error"}
        What the event reports.
    fields : dict
        Its content: ``message`` for errors and log records, ``run_id`` for runs, and the
        time, severity and logger of a log record.
    """

    kind: Kind
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def message(self) -> str:
        """The event's ``message`` (empty for a run event)."""
        return str(self.fields.get("message", ""))


def emit(kind: Kind, **fields: Any) -> None:
    """Write one event as one line to this process's stderr.

    Parameters
    ----------
    kind : {"log", "run", "error"}
        What the event reports.
    **fields
        Its content; values must be JSON-serialisable (others are written as their ``str``).

    Notes
    -----
    ``sys.stderr`` is looked up at each call, not kept, so output captured or redirected
    after start-up (pytest's ``capsys``) still gets the event. The line is flushed at once: a
    step killed right after reporting its run must not take the report with it.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind!r}; one of {', '.join(KINDS)}")
    line = json.dumps({MARKER: kind, **fields}, default=str, ensure_ascii=False)
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def parse(line: str) -> Event | None:
    """The event ``line`` holds, or None for any other line.

    Parameters
    ----------
    line : str
        One line of a step's output, as a runner relays it (kfp.local indents it).

    Returns
    -------
    Event or None
        None unless the line is a JSON object whose ``dec_event`` names a known kind.
    """
    text = line.strip()
    if not text.startswith("{") or MARKER not in text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get(MARKER) not in KINDS:
        return None
    kind = data.pop(MARKER)
    return Event(kind, data)


def log_fields(record: logging.LogRecord, formatter: logging.Formatter) -> dict[str, Any]:
    """The content of the log event for ``record``.

    Parameters
    ----------
    record : logging.LogRecord
        A record of one of our loggers.
    formatter : logging.Formatter
        Formats the record's time and any traceback, as the text log would.

    Returns
    -------
    dict
        ``time``, ``severity``, ``logger`` and ``message`` (with the traceback, if any).
    """
    message = record.getMessage()
    if record.exc_info:
        message += "\n" + formatter.formatException(record.exc_info)
    return {"time": formatter.formatTime(record, formatter.datefmt),
            "severity": record.levelname, "logger": record.name, "message": message}


class EventHandler(logging.Handler):
    """A logging handler that writes each record as a log event (see ``emit``).

    Parameters
    ----------
    formatter : logging.Formatter
        Formats the record's time and traceback.
    """

    def __init__(self, formatter: logging.Formatter):
        super().__init__()
        self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        """Write ``record`` as one log event; a failure goes to ``handleError`` as usual."""
        try:
            emit(LOG, **log_fields(record, self.formatter or logging.Formatter()))
        except Exception:  # logging's contract: a handler never raises into the caller
            self.handleError(record)
