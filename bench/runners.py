"""Benchmark: the same DAG under kfp.local's two runners, side by side in one invocation.

Runs ``dec-pipeline run`` with ``--runner subprocess`` (every step in this Python environment)
and ``--runner docker`` (every step in a container of the built image), alternating, on the
same configuration and seed, each in a fresh work dir, and reports the wall time and the time
each step's own work took (``phase_seconds``); the difference is what containers cost.

    source docker/podman-env.sh service      # or a Docker engine
    .venv/bin/python bench/runners.py --repeats 2 --preset quick

Writes ``bench/results/runners.json`` and prints a Markdown table.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
RUNNERS = ("subprocess", "docker")


def run_once(runner: str, preset: str, seed: int, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bench-{runner}-") as work:
        summary = Path(work) / "summary.json"
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pipelines.cli", "-q", "run", "--runner", runner,
                        "--preset", preset, "--seed", str(seed), "--work-dir", work,
                        "--summary", str(summary), *extra], check=True,
                       env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"})
        wall = time.perf_counter() - started
        result = json.loads(summary.read_text())
    return {"runner": runner, "wall_s": round(wall, 1), "acc": result["acc"],
            "phase_s": result["phase_seconds"],
            "steps_s": round(sum(result["phase_seconds"].values()), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    extra = [f"--set={s}" for s in args.set]

    runs = [run_once(runner, args.preset, args.seed, extra)
            for _ in range(args.repeats) for runner in RUNNERS]
    summary = {}
    for runner in RUNNERS:
        mine = [r for r in runs if r["runner"] == runner]
        summary[runner] = {"wall_s": statistics.median(r["wall_s"] for r in mine),
                           "steps_s": statistics.median(r["steps_s"] for r in mine),
                           "acc": [r["acc"] for r in mine]}
    ratio = summary["docker"]["wall_s"] / summary["subprocess"]["wall_s"]
    record = {"command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
              "date": time.strftime("%Y-%m-%d"), "machine": platform.processor()
              or platform.machine(), "cores": os.cpu_count(), "runs": runs,
              "median": summary, "docker_over_subprocess_wall": round(ratio, 2)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "runners.json").write_text(json.dumps(record, indent=2) + "\n")
    print("| runner | wall (median) | steps' own work | ACC |")
    print("|---|---|---|---|")
    for runner in RUNNERS:
        s = summary[runner]
        print(f"| {runner} | {s['wall_s']:.0f} s | {s['steps_s']:.0f} s | "
              f"{', '.join(f'{a:.4f}' for a in s['acc'])} |")
    print(f"\ndocker / subprocess wall time: {ratio:.2f}")


if __name__ == "__main__":
    main()
