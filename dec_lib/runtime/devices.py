"""GPU present or fail fast: a step given GPUs checks that TensorFlow sees them.

TensorFlow falls back to the CPU without a word when it cannot load the CUDA libraries (a CPU
image, or driver libraries mounted where ``LD_LIBRARY_PATH`` does not look, as GKE's
``/usr/local/nvidia/lib64``), and ``TF_CPP_MIN_LOG_LEVEL`` hides its one warning. Pretraining then
runs for hours on a node paid for its GPU. The pipeline tells a GPU step how many it was given
(``DEC_GPUS``); the step compares that with what TensorFlow sees before it loads any data.
"""

from __future__ import annotations

import logging
import os

from dec_lib.errors import DeviceError

log = logging.getLogger(__name__)

GPUS_ENV = "DEC_GPUS"
CPU_FALLBACK_ENV = "DEC_CPU_FALLBACK"


def visible_gpus() -> int:
    """How many GPUs TensorFlow sees (it loads the CUDA libraries to find out).

    Returns
    -------
    int
        The number of physical GPU devices.
    """
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


def check_gpus(step: str, environ: os._Environ | dict | None = None,
               count_gpus=visible_gpus) -> None:
    """Raise ``DeviceError`` when ``step`` was given GPUs and TensorFlow sees fewer.

    The message leaves out ``step``: the step's error handler puts it in front.

    Nothing is checked without ``DEC_GPUS`` (a CPU step, a notebook, a local run). With
    ``DEC_CPU_FALLBACK=1`` a missing GPU is one warning and the step trains on the CPU.

    Parameters
    ----------
    step : str
        The step, for the log.
    environ : mapping, optional
        Where to read ``DEC_GPUS`` and ``DEC_CPU_FALLBACK``; default ``os.environ``.
    count_gpus : callable, default visible_gpus
        Counts the GPUs TensorFlow sees.

    Raises
    ------
    DeviceError
        Fewer GPUs than given, without CPU fallback; or ``DEC_GPUS`` is not a number.
    """
    env = os.environ if environ is None else environ
    given = env.get(GPUS_ENV, "").strip()
    if not given:
        return
    try:
        wanted = int(given)
    except ValueError:
        raise DeviceError(f"{GPUS_ENV}={given!r} is not a number of GPUs") from None
    seen = count_gpus()
    if seen >= wanted:
        log.debug("%s: TensorFlow sees %d GPU(s) of the %d given", step, seen, wanted)
        return
    cause = (f"given {wanted} GPU(s) ({GPUS_ENV}={given}) but TensorFlow sees {seen}: the "
             "image lacks CUDA, or the driver libraries are not on LD_LIBRARY_PATH (GKE mounts "
             "them at /usr/local/nvidia/lib64)")
    if env.get(CPU_FALLBACK_ENV, "").strip() in ("1", "true", "yes"):
        log.warning("%s: %s; training on the CPU, as --allow-cpu-fallback permits", step, cause)
        return
    raise DeviceError(f"{cause}; fix the image or node, or compile with --allow-cpu-fallback "
                      "to train on the CPU")
