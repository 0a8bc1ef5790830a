"""Where the benches keep their raw records: one JSON line per run in ``bench/results/``."""

import json
import platform
import time
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
