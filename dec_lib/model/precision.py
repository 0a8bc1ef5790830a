"""Which number format and compiler the training loops use on the hardware they find.

Measured on a 2-core AVX-512 BF16 CPU (BENCHMARKS.md): bfloat16 matrix products with float32
weights ("mixed" precision) train the autoencoder about 1.3x and the DEC loop about 1.5x faster
than float32, to the same loss; XLA gains nothing on that CPU in float32 and loses in bfloat16,
so XLA is used only when a GPU is present. Models are always saved in float32, so an artifact
does not depend on the machine that trained it.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import keras

from dec_lib.config import PRECISIONS
from dec_lib.model.clustering import ClusteringLayer

_POLICY = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


@functools.cache
def _gpus() -> tuple:
    import tensorflow as tf

    return tuple(tf.config.list_physical_devices("GPU"))


_ONEDNN_BF16_ISAS = ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX",
                     "AVX10_1_512", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "AVX10_2_512",
                     "AVX10_2_512_AMX_2", "ALL", "DEFAULT")
"""``ONEDNN_MAX_CPU_ISA`` values that leave oneDNN its bfloat16 kernels."""


def _cpu_has_bf16() -> bool:
    """AVX-512 BF16 or AMX: the CPU multiplies bfloat16 natively (else TF emulates it, slowly).

    ``ONEDNN_MAX_CPU_ISA`` below AVX-512 BF16 takes oneDNN's bfloat16 kernels away although
    the CPU has them, and TensorFlow then aborts on the first bfloat16 product (measured:
    ``bench/reproducibility.py`` with ``AVX2``), so it counts as no bfloat16.
    """
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    if cap and cap not in _ONEDNN_BF16_ISAS:
        return False
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))


def _gpu_has_bf16() -> bool:
    import tensorflow as tf

    for gpu in _gpus():
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        if not capability or capability < (8, 0):  # bfloat16 tensor cores start with Ampere
            return False
    return bool(_gpus())


@functools.cache
def resolve_precision(name: str) -> str:
    """``auto`` becomes ``bfloat16`` where the hardware computes it natively, else ``float32``.

    Parameters
    ----------
    name : str
        One of ``PRECISIONS``.

    Returns
    -------
    str
        ``float32`` or ``bfloat16``.

    Raises
    ------
    ValueError
        An unknown name.
    """
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    if name != "auto":
        return name
    native = _gpu_has_bf16() if _gpus() else _cpu_has_bf16()
    return "bfloat16" if native else "float32"


def use_xla() -> bool:
    """XLA pays off on GPUs; on the CPUs measured it did not (see the module docstring)."""
    return bool(_gpus())


def with_precision(model: keras.Model, precision: str) -> keras.Model:
    """``model`` computing in ``precision`` (its weights copied), or ``model`` itself if it does.

    The clustering layer stays in float32: its Student's t kernel is cheap and bfloat16 would
    blur the soft assignments that DEC's target sharpens.

    Parameters
    ----------
    model : keras.Model
        The model whose weights are trained.
    precision : str
        One of ``PRECISIONS``.

    Returns
    -------
    keras.Model
        ``model``, or a copy computing in ``precision`` whose weights the caller copies back.
    """
    policy = _POLICY[resolve_precision(precision)]
    if all(layer.dtype_policy.name == policy for layer in model.layers
           if not isinstance(layer, (ClusteringLayer, keras.layers.InputLayer))):
        return model

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, ClusteringLayer):
            return layer.__class__.from_config(layer.get_config())
        return layer.__class__.from_config({**layer.get_config(), "dtype": policy})

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy
