"""Benchmark: where the manifold initialisation's partition departs from the classes.

For each finished run, embeds the images once with its pretrained autoencoder, then redoes the
initialisation (UMAP + full-covariance Gaussian mixture, as ``init.method=umap`` does) under
several UMAP settings and seeds. Each row gives ACC, NMI, the largest cluster's size and the
classes it holds, so a low ACC can be told apart as a merge of classes or a split of one. The
embedding's 10-nearest-neighbour label agreement says whether the classes are told apart locally
at all. Labels only score; nothing here feeds back into training.

``--representation`` clusters something other than the embedding with the same UMAP + mixture:
the pixels themselves, or the output of one of the encoder's hidden layers (``encoder_0`` to
``encoder_2``: 500, 500 and 2,000 units in d-500-500-2000-10), to tell whether the embedding or
the partitioning limits the initialisation.

    .venv/bin/python bench/init_structure.py W/default-seed-0 W/default-seed-1 --seeds 0 1 2
    .venv/bin/python bench/init_structure.py W/default-seed-0 --representation pixels

Appends one record per run, variant and seed to ``bench/results/init_structure.json``.
"""

import argparse
import json
import statistics
import time
from pathlib import Path

from dec_candidates import run_outputs, seed_of
from records import append_record

VARIANTS: dict[str, dict] = {
    "preset": {},
    "min-dist-0.1": {"min_dist": 0.1},
    # init.umap_components: the map's dimensions (the preset's 0 maps to one per cluster).
    "components-2": {"n_components": 2},
    "components-5": {"n_components": 5},
    # Angles rather than distances in the embedding: the autoencoder's scale is arbitrary.
    "metric-cosine": {"metric": "cosine"},
}
"""UMAP keyword arguments over the ones ``init.method=umap`` uses."""


def representation(encoder, x, name: str):
    """What is clustered: ``embedding``, ``pixels`` or the output of one of ``encoder``'s layers."""
    import keras
    import numpy as np

    from dec_lib.model.autoencoder import embed

    if name == "pixels":
        return np.asarray(x, dtype=np.float64)
    if name != "embedding":
        encoder = keras.Model(encoder.input, encoder.get_layer(name).output)
    return np.asarray(embed(encoder, x), dtype=np.float64)


def neighbour_agreement(z, y, k: int = 10, n: int = 20_000, seed: int = 0) -> float:
    """Fraction of a sample's points whose k nearest neighbours' majority label is their own."""
    import numpy as np
    from sklearn.model_selection import cross_val_predict
    from sklearn.neighbors import KNeighborsClassifier

    rows = np.random.default_rng(seed).choice(len(z), min(n, len(z)), replace=False)
    predicted = cross_val_predict(KNeighborsClassifier(k), z[rows], y[rows], cv=3)
    return float((predicted == y[rows]).mean())


def partition_scores(y, labels, n_clusters: int) -> dict:
    """ACC, NMI and the largest and smallest cluster's size of one partition."""
    import numpy as np
    from sklearn.metrics import normalized_mutual_info_score

    from dec_lib.model.metrics import cluster_accuracy

    sizes = np.bincount(labels, minlength=n_clusters)
    return {"acc": round(cluster_accuracy(y, labels), 4),
            "nmi": round(float(normalized_mutual_info_score(y, labels)), 4),
            "largest": int(sizes.max()), "smallest": int(sizes.min())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work_dirs", nargs="+", type=Path, help="finished runs' work dirs")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2],
                        help="UMAP and mixture seeds to try on each run's embedding")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--representation", default="embedding",
                        choices=["embedding", "pixels", "encoder_0", "encoder_1", "encoder_2"],
                        help="what UMAP + the mixture cluster (default: the 10-d embedding)")
    args = parser.parse_args()

    import numpy as np

    from dec_lib.config import preset
    from dec_lib.data.datasets import read_dataset
    from dec_lib.model.autoencoder import encoder_of
    from dec_lib.model.initialisation import _manifold_labels
    from dec_lib.model.saving import load_model

    config = preset(args.preset)
    rows = []
    for work in args.work_dirs:
        outputs = run_outputs(work)
        dataset = read_dataset(str(outputs / "ingest" / "dataset"))
        z = representation(encoder_of(load_model(str(outputs / "pretrain" / "model"))),
                           dataset.x, args.representation)
        y = dataset.y
        agreement = neighbour_agreement(z, y)
        print(f"{work}: the {args.representation}'s 10-NN label agreement {agreement:.4f}",
              flush=True)
        for name in args.variants:
            for seed in args.seeds:
                started = time.perf_counter()
                labels = _manifold_labels(z, config.dec.n_clusters, config.init, seed,
                                          VARIANTS[name])
                scores = partition_scores(y, labels, config.dec.n_clusters)
                largest = labels == np.bincount(labels).argmax()
                held = np.bincount(y[largest], minlength=int(y.max()) + 1)
                record = append_record(
                    "init_structure", preset=args.preset, run=str(work), run_seed=seed_of(work),
                    variant=name, representation=args.representation, seed=seed,
                    umap_args=VARIANTS[name], **scores,
                    largest_holds={int(c): int(held[c]) for c in np.argsort(held)[::-1][:3]},
                    neighbour_agreement=round(agreement, 4),
                    seconds=round(time.perf_counter() - started))
                rows.append(record)
                print(json.dumps({k: record[k] for k in ("run_seed", "variant", "seed", "acc",
                                                         "nmi", "largest", "largest_holds")}),
                      flush=True)
    print("| variant | partitions | median ACC | min ACC | max ACC | median NMI "
          "| median largest cluster |\n" + "|---" * 7 + "|")
    for name in args.variants:
        acc = [r["acc"] for r in rows if r["variant"] == name]
        print(f"| {name} | {len(acc)} | {statistics.median(acc):.4f} | {min(acc):.4f} | "
              f"{max(acc):.4f} | "
              f"{statistics.median(r['nmi'] for r in rows if r['variant'] == name):.4f} | "
              f"{statistics.median(r['largest'] for r in rows if r['variant'] == name):.0f} |")


if __name__ == "__main__":
    main()
