"""Benchmark: clustering quality over several seeds on all 70,000 MNIST digits.

Runs the real pipeline once per seed and reports the median, minimum and maximum of ACC, NMI
and ARI, the initial clustering's ACC, and the time of every phase.

    .venv/bin/python bench/quality.py --preset default --seeds 0 1 2 3 4

Writes ``bench/results/quality-<preset>.json`` (one record per seed, appended across
invocations) and prints a Markdown table.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from records import merge_record

from dec_lib.names import STEPS


def run_seed(preset: str, seed: int, work_root: Path, overrides: list[str]) -> dict:
    work = work_root / f"{preset}-seed-{seed}"
    summary_path = work / "summary.json"
    command = [sys.executable, "-m", "pipelines.cli", "--quiet", "run", "--preset", preset,
               "--seed", str(seed), "--work-dir", str(work), "--summary", str(summary_path),
               "--model-name", f"bench-{preset}"]
    for assignment in overrides:
        command += ["--set", assignment]
    subprocess.run(command, check=True)
    summary = json.loads(summary_path.read_text())
    from mlflow import MlflowClient

    from dec_lib.config import preset as named_preset

    metrics = MlflowClient(summary["tracking_uri"]).get_run(summary["mlflow_run_id"]).data.metrics
    return {
        "preset": preset, "seed": seed, "overrides": overrides,
        "config": named_preset(preset).with_overrides(overrides).flat(),
        "acc": summary["acc"], "nmi": summary["nmi"], "ari": summary["ari"],
        "init_acc": metrics.get("init_clusters.acc"),
        "dec_iterations": metrics.get("dec_train.iterations"),
        "phase_seconds": summary["phase_seconds"], "wall_seconds": summary["wall_seconds"],
        "peak_memory_mb": summary.get("peak_memory_mb"), "n_samples": summary["n_samples"],
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs",
        "date": time.strftime("%Y-%m-%d"),
    }


def table(records: list[dict]) -> str:
    lines = ["| seed | ACC | NMI | ARI | init ACC | DEC iters | "
             + " | ".join(f"{p} s" for p in STEPS) + " | wall s |",
             "|---" * (7 + len(STEPS)) + "|"]
    for r in records:
        lines.append(f"| {r['seed']} | {r['acc']:.4f} | {r['nmi']:.4f} | {r['ari']:.4f} | "
                     f"{r['init_acc']:.4f} | {r['dec_iterations']:.0f} | "
                     + " | ".join(f"{r['phase_seconds'][p]:.0f}" for p in STEPS)
                     + f" | {r['wall_seconds']:.0f} |")
    for name, pick in (("median", statistics.median), ("min", min), ("max", max)):
        cells = [pick([r[k] for r in records]) for k in ("acc", "nmi", "ari", "init_acc")]
        wall = pick([r["wall_seconds"] for r in records])
        lines.append(f"| **{name}** | " + " | ".join(f"{c:.4f}" for c in cells) + " | | "
                     + " | ".join(
                         f"{pick([r['phase_seconds'][p] for r in records]):.0f}"
                         for p in STEPS) + f" | {wall:.0f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--work-dir", default="work/bench-quality")
    args = parser.parse_args()

    records = []
    for seed in args.seeds:
        record = run_seed(args.preset, seed, Path(args.work_dir), args.set)
        records.append(record)
        # One record per seed and effective configuration: a preset that changed keeps history.
        merge_record(f"quality-{args.preset}", record,
                     lambda old, new=record: (old["seed"], old.get("config"))
                     == (new["seed"], new["config"]))
        print(f"seed {seed}: acc {record['acc']:.4f} nmi {record['nmi']:.4f} "
              f"({record['wall_seconds']:.0f}s)", flush=True)
    print(table(sorted(records, key=lambda r: r["seed"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
