"""Benchmark: the CPU's matrix-product peak in fp32 and bf16, and how close pretraining gets.

The peak is measured with TensorFlow's own kernels (oneDNN on CPU), the library training uses:
large square products, and the autoencoder's own layer shapes at its batch size, forward
(x @ W) and the two backward products (dY @ W^T, X^T @ dY). Then a pretraining epoch of the
d-500-500-2000-10 autoencoder (the second of two: the first compiles) is timed through
``pretrain_autoencoder`` with the recipe's optimizer (SGD, ``seed`` preset) and ours (Adam,
``default``), in each precision, and its useful work (6 flops per weight per image: forward,
and the two backward products) is stated as GFLOP/s and as a fraction of that peak. DEC's
self-training is measured the same way, ours and the recipe's (``predict`` + ``train_on_batch``).
All in one process, one after the other.

    .venv/bin/python bench/roofline.py --images 70000
    .venv/bin/python bench/roofline.py --images 70000 --dec-only

Writes ``bench/results/roofline.json`` and prints a Markdown table.
"""

import argparse
import itertools
import time

import numpy as np
from records import append_record


def matmul_gflops(m: int, k: int, n: int, dtype: str, seconds: float = 2.0) -> float:
    """Best-of-runs GFLOP/s of an m x k by k x n product in ``dtype``, compiled once."""
    import tensorflow as tf

    a = tf.random.stateless_normal((m, k), seed=(1, 2), dtype=tf.float32)
    b = tf.random.stateless_normal((k, n), seed=(3, 4), dtype=tf.float32)
    a, b = tf.cast(a, dtype), tf.cast(b, dtype)
    product = tf.function(lambda x, y: tf.reduce_sum(tf.cast(tf.matmul(x, y)[:1, :1],
                                                             tf.float32)))
    product(a, b).numpy()  # compile, and warm the kernel's caches
    repeats, best = 1, float("inf")
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        t0 = time.perf_counter()
        for _ in range(repeats):
            product(a, b)
        product(a, b).numpy()
        elapsed = (time.perf_counter() - t0) / (repeats + 1)
        best = min(best, elapsed)
        repeats = min(repeats * 2, 64)
    return 2.0 * m * k * n / best / 1e9


def layer_shapes(dims: list[int], batch: int) -> list[tuple[int, int, int]]:
    """The products one training step of a dense stack computes, per layer."""
    shapes = []
    for d_in, d_out in itertools.pairwise(dims):
        shapes += [(batch, d_in, d_out), (batch, d_out, d_in), (d_in, batch, d_out)]
    return shapes


def stack_gflops(dims: list[int], batch: int, dtype: str) -> float:
    """Work-weighted GFLOP/s over one step's products of the whole stack (encoder + decoder)."""
    flops = seconds = 0.0
    for m, k, n in layer_shapes(dims, batch):
        rate = matmul_gflops(m, k, n, dtype, seconds=0.5)
        flops += 2.0 * m * k * n
        seconds += 2.0 * m * k * n / (rate * 1e9)
    return flops / seconds / 1e9


def pretrain_epoch(x, precision: str, optimizer: str, batch_size: int = 256) -> dict:
    from dec_lib.config import preset
    from dec_lib.model.autoencoder import build_autoencoder, pretrain_autoencoder
    from dec_lib.runtime.seeding import seed_everything

    config = preset("default" if optimizer == "adam" else "seed")
    config.pretrain.epochs, config.pretrain.min_steps = 2, 0
    config.pretrain.checkpoint_every, config.pretrain.precision = 0, precision
    config.pretrain.batch_size = batch_size
    seed_everything(0)
    model = build_autoencoder(x.shape[1], config.autoencoder)
    seconds = []
    pretrain_autoencoder(model, x, config.pretrain, seed=0,
                         on_epoch=lambda epoch, epochs, loss, s: seconds.append(s))
    weights = sum(int(np.prod(w.shape)) for w in model.trainable_weights if len(w.shape) == 2)
    flops = 6.0 * weights * len(x)
    epoch_s = seconds[-1]  # the second epoch: the first includes tracing and compiling
    return {"precision": precision, "optimizer": optimizer, "batch_size": batch_size,
            "epoch_s": round(epoch_s, 2),
            "gflops": round(flops / epoch_s / 1e9, 1), "weights": weights}


def dec_interval(x, precision: str, maxiter: int, loop: str = "ours") -> tuple[float, int]:
    """Seconds ``maxiter`` DEC iterations take (tol 0, no warm-up, no shifts), and the encoder's
    matrix weights. ``loop``: ``ours`` (``train_dec``) or ``recipe`` (``predict`` and
    ``train_on_batch``, as ``bench/speed.py`` times it; float32 only)."""
    from dec_lib.config import preset
    from dec_lib.model.autoencoder import build_autoencoder, encoder_of
    from dec_lib.model.dec_model import build_dec_model
    from dec_lib.model.self_training import train_dec
    from dec_lib.runtime.seeding import seed_everything

    config = preset("default").dec
    config.maxiter, config.tol, config.warmup_iterations = maxiter, 0.0, 0
    config.precision, config.augment_shift = precision, 0
    seed_everything(0)
    encoder = encoder_of(build_autoencoder(x.shape[1], preset("default").autoencoder))
    centres = np.random.default_rng(0).normal(size=(config.n_clusters, 10)).astype(np.float32)
    weights = sum(int(np.prod(w.shape)) for w in encoder.trainable_weights if len(w.shape) == 2)
    model = build_dec_model(encoder, centres, config.alpha)
    if loop == "ours":
        return train_dec(model, x, config).seconds, weights
    from speed import reference_dec

    started = time.perf_counter()
    reference_dec(model, x, maxiter, config.update_interval, config.batch_size)
    return time.perf_counter() - started, weights


def dec_rate(x, precision: str, loop: str = "ours") -> dict:
    """DEC's achieved GFLOP/s: 1,260 iterations and 9 target updates, from the difference of a
    1,400- and a 140-iteration run, so that compiling and the first pass cancel out."""
    from dec_lib.config import preset

    interval = preset("default").dec.update_interval
    short, _ = dec_interval(x, precision, interval, loop)
    long, weights = dec_interval(x, precision, 10 * interval, loop)
    batch = preset("default").dec.batch_size
    # A step: forward and two backward products on a batch; an update: a forward pass over x.
    flops = 9 * interval * 6.0 * weights * batch + 9 * 2.0 * weights * len(x)
    seconds = long - short
    return {"loop": loop, "precision": precision, "seconds": round(seconds, 2),
            "gflops": round(flops / seconds / 1e9, 1), "encoder_weights": weights}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=70000)
    parser.add_argument("--square", type=int, default=4096)
    parser.add_argument("--dec-only", action="store_true",
                        help="the peaks and the DEC rows (ours and the recipe's), no pretraining")
    parser.add_argument("--batches", type=int, nargs="*", default=[],
                        help="also an Adam pretraining epoch at these batch sizes, in each "
                             "precision")
    args = parser.parse_args()

    from dec_lib.data.datasets import load_dataset
    from dec_lib.runtime.thread_pools import size_thread_pools

    size_thread_pools()
    dims = [784, 500, 500, 2000, 10, 2000, 500, 500, 784]
    peak = {dtype: round(matmul_gflops(args.square, args.square, args.square, dtype), 1)
            for dtype in ("float32", "bfloat16")}
    shaped = {dtype: round(stack_gflops(dims, 256, dtype), 1) for dtype in ("float32", "bfloat16")}
    print("peak", peak, "autoencoder shapes", shaped, flush=True)
    x = load_dataset("mnist", n_samples=args.images, seed=0).x
    epochs = [] if args.dec_only else [
        pretrain_epoch(x, p, o) for o in ("sgd", "adam") for p in ("float32", "bfloat16")]
    epochs += [pretrain_epoch(x, p, "adam", b) for b in args.batches
               for p in ("float32", "bfloat16")]
    dec = [dec_rate(x, "float32", "recipe")] + [dec_rate(x, p) for p in ("float32", "bfloat16")]
    append_record("roofline", square=args.square, peak_gflops=peak, layer_shape_gflops=shaped,
                  images=len(x), pretrain=epochs, dec=dec)
    if epochs:
        print("| optimizer | batch | precision | peak GFLOP/s (square) | at the autoencoder's "
              "shapes (batch 256) | pretraining epoch s | pretraining GFLOP/s | of peak "
              "| of shape peak |\n|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for e in epochs:
        dtype = e["precision"]
        print(f"| {e['optimizer']} | {e['batch_size']} | {dtype} | {peak[dtype]} | "
              f"{shaped[dtype]} | {e['epoch_s']} "
              f"| {e['gflops']} | "
              f"{e['gflops'] / peak[dtype]:.0%} | {e['gflops'] / shaped[dtype]:.0%} |")
    print("\n| DEC | precision | s for 1,260 iterations + 9 updates | GFLOP/s | of peak |\n"
          "|---|---|---:|---:|---:|")
    for d in dec:
        dtype = d["precision"]
        print(f"| {d['loop']} | {dtype} | {d['seconds']} | {d['gflops']} | "
              f"{d['gflops'] / peak[dtype]:.0%} |")


if __name__ == "__main__":
    main()
