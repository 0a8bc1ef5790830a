"""The one shared check for images, labels and cluster counts.

Every entry point (loaders, estimators, serving) calls these, so a bad input is refused once, early,
with a message naming its source, instead of surfacing later as a NaN loss or a shape error deep
inside TensorFlow.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from dec_lib.errors import ConfigError, DataError

__all__ = ["check_images", "check_labels", "check_n_clusters"]

# Float pixels a hair outside [0, 1] are rounding noise from upstream scaling, not a wrong unit.
_RANGE_TOLERANCE = 1e-6
_PIXEL_UNITS = "images must be uint8 0-255 or floats in [0, 1]"


def _as_array(values: Any, source: str, what: str) -> np.ndarray:
    try:
        return np.asarray(values)
    except (ValueError, TypeError) as exc:  # ragged nested lists, unconvertible objects
        raise DataError(source, f"{what} cannot be read as an array: {exc}") from exc


def check_images(x: Any, source: str = "input") -> np.ndarray:
    """Return ``x`` as a C-contiguous float32 NxD array of pixels in [0, 1].

    Accepts NxD, NxHxW or NxHxWxC arrays of bool, integer or float dtype. Integers in 0..255 are
    divided by 255 and bools map to 0/1, so uint8 files and pre-scaled arrays give the same model
    input; floats must already lie in [0, 1], since guessing their unit would hide a wrong scale.
    Returns a view of ``x``, not a copy, when it already is such an array.

    Raises
    ------
    DataError
        naming ``source`` and what is wrong (dtype, shape, emptiness, NaN/inf, range).
    """
    arr = _as_array(x, source, "images")
    kind = arr.dtype.kind
    if kind not in "biuf":
        raise DataError(
            source, f"images have dtype {arr.dtype}; expected numbers (uint8, int or float)"
        )
    if arr.ndim not in (2, 3, 4):
        raise DataError(
            source,
            f"images have shape {arr.shape}; expected NxD, NxHxW or NxHxWxC (channels last)",
        )
    n = arr.shape[0]
    if n == 0:
        raise DataError(source, f"no images (shape {arr.shape})")
    n_features = int(np.prod(arr.shape[1:]))
    if n_features == 0:
        raise DataError(source, f"images have no pixels (shape {arr.shape})")
    flat = arr.reshape(n, n_features)

    if kind == "b":
        return np.ascontiguousarray(flat, dtype=np.float32)
    if kind in "iu":
        lo, hi = flat.min(), flat.max()
        if lo < 0 or hi > 255:
            raise DataError(
                source, f"integer pixel values out of range [{lo}, {hi}]; {_PIXEL_UNITS}"
            )
        # Divide (not multiply by 1/255) so k/255 is correctly rounded whatever path led here.
        return np.ascontiguousarray(flat.astype(np.float32) / np.float32(255))

    finite = np.isfinite(flat)
    if not finite.all():
        bad = np.flatnonzero(~finite.all(axis=1))
        raise DataError(
            source,
            f"{bad.size} image(s) contain NaN or +-inf (first at index {bad[0]}); "
            "drop or repair them before clustering",
        )
    lo, hi = float(flat.min()), float(flat.max())
    if lo < -_RANGE_TOLERANCE or hi > 1 + _RANGE_TOLERANCE:
        raise DataError(source, f"pixel values out of range [{lo:g}, {hi:g}]; {_PIXEL_UNITS}")
    out = np.ascontiguousarray(flat, dtype=np.float32)
    if lo < 0 or hi > 1:
        out = np.clip(out, 0, 1)
    return out


def check_labels(y: Any, n: int, source: str) -> np.ndarray | None:
    """Return optional ground-truth labels as int64, or None when there are none.

    Labels only feed evaluation (DEC itself is unsupervised), so they are optional; but when given
    they must line up one-to-one with the images, or every accuracy computed from them is wrong.

    Raises
    ------
    DataError
        when ``y`` is not 1-D, not integer-valued, contains NaN, or its length is not n.
    """
    if y is None:
        return None
    arr = _as_array(y, source, "labels")
    if arr.ndim != 1:
        raise DataError(source, f"labels have shape {arr.shape}; expected a 1-D array")
    if arr.shape[0] != n:
        raise DataError(source, f"{arr.shape[0]} labels for {n} images")
    kind = arr.dtype.kind
    if kind in "iu":
        if kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
            raise DataError(source, "labels exceed the int64 range")
        return _non_negative(arr.astype(np.int64, copy=False), source)
    if kind == "f":
        if np.isnan(arr).any():
            raise DataError(source, f"{int(np.isnan(arr).sum())} labels are NaN")
        if not np.isfinite(arr).all() or not (arr == np.round(arr)).all():
            raise DataError(source, "labels must be integers (got non-integral float values)")
        return _non_negative(arr.astype(np.int64), source)
    raise DataError(source, f"labels have dtype {arr.dtype}; expected integers")


def _non_negative(labels: np.ndarray, source: str) -> np.ndarray:
    """Labels index the confusion matrix (``bincount``): a negative one would only fail at
    evaluation, after all the training."""
    if labels.size and labels.min() < 0:
        bad = np.flatnonzero(labels < 0)
        raise DataError(source, f"{bad.size} label(s) are negative (first: {labels[bad[0]]} at "
                        f"index {bad[0]}); labels must be 0 or more")
    return labels


def check_n_clusters(n_clusters: Any, n_samples: int) -> int:
    """Return ``n_clusters`` as an int, refusing counts that make clustering impossible.

    k-means initialisation needs at least one sample per centre, so more clusters than samples
    would fail much later with an obscure error.

    Raises
    ------
    ConfigError
        on 'dec.n_clusters' when it is not an integer in 2..n_samples.
    """
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, numbers.Integral):
        raise ConfigError("dec.n_clusters", f"must be an integer, got {n_clusters!r}")
    if n_clusters < 2:  # one cluster is no clustering: every soft assignment would be 1
        raise ConfigError("dec.n_clusters", f"must be at least 2, got {n_clusters}")
    if n_clusters > n_samples:
        raise ConfigError(
            "dec.n_clusters",
            f"{n_clusters} clusters for only {n_samples} samples; lower it or use more data",
        )
    return int(n_clusters)
