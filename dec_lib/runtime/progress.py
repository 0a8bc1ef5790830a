"""Log set-up and progress lines with an ETA, for steps that run longer than a few seconds."""

from __future__ import annotations

import logging
import os
import re
import sys
import time

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


LOGGERS = ("dec", "dec_lib")
"""Our loggers; they do not propagate, so a host's root handler (KFP's) does not repeat them."""
LINE_PATTERN = re.compile(r"^\s*\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+dec")
"""Matches a line written through ``LOG_FORMAT`` by one of ``LOGGERS``."""


def setup_logging(level: str | int | None = None) -> None:
    """Send our logs to stderr in one format; ``DEC_LOG_LEVEL`` picks the level."""
    level = level or os.environ.get("DEC_LOG_LEVEL", "INFO")
    level = level if isinstance(level, int) else str(level).upper()
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(getattr(h, "_dec", False) for h in logger.handlers):
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S"))
            handler._dec = True  # type: ignore[attr-defined]
            logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
    for noisy in ("absl", "tensorflow", "h5py", "numba", "alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{seconds:02d}s"
    return f"{seconds}s"


class Progress:
    """Counts units of work and reports ``done/total``, rate and remaining time."""

    def __init__(self, total: int):
        self.total = max(int(total), 1)
        self.start_done: int | None = None
        self.started = time.perf_counter()

    def eta(self, done: int) -> str:
        if self.start_done is None:
            # The first report fixes the baseline, so a resumed run's ETA counts only new work.
            self.start_done = max(0, done - 1)
        elapsed = time.perf_counter() - self.started
        fresh = done - self.start_done
        if fresh <= 0:
            return "?"
        return format_duration(elapsed / fresh * (self.total - done))

    def line(self, done: int) -> str:
        return f"{done}/{self.total} ({100 * done / self.total:.0f}%), ETA {self.eta(done)}"
