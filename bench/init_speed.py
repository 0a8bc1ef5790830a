"""Benchmark: the manifold initialisation's time and initial ACC, on one pretrained embedding.

UMAP + Gaussian mixture on all 70,000 embeddings (as ``init.method=umap`` runs it) against UMAP
fitted on a random subsample and applied to the rest, side by side in one process on the same
embedding. Labels only score the result; they choose nothing.

    .venv/bin/python bench/init_speed.py --subsamples 10000 20000 \
        --autoencoder WORK/kfp-outputs/.../pretrain/model/autoencoder.keras
    .venv/bin/python bench/init_speed.py --subsamples --umap-epochs 50 100 --neighbors 10 \
        --autoencoder ...

Writes ``bench/results/init_speed.json`` and prints a Markdown table.
"""

import argparse
import time
import warnings

import numpy as np
from records import append_record


def manifold_labels(embedding, n_clusters, seed, subsample, mixture_on_all=False, neighbors=20,
                    n_init=4, epochs=None):
    import umap
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(seed)
    fit_rows = (np.sort(rng.choice(len(embedding), subsample, replace=False))
                if subsample and subsample < len(embedding) else slice(None))
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")
        reducer = umap.UMAP(n_components=n_clusters, n_neighbors=neighbors, min_dist=0.0,
                            random_state=seed, init="spectral", n_epochs=epochs)
        mapped_fit = reducer.fit_transform(embedding[fit_rows])
        umap_fit = time.perf_counter() - started
        mapped = (reducer.transform(embedding) if not isinstance(fit_rows, slice)
                  else mapped_fit)
    umap_all = time.perf_counter() - started
    mixture = GaussianMixture(n_components=n_clusters, covariance_type="full", n_init=n_init,
                              max_iter=300, random_state=seed)
    labels = mixture.fit(mapped if mixture_on_all else mapped_fit).predict(mapped)
    return labels, {"umap_fit_s": round(umap_fit, 1), "umap_s": round(umap_all, 1),
                    "total_s": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--autoencoder", required=True)
    parser.add_argument("--subsamples", type=int, nargs="*", default=[10000, 20000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--umap-epochs", type=int, nargs="*", default=[],
                        help="also UMAP on all points with this many layout epochs (its default "
                             "is 200 above 10,000 points)")
    parser.add_argument("--neighbors", type=int, nargs="*", default=[],
                        help="also UMAP on all points with this many neighbours (default 20)")
    parser.add_argument("--mixture-on-all", action="store_true",
                        help="also fit the mixture on all mapped points, not only the subsample's")
    args = parser.parse_args()

    from sklearn.metrics import normalized_mutual_info_score

    from dec_lib.data.datasets import load_dataset
    from dec_lib.model.autoencoder import embed, encoder_of
    from dec_lib.model.metrics import cluster_accuracy
    from dec_lib.model.saving import load_model

    data = load_dataset("mnist")
    embedding = embed(encoder_of(load_model(args.autoencoder)), data.x).astype(np.float64)
    # Compile numba's code for fitting and for mapping new points first, so that no row pays it.
    manifold_labels(embedding[:3000], 10, args.seed, 1500)
    rows = []
    variants = (False, True) if args.mixture_on_all else (False,)
    runs = [(0, True, None, 20), *[(s, a, None, 20) for s in args.subsamples for a in variants],
            *[(0, True, e, 20) for e in args.umap_epochs],
            *[(0, True, None, k) for k in args.neighbors]]
    for subsample, on_all, epochs, neighbors in runs:
        labels, times = manifold_labels(embedding, 10, args.seed, subsample, on_all,
                                        neighbors=neighbors, epochs=epochs)
        rows.append({"subsample": subsample or len(embedding), "mixture_on_all": on_all,
                     "umap_epochs": epochs or "default", "neighbors": neighbors, **times,
                     "acc": round(cluster_accuracy(data.y, labels), 4),
                     "nmi": round(float(normalized_mutual_info_score(data.y, labels)), 4)})
        print(rows[-1], flush=True)
    append_record("init_speed", autoencoder=args.autoencoder, seed=args.seed, rows=rows)
    print("| UMAP fitted on | mixture fitted on | layout epochs | neighbours | UMAP s (of which "
          "fit) | total s | initial ACC | NMI |\n|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['subsample']:,} | {'all' if r['mixture_on_all'] else 'the subsample'} | "
              f"{r['umap_epochs']} | {r['neighbors']} | "
              f"{r['umap_s']} ({r['umap_fit_s']}) | {r['total_s']} | "
              f"{r['acc']:.4f} | {r['nmi']:.4f} |")


if __name__ == "__main__":
    main()
