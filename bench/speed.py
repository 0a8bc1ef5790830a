"""Benchmark: our pretraining and DEC loops against the seed recipe's, on identical work.

The reference is the recipe as commonly written in Keras: ``Model.fit`` for pretraining, and for
DEC ``predict`` over all data every ``update_interval`` iterations plus ``train_on_batch``.
All sides start from the same weights and run the same epochs and iterations (``dec.tol=0``),
in one process, one after the other; ours runs once per ``--precisions`` entry (float32, and
``auto``: bfloat16 where the CPU computes it natively), and the ratios of the times are printed.

    .venv/bin/python bench/speed.py --epochs 10 --iterations 2100

Writes ``bench/results/speed.json``.
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def reference_pretrain(autoencoder, x, epochs: int, batch_size: int) -> float:
    import keras

    autoencoder.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0, momentum=0.9),
                        loss="mse")
    history = autoencoder.fit(x, x, batch_size=batch_size, epochs=epochs, shuffle=True,
                              verbose=0)
    return float(history.history["loss"][-1])


def reference_dec(model, x, iterations: int, update_interval: int, batch_size: int) -> float:
    import keras

    from dec_lib.model.clustering import target_distribution

    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
                  loss="kld")
    index, loss = 0, float("nan")
    for iteration in range(iterations):
        if iteration % update_interval == 0:
            q = model.predict(x, verbose=0)
            p = target_distribution(q)
        batch = slice(index * batch_size, min((index + 1) * batch_size, len(x)))
        loss = float(model.train_on_batch(x=x[batch], y=p[batch]))
        index = index + 1 if (index + 1) * batch_size <= len(x) else 0
    return loss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=2100)
    parser.add_argument("--n-samples", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precisions", nargs="+", default=["float32", "auto"],
                        choices=["float32", "bfloat16", "auto"],
                        help="our loops' precisions to time; the first one pretrains the "
                             "encoder every DEC side starts from")
    args = parser.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from dec_lib.config import preset
    from dec_lib.data.datasets import load_dataset
    from dec_lib.model.autoencoder import build_autoencoder, encoder_of, pretrain_autoencoder
    from dec_lib.model.dec_model import build_dec_model
    from dec_lib.model.initialisation import init_centres
    from dec_lib.model.precision import resolve_precision
    from dec_lib.model.self_training import train_dec
    from dec_lib.runtime.seeding import seed_everything

    config = preset("seed").with_overrides([f"pretrain.epochs={args.epochs}",
                                            f"dec.maxiter={args.iterations}", "dec.tol=0",
                                            "pretrain.checkpoint_every=0"])
    x = load_dataset("mnist", n_samples=args.n_samples, seed=args.seed).x

    def fresh_autoencoder():
        seed_everything(args.seed)
        return build_autoencoder(x.shape[1], config.autoencoder)

    results: dict = {"epochs": args.epochs, "iterations": args.iterations,
                     "n_samples": len(x)}
    # Pretraining, same initial weights on every side.
    reference = fresh_autoencoder()
    started = time.perf_counter()
    results["reference_pretrain_loss"] = reference_pretrain(reference, x, args.epochs, 256)
    results["reference_pretrain_s"] = time.perf_counter() - started
    trained = {}
    for precision in args.precisions:
        ours = fresh_autoencoder()
        settings = config.pretrain.__class__(**{**vars(config.pretrain), "precision": precision})
        started = time.perf_counter()
        losses = pretrain_autoencoder(ours, x, settings, seed=args.seed).losses
        results[f"ours_{precision}_pretrain_s"] = time.perf_counter() - started
        results[f"ours_{precision}_pretrain_loss"] = losses[-1] if losses else float("nan")
        trained[precision] = ours

    # DEC, every side from the same float32-pretrained encoder and the same K-Means centres.
    from dec_lib.model.autoencoder import embed

    first = trained[args.precisions[0]]
    init = init_centres(embed(encoder_of(first), x), 10, config.init, seed=args.seed)
    weights = first.get_weights()

    def fresh_dec():
        clone = fresh_autoencoder()
        clone.set_weights(weights)
        return build_dec_model(encoder_of(clone), init.centres, config.dec.alpha)

    reference_model = fresh_dec()
    started = time.perf_counter()
    results["reference_dec_loss"] = reference_dec(reference_model, x, args.iterations,
                                                  config.dec.update_interval, 256)
    results["reference_dec_s"] = time.perf_counter() - started
    for precision in args.precisions:
        settings = config.dec.__class__(**{**vars(config.dec), "precision": precision})
        started = time.perf_counter()
        history = train_dec(fresh_dec(), x, settings).history
        results[f"ours_{precision}_dec_s"] = time.perf_counter() - started
        results[f"ours_{precision}_dec_loss"] = history[-1].loss
        for phase in ("pretrain", "dec"):
            results[f"{phase}_speedup_{precision}"] = (results[f"reference_{phase}_s"]
                                                      / results[f"ours_{precision}_{phase}_s"])
    results["resolved_precision"] = {p: resolve_precision(p) for p in args.precisions}
    results["machine"] = f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs"
    results["date"] = time.strftime("%Y-%m-%d")

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "speed.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"pretraining, {args.epochs} epochs on {len(x)} images: reference "
          f"{results['reference_pretrain_s']:.1f}s (loss {results['reference_pretrain_loss']:.6f})")
    for p in args.precisions:
        print(f"  ours {p} ({resolve_precision(p)}): {results[f'ours_{p}_pretrain_s']:.1f}s "
              f"(loss {results[f'ours_{p}_pretrain_loss']:.6f}): "
              f"{results[f'pretrain_speedup_{p}']:.2f}x")
    print(f"DEC, {args.iterations} iterations: reference {results['reference_dec_s']:.1f}s "
          f"(loss {results['reference_dec_loss']:.4f})")
    for p in args.precisions:
        print(f"  ours {p} ({resolve_precision(p)}): {results[f'ours_{p}_dec_s']:.1f}s "
              f"(loss {results[f'ours_{p}_dec_loss']:.4f}): {results[f'dec_speedup_{p}']:.2f}x")
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    sys.exit(main())
