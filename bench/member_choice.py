"""Benchmark: choosing one of several finished runs by their agreement, without labels.

Each run's final clusters are computed once from its DEC model; then, for every combination of
``--members`` runs, `dec_lib.model.agreement.agreement_medoid` picks the run whose partition
agrees best with the others', and the labels score the pick afterwards. This measures what a
pipeline that trains that many members and keeps the medoid would reach, from runs that were
each made whole by the pipeline, before the pipeline does it itself.

Beside the pick, it scores the members' soft assignments averaged, after each member's clusters
are renumbered to the medoid's (matched by the Hungarian method on the two partitions, no
labels), and each image put in the cluster with the highest mean: what the pipeline's
``combine=mean`` model serves (``dec_lib.model.dec_model.mean_of_members``).

    .venv/bin/python bench/quality.py --preset best --seeds 0 1 2 3 4 --work-dir W
    .venv/bin/python bench/member_choice.py W/best-seed-* --members 3

A run made with ``members`` > 1 stands for its members (each loop iteration's DEC model), so
the same measures apply to the members that one pipeline run trained:

    .venv/bin/python bench/member_choice.py W/best-seed-2 --members 3   # W from --set members=3

Adds one record per call to ``bench/results/member_choice.json`` and prints a table.
"""

import argparse
import hashlib
import itertools
import os
import platform
import statistics
import time
from pathlib import Path

from dec_candidates import artifacts, run_outputs, seed_of
from records import merge_record


def trained_models(work: Path) -> list[tuple[str, int, Path, Path]]:
    """Name, seed, dataset and DEC model of the run in ``work``, or of each of its members."""
    run = run_outputs(work)
    seed = seed_of(work)
    members = sorted(run.glob("for-loop-*-iteration-*/dec-train/model"),
                     key=lambda path: int(path.parent.parent.name.rsplit("-", 1)[1]))
    if not members:
        return [(str(work), seed, artifacts(work)["dataset"], run / "dec-train" / "model")]
    dataset = run / "ingest" / "dataset"
    if not dataset.exists():
        raise SystemExit(f"{dataset}: missing (dataset)")
    from dec_lib.steps.choosing import member_seed

    return [(f"{work}/member-{i}", member_seed(seed, i), dataset, model)
            for i, model in enumerate(members)]


def final_labels(dataset_path: Path, model_path: Path) -> tuple[str, object, object]:
    """The fingerprint of the data, their labels, and the DEC model's soft assignments."""
    from dec_lib.data.datasets import read_dataset
    from dec_lib.model.dec_model import soft_assignments
    from dec_lib.model.saving import load_model

    dataset = read_dataset(str(dataset_path))
    model = load_model(str(model_path))
    fingerprint = hashlib.sha256(dataset.x.tobytes()).hexdigest()[:16]
    return fingerprint, dataset.y, soft_assignments(model, dataset.x)


def ensemble_labels(soft: list, reference: int):
    """Clusters from the members' soft assignments, averaged in the reference's numbering: what
    the pipeline's ``combine=mean`` model assigns (``dec_model.mean_of_members``)."""
    import numpy as np

    from dec_lib.model.agreement import aligned_order
    from dec_lib.model.dec_model import cluster_labels

    anchor = cluster_labels(soft[reference])
    return cluster_labels(np.mean([q[:, aligned_order(anchor, cluster_labels(q), q.shape[1])]
                                   for q in soft], axis=0))


def main() -> None:
    from dec_lib.model.agreement import agreement_medoid
    from dec_lib.model.dec_model import cluster_labels
    from dec_lib.model.metrics import evaluate_clustering

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work_dirs", nargs="+", type=Path,
                        help="work dirs of finished runs of one preset on one data set")
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--label", default="", help="what the runs are, for the record")
    args = parser.parse_args()
    trained = [found for work in args.work_dirs for found in trained_models(work)]
    if not 2 <= args.members <= len(trained):
        raise SystemExit(f"--members {args.members}: need 2 to {len(trained)} "
                         "(the number of trained models given)")
    runs, y, fingerprint = {}, None, None
    for work, seed, dataset_path, model_path in trained:
        found, truth, soft = final_labels(dataset_path, model_path)
        labels = cluster_labels(soft)
        if fingerprint not in (None, found):
            raise SystemExit(f"{work}: its data differ from {args.work_dirs[0]}'s "
                             "(compare runs on one data set)")
        fingerprint, y = found, truth
        report = evaluate_clustering(y, labels)
        runs[str(work)] = {"seed": seed, "labels": labels, "soft": soft,
                           "acc": report.acc, "nmi": report.nmi}
        print(f"{work}: seed {runs[str(work)]['seed']} ACC {report.acc:.4f} "
              f"NMI {report.nmi:.4f}", flush=True)
    picks = []
    for combo in itertools.combinations(runs, args.members):
        choice = agreement_medoid([runs[w]["labels"] for w in combo])
        chosen = combo[choice.index]
        mean = evaluate_clustering(y, ensemble_labels([runs[w]["soft"] for w in combo],
                                                      choice.index))
        picks.append({"runs": [runs[w]["seed"] for w in combo], "chosen": runs[chosen]["seed"],
                      "acc": runs[chosen]["acc"], "nmi": runs[chosen]["nmi"],
                      "agreement": [round(float(a), 5) for a in choice.agreement],
                      "ensemble_acc": mean.acc, "ensemble_nmi": mean.nmi})
    single = [r["acc"] for r in runs.values()]
    record = {
        "label": args.label, "members": args.members, "fingerprint": fingerprint,
        "runs": {w: {k: v for k, v in r.items() if k not in ("labels", "soft")}
                 for w, r in runs.items()},
        "single_run": {"median_acc": statistics.median(single), "min_acc": min(single),
                       "median_nmi": statistics.median(r["nmi"] for r in runs.values())},
        "chosen": {"combinations": len(picks),
                   "median_acc": statistics.median(p["acc"] for p in picks),
                   "min_acc": min(p["acc"] for p in picks),
                   "median_nmi": statistics.median(p["nmi"] for p in picks)},
        "ensemble": {"median_acc": statistics.median(p["ensemble_acc"] for p in picks),
                     "min_acc": min(p["ensemble_acc"] for p in picks),
                     "median_nmi": statistics.median(p["ensemble_nmi"] for p in picks)},
        "picks": picks,
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs",
        "date": time.strftime("%Y-%m-%d"),
    }
    merge_record("member_choice", record, indent=1)
    s, c, e = record["single_run"], record["chosen"], record["ensemble"]
    print("| | runs | median ACC | min ACC | median NMI |\n|---|---|---|---|---|")
    print(f"| one run | {len(single)} | {s['median_acc']:.4f} | {s['min_acc']:.4f} | "
          f"{s['median_nmi']:.4f} |")
    print(f"| medoid of {args.members} | {c['combinations']} combinations | "
          f"{c['median_acc']:.4f} | {c['min_acc']:.4f} | {c['median_nmi']:.4f} |")
    print(f"| mean soft assignment of {args.members} | {c['combinations']} combinations | "
          f"{e['median_acc']:.4f} | {e['min_acc']:.4f} | {e['median_nmi']:.4f} |")


if __name__ == "__main__":
    main()
