"""Where the benches keep their raw records in ``bench/results/``: one JSON line per run, or
one JSON list that a bench adds to run by run."""

import fcntl
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def append_record(name: str, **fields) -> dict:
    """Append today's date, the machine and ``fields`` as one line of ``results/<name>.json``."""
    record = {"date": time.strftime("%Y-%m-%d"),
              "machine": platform.processor() or platform.machine(), **fields}
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / f"{name}.json", "a") as f:
        f.write(json.dumps(record) + "\n")
    return record


def merge_record(name: str, record: dict, replaces: Callable[[dict], bool] = lambda old: False,
                 indent: int = 2) -> None:
    """Add ``record`` to the list in ``results/<name>.json``, dropping the old ones it replaces.

    The read, merge and write hold an exclusive lock on ``results/`` and the new list replaces
    the old by a rename, so two benches run side by side keep each other's records (each used to
    write back the list it had read when it started) and an interrupted write leaves the old
    file whole.
    """
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}.json"
    lock = os.open(RESULTS, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        records = json.loads(out.read_text()) if out.exists() else []
        records = [old for old in records if not replaces(old)] + [record]
        partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
        try:
            partial.write_text(json.dumps(records, indent=indent) + "\n")
            partial.replace(out)
        finally:
            partial.unlink(missing_ok=True)
    finally:
        os.close(lock)
