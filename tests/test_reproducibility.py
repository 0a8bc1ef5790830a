"""One seed, one model on one machine: two fresh processes fit the same weights.

What the README promises, tested where it can be: the same machine and software. Every phase's
randomness is in play (shifted batches, UMAP and the Gaussian mixture, the warm-up and
self-training), in ``precision=auto`` (bfloat16 where the CPU computes it natively) as the
default preset trains. Across CPUs with other instruction sets the kernels differ, so only a band
is promised there (README, "Reproducibility").
"""

from __future__ import annotations

import subprocess
import sys

FIT = """
import hashlib, sys
import numpy as np
from dec_lib import DEC
from dec_lib.config import preset
from dec_lib.data.datasets import load_dataset

config = preset("quick").with_overrides({
    "pretrain.epochs": 4, "pretrain.augment_shift": 1, "init.n_init": 1,
    "dec.maxiter": 40, "dec.update_interval": 10, "dec.warmup_iterations": 10})
x = load_dataset("mnist", n_samples=400, seed=0).x
model = DEC(config).fit(x).model_
digest = hashlib.sha256()
for weights in model.get_weights():
    digest.update(np.ascontiguousarray(weights).tobytes())
print(digest.hexdigest())
"""


def _fit_in_a_fresh_process() -> str:
    result = subprocess.run([sys.executable, "-c", FIT], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


def test_two_fresh_processes_fit_identical_weights_under_one_seed():
    assert _fit_in_a_fresh_process() == _fit_in_a_fresh_process()
