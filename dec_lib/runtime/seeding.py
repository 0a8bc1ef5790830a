"""One call that makes a run repeatable under ``--seed``."""

from __future__ import annotations

import contextlib
import os


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow, and ask TensorFlow for deterministic kernels.

    Deterministic kernels cost little on a CPU and make two runs with one seed give one model,
    which is what a user comparing settings relies on.

    Parameters
    ----------
    seed : int
        The run's seed.
    """
    os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    with contextlib.suppress(RuntimeError):  # already configured in this process
        tf.config.experimental.enable_op_determinism()
