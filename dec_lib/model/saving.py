"""Saving and loading Keras models in the ``.keras`` format, always in safe mode.

Safe mode refuses lambda layers and arbitrary code in a model file; the only custom class a
model of ours may name is the clustering layer.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras

from dec_lib.errors import DataError
from dec_lib.model.clustering import ClusteringLayer
from dec_lib.runtime.files import replaced

CUSTOM_OBJECTS = {"dec>ClusteringLayer": ClusteringLayer, "ClusteringLayer": ClusteringLayer}


def save_model(model: keras.Model, path: str | os.PathLike) -> Path:
    """Write ``model`` in the ``.keras`` format, atomically: a reader never sees a half-written
    model under the final name.

    Parameters
    ----------
    model : keras.Model
        Any model of ours.
    path : str or os.PathLike
        The file; ``.keras`` is appended when missing.

    Returns
    -------
    pathlib.Path
        Where the model is.
    """
    path = Path(path)
    if path.suffix != ".keras":
        path = path.with_name(path.name + ".keras")
    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced(path) as tmp:
        model.save(tmp)
    return path


def load_model(path: str | os.PathLike) -> keras.Model:
    """Read a model ``save_model`` wrote, in safe mode.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.keras`` file, or a folder holding exactly one (a KFP Model artifact).

    Returns
    -------
    keras.Model

    Raises
    ------
    DataError
        No such file, several candidates, or a file that is not a loadable model.
    """
    path = Path(path)
    if path.is_dir():
        candidates = sorted(path.glob("*.keras"))
        if len(candidates) != 1:
            raise DataError(path, f"expected one .keras model file, found {len(candidates)}")
        path = candidates[0]
    if not path.exists():
        raise DataError(path, "no such model file")
    try:
        return keras.saving.load_model(path, custom_objects=CUSTOM_OBJECTS, compile=False,
                                       safe_mode=True)
    except (ValueError, OSError, KeyError, TypeError) as error:
        raise DataError(path, f"not a loadable .keras model: {error}") from error
