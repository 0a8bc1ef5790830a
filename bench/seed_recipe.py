"""Benchmark: the faithful ``seed`` recipe on all 70,000 MNIST digits.

Records raw-pixel K-Means, autoencoder + K-Means and DEC (ACC/NMI/ARI) with the time of every
phase, so the published anchors (raw K-Means about 0.53, DEC 0.84 in Xie et al. 2016) can be
checked against this implementation. Runs the real pipeline (``dec-pipeline run``).

    .venv/bin/python bench/seed_recipe.py --seed 0 [--set pretrain.epochs=300 ...]

Writes ``bench/results/seed_recipe-<seed>.json`` and prints a Markdown table row.
"""

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans

from dec_lib.data.datasets import load_dataset
from dec_lib.model.metrics import evaluate_clustering

RESULTS = Path(__file__).resolve().parent / "results"


def raw_pixel_kmeans(seed: int, n_init: int) -> dict:
    data = load_dataset("mnist")
    started = time.perf_counter()
    labels = KMeans(n_clusters=10, n_init=n_init, random_state=seed).fit_predict(data.x)
    report = evaluate_clustering(data.y, labels)
    return {"acc": report.acc, "nmi": report.nmi, "ari": report.ari,
            "seconds": time.perf_counter() - started}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", default="seed")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--raw-n-init", type=int, default=10)
    parser.add_argument("--work-dir", default="work/bench-seed")
    args = parser.parse_args()

    raw = raw_pixel_kmeans(args.seed, args.raw_n_init)
    print(f"raw-pixel K-Means: acc {raw['acc']:.4f} nmi {raw['nmi']:.4f} "
          f"({raw['seconds']:.0f}s)", flush=True)

    work = Path(args.work_dir) / f"seed-{args.seed}"
    summary_path = work / "summary.json"
    command = [sys.executable, "-m", "pipelines.cli", "run", "--preset", args.preset,
               "--seed", str(args.seed), "--work-dir", str(work), "--summary",
               str(summary_path), "--model-name", f"bench-{args.preset}"]
    for assignment in args.set:
        command += ["--set", assignment]
    subprocess.run(command, check=True)
    summary = json.loads(summary_path.read_text())

    from mlflow import MlflowClient

    metrics = MlflowClient(summary["tracking_uri"]).get_run(summary["mlflow_run_id"]).data.metrics
    result = {
        "preset": args.preset, "seed": args.seed, "overrides": args.set,
        "raw_kmeans": raw,
        "ae_kmeans": {"acc": metrics.get("init_clusters.acc"),
                      "nmi": metrics.get("init_clusters.nmi")},
        "dec": {k: summary[k] for k in ("acc", "nmi", "ari")},
        "dec_iterations": metrics.get("dec_train.iterations"),
        "pretrain_final_loss": metrics.get("pretrain.final_loss"),
        "phase_seconds": summary["phase_seconds"],
        "wall_seconds": summary["wall_seconds"],
        "machine": f"{platform.machine()} {platform.processor() or ''} cpus={_cpus()}".strip(),
        "date": time.strftime("%Y-%m-%d"),
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{args.preset}_recipe-{args.seed}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    p = summary["phase_seconds"]
    print("| seed | raw K-Means ACC | AE+K-Means ACC | DEC ACC | DEC NMI | DEC ARI | iterations "
          "| pretrain s | kmeans s | DEC s | wall s |")
    print(f"| {args.seed} | {raw['acc']:.3f} | {result['ae_kmeans']['acc']:.3f} | "
          f"{summary['acc']:.3f} | {summary['nmi']:.3f} | {summary['ari']:.3f} | "
          f"{result['dec_iterations']:.0f} | {p['pretrain']:.0f} | {p['init_clusters']:.0f} | "
          f"{p['dec_train']:.0f} | {summary['wall_seconds']:.0f} |")
    print(f"wrote {out}")
    return 0


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    sys.exit(main())
