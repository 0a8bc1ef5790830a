"""One compiled forward pass per model, over data of any size.

DEC recomputes its soft assignments on the whole data set at every target update, and the
steps embed 70,000 images more than once; a forward pass compiled once per model and run in
large batches keeps that cheap.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from dec_lib.model.precision import use_xla

_FORWARD: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def predict_batched(model: keras.Model, x: np.ndarray, batch_size: int = 8192) -> np.ndarray:
    """The output of ``model`` for every row of ``x``, as float32.

    Parameters
    ----------
    model : keras.Model
        Any model with one input and one output.
    x : numpy.ndarray
        Rows to feed, N x input features.
    batch_size : int, default 8192
        Rows per compiled call: large, since nothing is trained.

    Returns
    -------
    numpy.ndarray
        N x output features; an empty array of the right width when ``x`` is empty.
    """
    forward = _compiled_forward(model)
    parts = [forward(tf.constant(x[i:i + batch_size])).numpy()
             for i in range(0, len(x), batch_size)]
    if not parts:
        return np.zeros((0, model.output.shape[-1]), dtype=np.float32)
    return np.concatenate(parts)


def _compiled_forward(model: keras.Model) -> Callable:
    """One compiled forward pass per model, reused: DEC calls this at every target update."""
    forward = _FORWARD.get(model)
    if forward is None:
        forward = tf.function(lambda batch: tf.cast(model(batch, training=False), tf.float32),
                              jit_compile=use_xla(), reduce_retracing=True)
        _FORWARD[model] = forward
    return forward
