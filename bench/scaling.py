"""Benchmark: how each phase's cost grows with the number of images, in one idle process.

For each size (random subsets of MNIST) it times, with the `default` preset's settings:
one pretraining epoch (the second, after compilation), the full-data pass that DEC repeats at
every target update (forward pass, soft assignment and target distribution), one update
interval of DEC training, and the initialisation (UMAP + Gaussian mixture, as `default`).
Per-image costs that stay flat as the data grows mean linear scaling.

    .venv/bin/python bench/scaling.py --sizes 7000 35000 70000

Writes ``bench/results/scaling.json`` and prints a Markdown table.
"""

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def measure(n: int, seed: int = 0) -> dict:
    from dec_lib.config import preset
    from dec_lib.data.datasets import load_dataset
    from dec_lib.model.autoencoder import build_autoencoder, encoder_of, pretrain_autoencoder
    from dec_lib.model.clustering import target_distribution
    from dec_lib.model.dec_model import build_dec_model, soft_assignments
    from dec_lib.model.initialisation import init_centres
    from dec_lib.model.self_training import train_dec
    from dec_lib.runtime.seeding import seed_everything

    config = preset("default")
    x = load_dataset("mnist", n_samples=n, seed=seed).x
    seed_everything(seed)
    autoencoder = build_autoencoder(x.shape[1], config.autoencoder)
    pretrain = config.pretrain.__class__(**{**vars(config.pretrain), "epochs": 2, "min_steps": 0,
                                            "checkpoint_every": 0})
    seconds: list[float] = []
    pretrain_autoencoder(autoencoder, x, pretrain, seed=seed,
                         on_epoch=lambda *args: seconds.append(args[-1]))
    out = {"n": n, "pretrain_epoch_s": seconds[-1]}

    started = time.perf_counter()
    from dec_lib.model.autoencoder import embed

    embedding = embed(encoder_of(autoencoder), x)
    init = init_centres(embedding, config.dec.n_clusters, config.init, seed=seed)
    out["init_s"] = time.perf_counter() - started

    model = build_dec_model(encoder_of(autoencoder), init.centres, config.dec.alpha)
    soft_assignments(model, x)  # compile
    started = time.perf_counter()
    target_distribution(soft_assignments(model, x))
    out["full_pass_s"] = time.perf_counter() - started
    interval = config.dec.update_interval
    dec = config.dec.__class__(**{**vars(config.dec), "maxiter": 2 * interval, "tol": 0.0,
                                  "warmup_iterations": 0})
    started = time.perf_counter()
    train_dec(model, x, dec)
    out["dec_two_intervals_s"] = time.perf_counter() - started
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[7000, 35000, 70000])
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    rows = [measure(n) for n in sorted(args.sizes)]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scaling.json").write_text(json.dumps({
        "rows": rows, "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs"}, indent=2) + "\n")
    print("| images | pretrain epoch s (µs/image) | full-data pass s (µs/image) | "
          "DEC 2 intervals s | init s | peak RSS MB (cumulative) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        epoch, full, n = r["pretrain_epoch_s"], r["full_pass_s"], r["n"]
        print(f"| {n:,} | {epoch:.2f} ({1e6 * epoch / n:.0f}) | {full:.2f} ({1e6 * full / n:.1f})"
              f" | {r['dec_two_intervals_s']:.2f} | {r['init_s']:.1f} | {r['peak_rss_mb']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
