"""Log set-up and progress lines with an ETA, for steps that run longer than a few seconds."""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

from dec_lib.runtime.events import EventHandler

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
TIME_FORMAT = "%H:%M:%S"

LOGGERS = ("dec", "dec_lib")
"""Our loggers; they do not propagate, so a host's root handler (KFP's) does not repeat them."""


def setup_logging(level: str | int | None = None, events: bool = False) -> None:
    """Send our logs to stderr, as text lines or as log events; ``DEC_LOG_LEVEL`` picks the level.

    Parameters
    ----------
    level : str or int, optional
        Logging level; default ``$DEC_LOG_LEVEL``, else INFO.
    events : bool, default False
        Write each record as a log event (``dec_lib.runtime.events``) instead of a text line:
        what a pipeline step does, so that whoever runs it can tell our records from any
        other output without parsing the text. The local CLI turns them back into text lines
        (``log_line``).
    """
    level = level or os.environ.get("DEC_LOG_LEVEL", "INFO")
    level = level if isinstance(level, int) else str(level).upper()
    formatter = logging.Formatter(LOG_FORMAT, datefmt=TIME_FORMAT)
    for name in LOGGERS:
        logger = logging.getLogger(name)
        ours = [h for h in logger.handlers if getattr(h, "_dec", False)]
        if [isinstance(h, EventHandler) for h in ours] != [events]:
            for handler in ours:
                logger.removeHandler(handler)
            handler = EventHandler(formatter) if events else logging.StreamHandler(sys.stderr)
            handler.setFormatter(formatter)
            handler._dec = True  # type: ignore[attr-defined]
            logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
    for noisy in ("absl", "tensorflow", "h5py", "numba", "alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def log_line(fields: dict[str, Any]) -> str:
    """The text line ``LOG_FORMAT`` gives for a log event's ``fields``.

    Parameters
    ----------
    fields : dict
        A log event's content (``dec_lib.runtime.events.log_fields``).

    Returns
    -------
    str
        The line, as the record would have been written as text (without the newline).
    """
    return LOG_FORMAT % {"asctime": fields.get("time", ""),
                         "levelname": fields.get("severity", ""),
                         "name": fields.get("logger", ""), "message": fields.get("message", "")}


def format_duration(seconds: float) -> str:
    """``seconds`` as a short duration for people: ``42s``, ``3m05s``, ``1h07m``.

    Parameters
    ----------
    seconds : float
        The duration; negative counts as zero.

    Returns
    -------
    str
        The duration rounded to the second, in at most two units.
    """
    seconds = max(0, round(seconds))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{seconds:02d}s"
    return f"{seconds}s"


class Progress:
    """Counts units of work and reports ``done/total`` and the remaining time.

    Parameters
    ----------
    total : int
        Units of work in all (epochs, iterations); at least 1 is assumed.
    """

    def __init__(self, total: int):
        self.total = max(int(total), 1)
        self.start_done: int | None = None
        self.started = time.perf_counter()

    def eta(self, done: int) -> str:
        """Time left after ``done`` units, at the rate since the first report, or ``?``.

        Parameters
        ----------
        done : int
            Units finished so far, counted from the start of the whole work.

        Returns
        -------
        str
            The remaining time (``format_duration``), ``?`` before any new unit is done.
        """
        if self.start_done is None:
            # The first report fixes the baseline, so a resumed run's ETA counts only new work.
            self.start_done = max(0, done - 1)
        elapsed = time.perf_counter() - self.started
        fresh = done - self.start_done
        if fresh <= 0:
            return "?"
        return format_duration(elapsed / fresh * (self.total - done))

    def line(self, done: int) -> str:
        """``done/total (percent), ETA remaining``: the progress part of a log line.

        Parameters
        ----------
        done : int
            Units finished so far.

        Returns
        -------
        str
            The text to put in the step's progress log line.
        """
        return f"{done}/{self.total} ({100 * done / self.total:.0f}%), ETA {self.eta(done)}"
