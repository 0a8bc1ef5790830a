"""Benchmark: DEC self-training variants from one run's pretrained model and initialisation.

Every variant starts from the same artifacts of a finished run (its dataset, pretrained
autoencoder and initial clusters), so the comparison isolates the self-training step and each
variant costs one DEC phase, not a whole run. Labels score the result and are never used to
train: they reach ``self_train`` only as its monitoring argument ``y``.

    .venv/bin/python bench/quality.py --preset default --seeds 0 1 2 3 4 --work-dir W
    .venv/bin/python bench/dec_candidates.py --preset default W/default-seed-*

Appends one record per run and variant to ``bench/results/dec_candidates.json`` and prints the
median, minimum and maximum of each variant over the runs.
"""

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

from records import merge_record

_RECIPE = {"dec.learning_rate": 0.01, "dec.augment_shift": 0, "dec.augment_rotation": 0.0,
           "dec.reconstruction_weight": 0.0}
"""The recipe's self-training (the `default` preset's until issue 14): every variant spells out
all four, so that a variant means the same whatever the preset says today."""

CANDIDATES: dict[str, dict] = {
    "lr-0.01": _RECIPE,
    "lr-0.001": {**_RECIPE, "dec.learning_rate": 0.001},
    "idec-10": {**_RECIPE, "dec.reconstruction_weight": 10.0},
    "shift-2": {**_RECIPE, "dec.augment_shift": 2},
    "shift-2-idec-10": {**_RECIPE, "dec.augment_shift": 2, "dec.reconstruction_weight": 10.0},
    "lr-0.03": {**_RECIPE, "dec.learning_rate": 0.03},
    "lr-0.03-shift-2": {**_RECIPE, "dec.learning_rate": 0.03, "dec.augment_shift": 2},
    "lr-0.03-shift-2-warmup-700": {**_RECIPE, "dec.learning_rate": 0.03, "dec.augment_shift": 2,
                                   "dec.warmup_iterations": 700},
    "warmup-2800-shift-2": {**_RECIPE, "dec.warmup_iterations": 2800, "dec.maxiter": 4200,
                            "dec.augment_shift": 2},
    "lr-0.03-shift-2-umap-20k": {**_RECIPE, "dec.learning_rate": 0.03, "dec.augment_shift": 2,
                                 "init.umap_fit_samples": 20_000},
    "lr-0.03-shift-2-umap-epochs-50": {**_RECIPE, "dec.learning_rate": 0.03,
                                       "dec.augment_shift": 2, "init.umap_epochs": 50},
    "lr-0.03-shift-1": {**_RECIPE, "dec.learning_rate": 0.03, "dec.augment_shift": 1},
    "lr-0.03-umap-epochs-50": {**_RECIPE, "dec.learning_rate": 0.03, "init.umap_epochs": 50},
    "lr-0.03-shift-1-umap-epochs-50": {**_RECIPE, "dec.learning_rate": 0.03,
                                       "dec.augment_shift": 1, "init.umap_epochs": 50},
    # UMAP's own 200 layout epochs, and the 136 that init.umap_epochs=0 now runs, on the 25,748
    # images of bench/imbalanced.py: both find their own initial clusters in one process.
    "lr-0.03-shift-2-umap-epochs-200": {**_RECIPE, "dec.learning_rate": 0.03,
                                        "dec.augment_shift": 2, "init.umap_epochs": 200},
    "lr-0.03-shift-2-umap-epochs-136": {**_RECIPE, "dec.learning_rate": 0.03,
                                        "dec.augment_shift": 2, "init.umap_epochs": 136},
    "lr-0.03-shift-2-umap-epochs-50-gmm-16": {**_RECIPE, "dec.learning_rate": 0.03,
                                              "dec.augment_shift": 2, "init.umap_epochs": 50,
                                              "init.n_init": 16},
    # UMAP's neighbourhood: the preset's 20 found again beside 10 (a quarter of the graph's
    # edges and of the layout's work), both from the same pretrained model.
    "lr-0.03-shift-2-umap-neighbors-20": {**_RECIPE, "dec.learning_rate": 0.03,
                                          "dec.augment_shift": 2, "init.umap_neighbors": 20},
    "lr-0.03-shift-2-umap-neighbors-10": {**_RECIPE, "dec.learning_rate": 0.03,
                                          "dec.augment_shift": 2, "init.umap_neighbors": 10},
    # DEC-DA's rotations of up to 10 degrees beside the shifts.
    "lr-0.03-shift-2-rot-10": {**_RECIPE, "dec.learning_rate": 0.03, "dec.augment_shift": 2,
                               "dec.augment_rotation": 10.0},
    # More mixture components on UMAP's map, joined by its neighbour graph to the clusters.
    "lr-0.03-shift-2-mixture-15": {**_RECIPE, "dec.learning_rate": 0.03, "dec.augment_shift": 2,
                                   "init.mixture_components": 15},
    "lr-0.03-shift-2-mixture-20": {**_RECIPE, "dec.learning_rate": 0.03, "dec.augment_shift": 2,
                                   "init.mixture_components": 20},
}
"""Variant name to its self-training settings over the preset's (IDEC's gamma of 0.1 on the
clustering loss is a reconstruction weight of 10 here, where KL(p || q) has weight 1). A variant
that changes an ``init.*`` setting finds its own initial clusters on the run's pretrained model
instead of taking the run's."""


def run_outputs(work: Path) -> Path:
    """The output folder of the latest pipeline run in ``work``."""
    outputs = sorted((work / "kfp-outputs").glob("*/"))
    if not outputs:
        raise SystemExit(f"{work}: no kfp-outputs/ (not a finished pipeline run's work dir)")
    return outputs[-1]


def artifacts(work: Path) -> dict[str, Path]:
    """The dataset, pretrained model and initial clusters of the pipeline run in ``work``."""
    run = run_outputs(work)
    found = {"dataset": run / "ingest" / "dataset", "autoencoder": run / "pretrain" / "model",
             "centres": run / "init-clusters" / "centres"}
    for name, path in found.items():
        if not path.exists():
            raise SystemExit(f"{path}: missing ({name})")
    return found


def run_variant(paths: dict[str, Path], preset: str, seed: int, overrides: dict) -> dict:
    from dec_lib.config import preset as named_preset
    from dec_lib.core.phases import initialise, self_train
    from dec_lib.data.datasets import read_dataset
    from dec_lib.model.dec_model import cluster_labels, soft_assignments
    from dec_lib.model.metrics import cluster_accuracy, evaluate_clustering
    from dec_lib.model.saving import load_model
    from dec_lib.steps.initialising import read_init

    config = named_preset(preset).with_overrides({**overrides, "seed": seed})
    dataset = read_dataset(str(paths["dataset"]))
    autoencoder = load_model(str(paths["autoencoder"]))
    init_seconds = None
    if any(key.startswith("init.") for key in overrides):
        started = time.perf_counter()
        init = initialise(autoencoder, dataset.x, config.dec.n_clusters, config.init,
                          seed=seed).init
        centres, initial_labels = init.centres, init.labels
        init_seconds = round(time.perf_counter() - started, 1)
    else:
        centres, initial_labels = read_init(str(paths["centres"]))
    started = time.perf_counter()
    trained = self_train(autoencoder, centres, initial_labels,
                         dataset.x, config.dec, seed=seed, y=dataset.y,
                         image_shape=dataset.image_shape)
    seconds = time.perf_counter() - started
    # Scored on the saved float32 weights, as the evaluate step scores them; the loop's own
    # last labels come from its bfloat16 copy and can differ in a few points.
    report = evaluate_clustering(dataset.y, cluster_labels(soft_assignments(trained.model,
                                                                              dataset.x)))
    after_warmup = next((u["acc"] for u in trained.updates
                         if u["iteration"] >= config.dec.warmup_iterations), None)
    return {"n_samples": len(dataset.x), "acc": report.acc, "nmi": report.nmi, "ari": report.ari,
            "init_acc": cluster_accuracy(dataset.y, initial_labels),
            "warmup_acc": after_warmup, "iterations": trained.result.iterations,
            "converged": trained.result.converged, "dec_seconds": round(seconds, 1),
            "init_seconds": init_seconds,
            "curve": [(u["iteration"], round(u["acc"], 5)) for u in trained.updates]}


def seed_of(work: Path) -> int:
    """The seed the run in ``work`` was made with (from its ``--summary``)."""
    return int(json.loads((work / "summary.json").read_text())["seed"])


def summarise(records: list[dict]) -> str:
    lines = ["| variant | runs | median ACC | min ACC | max ACC | median NMI | median init ACC "
             "| median gain over init | median DEC s |", "|---" * 9 + "|"]
    names = list(dict.fromkeys(r["variant"] for r in records))
    for name in names:
        rows = [r for r in records if r["variant"] == name]
        acc = [r["acc"] for r in rows]
        gain = [r["acc"] - r["init_acc"] for r in rows]
        lines.append(
            f"| {name} | {len(rows)} | {statistics.median(acc):.4f} | {min(acc):.4f} | "
            f"{max(acc):.4f} | {statistics.median(r['nmi'] for r in rows):.4f} | "
            f"{statistics.median(r['init_acc'] for r in rows):.4f} | "
            f"{statistics.median(gain):+.4f} | "
            f"{statistics.median(r['dec_seconds'] for r in rows):.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work_dirs", nargs="+", type=Path,
                        help="work dirs of finished runs (bench/quality.py's)")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--variants", nargs="+", default=list(CANDIDATES),
                        choices=list(CANDIDATES))
    args = parser.parse_args()
    records = []
    for work in args.work_dirs:
        paths = artifacts(work)
        seed = seed_of(work)
        for name in args.variants:
            record = {"preset": args.preset, "seed": seed, "variant": name, "work": str(work),
                      "overrides": CANDIDATES[name],
                      **run_variant(paths, args.preset, seed, CANDIDATES[name]),
                      "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs",
                      "date": time.strftime("%Y-%m-%d")}
            print(f"seed {seed} {name}: ACC {record['acc']:.4f} NMI {record['nmi']:.4f} "
                  f"(init {record['init_acc']:.4f}, after warm-up {record['warmup_acc']:.4f}) "
                  f"in {record['dec_seconds']} s", flush=True)
            records.append(record)
            merge_record("dec_candidates", record, indent=1)
    print(summarise(records))


if __name__ == "__main__":
    main()
