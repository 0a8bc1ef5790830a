"""Benchmark: which settings change the model one seed gives, on this machine.

Fits the same small DEC (400 digits; shifts, UMAP + mixture, warm-up, self-training) in fresh
processes under ``precision=auto`` and ``float32``, each with oneDNN free to use every
instruction set of this CPU and capped below AMX (``ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16``, the
kernels an AVX-512 BF16 CPU without AMX, such as AMD Zen 4, gets) and at AVX2, and twice
unchanged. Prints a digest of the weights and the clustering's ACC per case.

    .venv/bin/python bench/reproducibility.py

Writes ``bench/results/reproducibility.json``.
"""

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

FIT = """
import hashlib, json, sys
import numpy as np
from dec_lib import DEC
from dec_lib.config import preset
from dec_lib.data.datasets import load_dataset
from dec_lib.model.metrics import cluster_accuracy

precision = sys.argv[1]
config = preset("quick").with_overrides({
    "pretrain.epochs": 20, "pretrain.augment_shift": 1, "init.n_init": 1,
    "pretrain.precision": precision, "dec.precision": precision,
    "dec.maxiter": 80, "dec.update_interval": 20, "dec.warmup_iterations": 20})
data = load_dataset("mnist", n_samples=1000, seed=0)
estimator = DEC(config).fit(data.x)
digest = hashlib.sha256()
for weights in estimator.model_.get_weights():
    digest.update(np.ascontiguousarray(weights).tobytes())
print(json.dumps({"digest": digest.hexdigest()[:16],
                  "acc": round(cluster_accuracy(data.y, estimator.labels_), 4)}))
"""

CASES = [
    ("auto", None), ("auto", None), ("auto", "AVX512_CORE_BF16"), ("auto", "AVX2"),
    ("float32", None), ("float32", None), ("float32", "AVX512_CORE_BF16"), ("float32", "AVX2"),
]


def main() -> None:
    rows = []
    for precision, isa in CASES:
        env = {k: v for k, v in os.environ.items() if k != "ONEDNN_MAX_CPU_ISA"}
        if isa:
            env["ONEDNN_MAX_CPU_ISA"] = isa
        result = subprocess.run([sys.executable, "-c", FIT, precision], capture_output=True,
                                text=True, env=env)
        outcome = ({"digest": f"exit {result.returncode}", "acc": float("nan")}
                   if result.returncode else json.loads(result.stdout.strip().splitlines()[-1]))
        rows.append({"precision": precision, "max_isa": isa or "all", **outcome})
        print(rows[-1], flush=True)
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "reproducibility.json", "a") as f:
        f.write(json.dumps({"date": time.strftime("%Y-%m-%d"),
                            "machine": platform.processor() or platform.machine(),
                            "rows": rows}) + "\n")
    print("| precision | oneDNN instruction sets | weights digest | ACC |\n|---|---|---|---:|")
    for r in rows:
        print(f"| {r['precision']} | {r['max_isa']} | `{r['digest']}` | {r['acc']:.4f} |")


if __name__ == "__main__":
    main()
