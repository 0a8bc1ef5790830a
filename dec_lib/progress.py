"""Log set-up and progress lines with an ETA, for steps that run longer than a few seconds."""

from __future__ import annotations

import logging
import os
import sys
import time

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup_logging(level: str | int | None = None) -> None:
    """Route this process's logs to stderr in one format; ``DEC_LOG_LEVEL`` picks the level."""
    level = level or os.environ.get("DEC_LOG_LEVEL", "INFO")
    root = logging.getLogger()
    if not any(getattr(h, "_dec", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S"))
        handler._dec = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else str(level).upper())
    for noisy in ("absl", "tensorflow", "h5py", "numba", "alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
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
