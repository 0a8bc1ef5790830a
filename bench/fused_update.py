"""Benchmark: Keras's optimizers against the fused ones, side by side in one process.

The same pretraining epoch (Adam, batch 256) and the same DEC iterations (SGD with momentum)
run with Keras's own ``Adam`` and ``SGD`` and with ``dec_lib.model.optimizers``' ``FusedAdam``
and ``FusedSGD``, in float32 and bfloat16, alternating so that a drift in the machine's speed
falls on both. The products are identical; only the weight updates differ.

    .venv/bin/python bench/fused_update.py --images 70000 --repeats 2

Appends to ``bench/results/fused_update.json`` and prints a Markdown table.
"""

import argparse
import contextlib
import statistics

from records import append_record


@contextlib.contextmanager
def optimizers(kind: str):
    """``make_optimizer`` building Keras's optimizers (``keras``) or the fused ones."""
    import keras

    from dec_lib.model import autoencoder

    saved = dict(autoencoder.OPTIMIZERS)
    if kind == "keras":
        autoencoder.OPTIMIZERS.update(
            sgd=lambda lr, momentum: keras.optimizers.SGD(learning_rate=lr, momentum=momentum),
            adam=lambda lr, _: keras.optimizers.Adam(learning_rate=lr))
    try:
        yield
    finally:
        autoencoder.OPTIMIZERS.update(saved)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=70000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    from roofline import dec_rate, pretrain_epoch

    from dec_lib.data.datasets import load_dataset
    from dec_lib.runtime.thread_pools import size_thread_pools

    size_thread_pools()
    x = load_dataset("mnist", n_samples=args.images, seed=0).x
    rows = []
    for repeat in range(args.repeats):
        for precision in ("float32", "bfloat16"):
            for kind in ("keras", "fused") if repeat % 2 == 0 else ("fused", "keras"):
                with optimizers(kind):
                    epoch = pretrain_epoch(x, precision, "adam")["epoch_s"]
                    dec = dec_rate(x, precision)["seconds"]
                rows.append({"repeat": repeat, "precision": precision, "optimizers": kind,
                             "adam_epoch_s": epoch, "dec_1260_s": dec})
                print(rows[-1], flush=True)
    append_record("fused_update", images=len(x), rows=rows)
    print("| precision | optimizers | Adam epoch s (median) | DEC 1,260 iterations s (median) |\n"
          "|---|---|---:|---:|")
    for precision in ("float32", "bfloat16"):
        for kind in ("keras", "fused"):
            mine = [r for r in rows if r["precision"] == precision and r["optimizers"] == kind]
            print(f"| {precision} | {kind} | "
                  f"{statistics.median(r['adam_epoch_s'] for r in mine):.2f} | "
                  f"{statistics.median(r['dec_1260_s'] for r in mine):.2f} |")


if __name__ == "__main__":
    main()
