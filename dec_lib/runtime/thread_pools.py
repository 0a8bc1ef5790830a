"""Thread pools sized from the pod's CPU limit, not from the node's cores.

TensorFlow, OpenMP, OpenBLAS/MKL and numba each start one thread per core they see, and in a pod
they see the whole node (64 cores, say) while the CPU limit allows 2 to 8. The kernel then
throttles the pod for most of every scheduling period. A container's limit is its cgroup's CPU
quota, so that, capped by the CPUs the process may run on, is what the pools get.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CGROUP_ROOT = "/sys/fs/cgroup"
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
"""Read by those libraries when they load; a value already set by the user is kept."""
TF_INTRA_ENV, TF_INTER_ENV = "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"
"""TensorFlow's own variables: when the user set one, TensorFlow reads it and we leave it be."""


@dataclass(frozen=True)
class CpuLimit:
    """How many CPUs this process may use, and what said so."""

    cpus: int
    """Whole CPUs the process may use: the quota rounded up, at most the usable CPUs."""
    source: str
    """Where the number came from, for the log."""


def cpu_quota(cgroup_root: str | os.PathLike = CGROUP_ROOT) -> tuple[float, str] | None:
    """The cgroup's CPU quota in CPUs, and the file it came from; None when there is none.

    cgroup v2 keeps ``cpu.max`` ("QUOTA PERIOD", or "max PERIOD" without a limit); v1 keeps
    ``cpu.cfs_quota_us`` (-1 without a limit) and ``cpu.cfs_period_us`` in the cpu controller's
    folder, mounted as ``cpu`` or ``cpu,cpuacct``.

    Parameters
    ----------
    cgroup_root : str or path-like
        Where the cgroup file system is mounted.

    Returns
    -------
    tuple of (float, str) or None
        The quota in CPUs (possibly fractional) and its file; None without a quota.
    """
    root = Path(cgroup_root)
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        pass
    else:
        if quota == "max":
            return None
        try:
            return int(quota) / int(period), str(root / "cpu.max")
        except (ValueError, ZeroDivisionError):
            return None
    for controller in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        folder = root / controller
        try:
            quota_us = int((folder / "cpu.cfs_quota_us").read_text())
            period_us = int((folder / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        if quota_us <= 0 or period_us <= 0:
            return None
        return quota_us / period_us, str(folder / "cpu.cfs_quota_us")
    return None


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity), else the machine's count.

    Returns
    -------
    int
        At least 1.
    """
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cpu_limit(cgroup_root: str | os.PathLike = CGROUP_ROOT, usable: int | None = None
              ) -> CpuLimit:
    """The CPUs this process can keep busy: the cgroup quota, rounded up, at most ``usable``.

    Rounded up because a fractional CPU is still time to use (a 2.5-CPU limit gets 3 threads,
    as the JVM does); a thread too many costs little, a pool of 64 on 2 CPUs costs most of the
    time.

    Parameters
    ----------
    cgroup_root : str or path-like
        Where the cgroup file system is mounted.
    usable : int, optional
        The CPUs the process may run on; default ``usable_cpus()``.

    Returns
    -------
    CpuLimit
        The count and where it came from.
    """
    usable = usable_cpus() if usable is None else usable
    quota = cpu_quota(cgroup_root)
    if quota is None:
        return CpuLimit(usable, f"no CPU quota; {usable} usable CPU(s)")
    cpus, source = quota
    wanted = max(1, math.ceil(round(cpus, 6)))
    return CpuLimit(min(wanted, usable), f"CPU quota {cpus:g} from {source}, "
                                         f"{usable} usable CPU(s)")


_logged = False


def size_thread_pools(cgroup_root: str | os.PathLike = CGROUP_ROOT, *, tensorflow: bool = False,
                      environ: dict | None = None) -> int:
    """Size every thread pool to ``cpu_limit``.

    Call it first thing in a process, before numba and TensorFlow start: it sets the variables
    in ``THREAD_ENV`` (those the user set win), limits the OpenMP and BLAS libraries already
    loaded (numpy's, through threadpoolctl), and with ``tensorflow`` (or TensorFlow already
    imported) sets TensorFlow's intra-op pool to the count and its inter-op pool to at most 2:
    the ops that run side by side each use the intra-op pool, so more would oversubscribe.

    Parameters
    ----------
    cgroup_root : str or path-like
        Where the cgroup file system is mounted.
    tensorflow : bool, default False
        Size TensorFlow's pools too, importing it if needed.
    environ : dict, optional
        The environment to set the variables in; default ``os.environ``.

    Returns
    -------
    int
        The thread count.
    """
    global _logged
    env = os.environ if environ is None else environ
    limit = cpu_limit(cgroup_root)
    threads = limit.cpus
    user_set = {name for name in THREAD_ENV if name in env}
    for name in THREAD_ENV:
        env.setdefault(name, str(threads))
    _limit_loaded_libraries(env)
    if "numba" in sys.modules and "NUMBA_NUM_THREADS" not in user_set:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    if tensorflow or "tensorflow" in sys.modules:
        _size_tensorflow(threads, env)
    if not _logged:
        log.info("threads: %d (%s)", threads, limit.source)
        _logged = True
    return threads


def _limit_loaded_libraries(env) -> None:
    """OpenMP and BLAS libraries loaded before this call (numpy's OpenBLAS) read no variable."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # numpy alone, in a notebook: nothing more to size
        return
    for api, name in (("openmp", "OMP_NUM_THREADS"), ("blas", "OPENBLAS_NUM_THREADS")):
        try:
            threadpool_limits(limits=int(env[name]), user_api=api)
        except ValueError:
            log.warning("%s=%r is not a number of threads; left as it is", name, env[name])


def _size_tensorflow(threads: int, env) -> None:
    import tensorflow as tf

    for name, setter, value in (
            (TF_INTRA_ENV, tf.config.threading.set_intra_op_parallelism_threads, threads),
            (TF_INTER_ENV, tf.config.threading.set_inter_op_parallelism_threads,
             min(threads, 2))):
        if name in env:
            continue
        try:
            setter(value)
        except RuntimeError:  # TensorFlow already ran an op in this process: too late
            log.debug("TensorFlow has started; its thread pools stay as they are")
            return
