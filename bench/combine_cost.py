"""Benchmark: what ``combine=mean`` costs to serve, against its chosen member alone.

Loads the members of one finished run with ``members`` > 1, builds the model the pipeline
registers with ``combine=mean`` (``dec_model.mean_of_members``, numbered as the agreement
medoid) and the medoid member's own model (``combine=medoid``), and times their soft
assignments of the same images, alternating, in one process, after a warm-up call each.

    .venv/bin/python bench/combine_cost.py W/best-seed-2 --images 10000 --repeats 5

Adds one record to ``bench/results/combine_cost.json`` and prints the medians and their ratio.
"""

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

from member_choice import trained_models
from records import merge_record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work_dir", type=Path, help="a finished run with members > 1")
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from dec_lib.data.datasets import read_dataset
    from dec_lib.model.agreement import agreement_medoid, aligned_order
    from dec_lib.model.dec_model import cluster_labels, mean_of_members, soft_assignments
    from dec_lib.model.saving import load_model

    members = trained_models(args.work_dir)
    if len(members) < 2:
        raise SystemExit(f"{args.work_dir}: not a run with members > 1")
    x = read_dataset(str(members[0][2])).x
    models = [load_model(path / "dec.keras") for *_, path in members]
    labels = [cluster_labels(soft_assignments(m, x)) for m in models]
    chosen = agreement_medoid(labels).index
    k = soft_assignments(models[chosen], x[:1]).shape[1]
    mean = mean_of_members(models, [aligned_order(labels[chosen], lab, k) for lab in labels])
    batch = x[: args.images]
    timed = {"medoid": models[chosen], "mean": mean}
    seconds: dict[str, list[float]] = {name: [] for name in timed}
    for model in timed.values():
        soft_assignments(model, batch[:1024])  # compile
    for _ in range(args.repeats):
        for name, model in timed.items():
            started = time.perf_counter()
            soft_assignments(model, batch)
            seconds[name].append(time.perf_counter() - started)
    median = {name: statistics.median(s) for name, s in seconds.items()}
    record = {
        "run": str(args.work_dir), "members": len(models), "images": len(batch),
        "seconds": seconds, "median_seconds": median,
        "images_per_second": {n: len(batch) / s for n, s in median.items()},
        "mean_over_medoid": median["mean"] / median["medoid"],
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs",
        "date": time.strftime("%Y-%m-%d"),
    }
    merge_record("combine_cost", record, indent=1)
    print("| model | median s | images/s |\n|---|---|---|")
    for name in timed:
        print(f"| {name} | {median[name]:.3f} | {len(batch) / median[name]:,.0f} |")
    print(f"mean / medoid time: {record['mean_over_medoid']:.2f}x")


if __name__ == "__main__":
    main()
