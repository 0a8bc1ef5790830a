"""Benchmark: what random rotations add to a pretraining epoch, side by side in one process.

The `best` preset's pretraining epoch (Adam, batch 256, bfloat16 where the CPU has it) runs
with no augmentation, with 2-pixel shifts, and with shifts and 10-degree rotations, in an order
that alternates between repeats so that a drift in the machine's speed falls on all three.

    .venv/bin/python bench/augment_cost.py --images 70000 --repeats 2

Appends to ``bench/results/augment_cost.json`` and prints a Markdown table.
"""

import argparse
import statistics

from records import append_record

VARIANTS = {"none": (0, 0.0), "shift 2": (2, 0.0), "shift 2, rotation 10": (2, 10.0)}


def epoch_seconds(x, shift: int, degrees: float, epochs: int) -> float:
    """The median time of ``epochs`` pretraining epochs after a first, compiling one."""
    from dec_lib.config import AutoencoderConfig, PretrainConfig
    from dec_lib.model.autoencoder import build_autoencoder, pretrain_autoencoder

    config = PretrainConfig(epochs=epochs + 1, min_steps=0, optimizer="adam",
                            learning_rate=1e-3, precision="auto", checkpoint_every=0,
                            augment_shift=shift, augment_rotation=degrees)
    seconds = []
    pretrain_autoencoder(build_autoencoder(x.shape[1], AutoencoderConfig()), x, config,
                         image_shape=(28, 28),
                         on_epoch=lambda epoch, _, __, s: seconds.append(s) if epoch > 1 else None)
    return statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=70000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per variant")
    args = parser.parse_args()

    from dec_lib.data.datasets import load_dataset
    from dec_lib.runtime.thread_pools import size_thread_pools

    size_thread_pools()
    x = load_dataset("mnist", n_samples=args.images, seed=0).x
    rows = []
    for repeat in range(args.repeats):
        names = list(VARIANTS) if repeat % 2 == 0 else list(reversed(VARIANTS))
        for name in names:
            rows.append({"repeat": repeat, "augmentation": name,
                         "epoch_s": epoch_seconds(x, *VARIANTS[name], args.epochs)})
            print(rows[-1], flush=True)
    append_record("augment_cost", images=len(x), rows=rows)
    base = statistics.median(r["epoch_s"] for r in rows if r["augmentation"] == "none")
    print("| augmentation | epoch s (median) | against none |\n|---|---:|---:|")
    for name in VARIANTS:
        median = statistics.median(r["epoch_s"] for r in rows if r["augmentation"] == name)
        print(f"| {name} | {median:.2f} | {median / base:.2f}x |")


if __name__ == "__main__":
    main()
