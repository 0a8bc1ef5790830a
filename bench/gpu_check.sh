#!/usr/bin/env bash
# GPU check: install the GPU dependencies, run the default pipeline on one GPU, report per-phase
# times and whether the whole run stayed within the 3-minute target (issue #3).
#
#   bash bench/gpu_check.sh [OUT_DIR]
#
# Needs: an NVIDIA GPU with its driver, network access to PyPI, and Python 3.11 (found on PATH,
# or fetched by uv). Writes OUT_DIR/gpu-summary.json (the run summary) and OUT_DIR/gpu-check.json
# (the device, per-phase seconds, the verdict); OUT_DIR defaults to $OUT, else work/gpu-check.
# Everything is bounded so that the whole check ends within 10 minutes.
set -euo pipefail

cd "$(dirname "$0")/.."
out=${1:-${OUT:-work/gpu-check}}
mkdir -p "$out"
venv=.venv-gpu
target_seconds=180

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
    || { echo "gpu_check: no NVIDIA GPU visible (nvidia-smi failed)" >&2; exit 2; }

# 1. Python 3.11 and the GPU lock (tensorflow[and-cuda]; CUDA and cuDNN come as pip wheels).
if [[ ! -x $venv/bin/python ]]; then
    if command -v python3.11 >/dev/null; then
        python3.11 -m venv "$venv"
    else
        python3 -m pip install --quiet --user uv
        python3 -m uv venv --python 3.11 "$venv"
        "$venv/bin/python" -m ensurepip --upgrade >/dev/null
    fi
fi
timeout 300 "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --require-hashes -r requirements-gpu.lock
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
    --require-hashes -r requirements-mnist.lock
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e .

# 2. TensorFlow must see the GPU, or the timings below would be a CPU's.
"$venv/bin/python" - <<'EOF'
import sys

import tensorflow as tf

from dec_lib.model.precision import resolve_precision, use_xla

gpus = tf.config.list_physical_devices("GPU")
if not gpus:
    sys.exit("gpu_check: TensorFlow sees no GPU (driver or CUDA wheels missing?)")
details = tf.config.experimental.get_device_details(gpus[0])
print(f"gpu_check: {details.get('device_name')} (compute capability "
      f"{details.get('compute_capability')}), precision auto -> {resolve_precision('auto')}, "
      f"XLA {'on' if use_xla() else 'off'}")
EOF

# 3. The default pipeline, all 70,000 digits, with its summary.
started=$(date +%s)
timeout 420 "$venv/bin/dec-pipeline" --quiet run --preset default \
    --work-dir "$out/work" --summary "$out/gpu-summary.json"
wall=$(( $(date +%s) - started ))

# 4. Report.
"$venv/bin/python" - "$out" "$wall" "$target_seconds" <<'EOF'
import json
import subprocess
import sys
from pathlib import Path

out, wall, target = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
summary = json.loads((out / "gpu-summary.json").read_text())
device = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                        capture_output=True, text=True).stdout.strip()
report = {"device": device, "wall_seconds": wall, "target_seconds": target,
          "met": wall <= target, "phase_seconds": summary["phase_seconds"],
          "acc": summary.get("acc"), "nmi": summary.get("nmi")}
(out / "gpu-check.json").write_text(json.dumps(report, indent=2) + "\n")
for phase, seconds in summary["phase_seconds"].items():
    print(f"  {phase:<12} {seconds:8.1f} s")
print(f"  {'whole run':<12} {wall:8d} s (target {target} s: {'met' if report['met'] else 'NOT met'})"
      f"; ACC {report['acc']}, NMI {report['nmi']}")
EOF
