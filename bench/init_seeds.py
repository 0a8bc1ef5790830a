"""Benchmark: one run's initialisation redone under several seeds, on its pretrained model.

Says whether a poor initial partition comes from the initialisation's own randomness (UMAP's
layout and the mixture's restarts, both seeded) or from the embedding, and which seed a
label-free consensus (the partition with the highest mean ARI to the others) would choose.
Labels only score the partitions.

    .venv/bin/python bench/init_seeds.py --preset best W/best-seed-0 --seeds 0 1 2
"""

import argparse
import time
from pathlib import Path

from dec_candidates import artifacts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work_dir", type=Path, help="a finished run's work dir")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args()

    import numpy as np
    from sklearn.metrics import adjusted_rand_score

    from dec_lib.config import preset
    from dec_lib.core.phases import initialise
    from dec_lib.data.datasets import read_dataset
    from dec_lib.model.metrics import cluster_accuracy
    from dec_lib.model.saving import load_model

    paths = artifacts(args.work_dir)
    dataset = read_dataset(str(paths["dataset"]))
    autoencoder = load_model(str(paths["autoencoder"]))
    config = preset(args.preset)
    labels = {}
    for seed in args.seeds:
        started = time.perf_counter()
        labels[seed] = initialise(autoencoder, dataset.x, config.dec.n_clusters, config.init,
                                  seed=seed).init.labels
        print(f"initialisation seed {seed}: ACC {cluster_accuracy(dataset.y, labels[seed]):.4f}"
              f" in {time.perf_counter() - started:.0f} s", flush=True)
    if len(args.seeds) > 1:
        agreement = {a: float(np.mean([adjusted_rand_score(labels[a], labels[b])
                                       for b in args.seeds if b != a])) for a in args.seeds}
        chosen = max(args.seeds, key=agreement.get)
        print(f"mean ARI to the others: { {s: round(v, 4) for s, v in agreement.items()} }; "
              f"consensus chooses seed {chosen}: ACC "
              f"{cluster_accuracy(dataset.y, labels[chosen]):.4f}")


if __name__ == "__main__":
    main()
