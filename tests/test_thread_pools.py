"""Thread pools sized from a (faked) cgroup CPU quota instead of the node's cores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dec_lib.runtime.thread_pools import THREAD_ENV, cpu_limit, cpu_quota, size_thread_pools

REPO = Path(__file__).resolve().parents[1]


def _cgroup_v2(root: Path, cpu_max: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cpu.max").write_text(cpu_max + "\n")
    return root


def _cgroup_v1(root: Path, quota: int, period: int = 100000,
               controller: str = "cpu,cpuacct") -> Path:
    folder = root / controller
    folder.mkdir(parents=True)
    (folder / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (folder / "cpu.cfs_period_us").write_text(f"{period}\n")
    return root


@pytest.mark.parametrize(("cpu_max", "threads"), [
    ("200000 100000", 2),   # limits.cpu: 2
    ("250000 100000", 3),   # 2500m: a fraction of a CPU is still time to use
    ("50000 100000", 1),    # 500m: never fewer than one
    ("800000 100000", 8),
    ("max 100000", 64),     # no limit: the CPUs the process may run on
])
def test_a_cgroup_v2_quota_sets_the_thread_count(tmp_path, cpu_max, threads):
    assert cpu_limit(_cgroup_v2(tmp_path, cpu_max), usable=64).cpus == threads


@pytest.mark.parametrize(("quota", "controller", "threads"), [
    (400000, "cpu,cpuacct", 4), (150000, "cpu", 2), (-1, "cpu,cpuacct", 64)])
def test_a_cgroup_v1_quota_sets_the_thread_count(tmp_path, quota, controller, threads):
    assert cpu_limit(_cgroup_v1(tmp_path, quota, controller=controller), usable=64).cpus == \
        threads


def test_a_quota_above_the_usable_cpus_is_capped_by_them(tmp_path):
    assert cpu_limit(_cgroup_v2(tmp_path, "1600000 100000"), usable=4).cpus == 4


def test_without_any_cgroup_files_the_usable_cpus_count(tmp_path):
    assert cpu_quota(tmp_path) is None
    assert cpu_limit(tmp_path, usable=6).cpus == 6


def test_the_pools_follow_the_quota_and_the_users_own_settings_win(tmp_path):
    env = {"MKL_NUM_THREADS": "1"}
    assert size_thread_pools(_cgroup_v2(tmp_path, "300000 100000"), environ=env) == \
        min(3, len(os.sched_getaffinity(0)))
    threads = str(min(3, len(os.sched_getaffinity(0))))
    assert env == {"OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
                   "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": threads}


TENSORFLOW_PROCESS = """
import json, os, sys
import numpy  # its OpenBLAS starts before the call, as in a step, which imports numpy first
from dec_lib.runtime.thread_pools import size_thread_pools
size_thread_pools(sys.argv[1], tensorflow=True)
import tensorflow as tf
import numba
from threadpoolctl import threadpool_info
print(json.dumps({
    "intra": tf.config.threading.get_intra_op_parallelism_threads(),
    "inter": tf.config.threading.get_inter_op_parallelism_threads(),
    "numba": numba.config.NUMBA_NUM_THREADS,
    "blas": [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"],
    "env": {k: os.environ[k] for k in sys.argv[2:]},
}))
"""


def _pools_in_a_fresh_process(cgroup_root: Path, **env) -> dict:
    clean = {k: v for k, v in os.environ.items()
             if k not in THREAD_ENV and not k.startswith("TF_NUM_")}
    process = subprocess.run(
        [sys.executable, "-c", TENSORFLOW_PROCESS, str(cgroup_root), *THREAD_ENV],
        capture_output=True, text=True, timeout=300, cwd=REPO,
        env={**clean, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3", **env})
    assert process.returncode == 0, process.stderr[-3000:]
    return json.loads(process.stdout.strip().splitlines()[-1])


def test_tensorflow_numba_and_blas_start_with_the_quotas_threads(tmp_path):
    pools = _pools_in_a_fresh_process(_cgroup_v2(tmp_path, "100000 100000"))
    assert pools["intra"] == 1 and pools["inter"] == 1
    assert pools["numba"] == 1
    assert pools["blas"] and set(pools["blas"]) == {1}  # numpy's, loaded before the call
    assert set(pools["env"].values()) == {"1"}


def test_tensorflows_own_variables_win(tmp_path):
    pools = _pools_in_a_fresh_process(_cgroup_v2(tmp_path, "100000 100000"),
                                      TF_NUM_INTRAOP_THREADS="2")
    assert pools["intra"] == 0  # left to TensorFlow, which reads its variable itself
    assert pools["inter"] == 1
