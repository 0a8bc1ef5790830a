"""Build an imbalanced MNIST: class sizes falling geometrically, largest 10 times the smallest.

Real users' classes are rarely equal, and DEC's target distribution divides by each cluster's
frequency, which assumes they are. The labels pick which images go in (the data set's
construction, like a user's collection), and are kept only for scoring; training never sees
them. Digit k keeps ``round(largest * ratio ** (-k / 9))`` images, drawn with a fixed seed.

    .venv/bin/python bench/imbalanced.py --out /tmp/mnist-imbalanced.npz
    .venv/bin/python bench/quality.py --preset default --seeds 0 1 \\
        --set data.dataset=/tmp/mnist-imbalanced.npz --work-dir /tmp/bench-imbalanced
"""

import argparse

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--largest", type=int, default=6300)
    parser.add_argument("--ratio", type=float, default=10.0)
    args = parser.parse_args()

    from dec_lib.data.datasets import load_dataset

    data = load_dataset("mnist")
    rng = np.random.default_rng(0)
    keep = []
    for digit in range(10):
        size = round(args.largest * args.ratio ** (-digit / 9))
        keep.append(rng.choice(np.flatnonzero(data.y == digit), size, replace=False))
    rows = np.sort(np.concatenate(keep))
    x = data.x[rows].reshape(-1, 28, 28)
    np.savez_compressed(args.out, x=x, y=data.y[rows])
    print(args.out, len(rows), "images; per digit:", np.bincount(data.y[rows]).tolist())


if __name__ == "__main__":
    main()
