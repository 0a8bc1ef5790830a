"""Data sets kept where clusters keep them: object stores (``s3://``, ``gs://``) and ``https://``.

The files behind a URI are downloaded with fsspec (s3fs, gcsfs, its HTTP client) into a
scratch folder and then read by the same loaders, with the same bounds, as a local path: an
object store is a place, not a format. The download itself is bounded too, by the byte cap of
the readers and a cap on the number of files, counted as the bytes arrive (a server's declared
size is not trusted).

Credentials are never parameters. Each library reads its own standard environment: boto's
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_DEFAULT_REGION``
and ``AWS_ENDPOINT_URL`` (which reaches MinIO and other S3-compatible stores); Google's default
credentials for ``gs://`` (Workload Identity, or ``FSSPEC_GCS='{"token": {...}}'`` holding a
service-account key). On a cluster they come from the optional data Secret (``pipelines/dag.py``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from dec_lib.errors import DataError

__all__ = ["MAX_DOWNLOAD_BYTES", "MAX_DOWNLOAD_FILES", "REMOTE_SCHEMES", "Download",
           "download", "is_remote"]

log = logging.getLogger(__name__)

REMOTE_SCHEMES = ("s3", "gs", "gcs", "https")
"""URI schemes read through fsspec; anything else is a local path (or ``mnist``)."""

#: Largest number of bytes downloaded for one data set: the readers' own cap on what a data set
#: may expand to, so a download can never be larger than what could be read from it.
MAX_DOWNLOAD_BYTES = 4 * 1024**3
#: Most files downloaded from one folder (a PNG folder of all 70,000 MNIST digits fits).
MAX_DOWNLOAD_FILES = 100_000

_CHUNK_BYTES = 8 * 1024**2
_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*)://", re.IGNORECASE)
# Files a data folder is read from: IDX files and PNG images (see dec_lib.data.datasets).
_DATA_FILE = re.compile(r"(idx\d-ubyte(\.gz)?|\.png)$", re.IGNORECASE)


def is_remote(source: str | os.PathLike[str]) -> bool:
    """Whether ``source`` is a URI this module reads (``s3://``, ``gs://``, ``https://``)."""
    match = _SCHEME.match(os.fspath(source)) if isinstance(source, str) else None
    return bool(match) and match.group(1).lower() in REMOTE_SCHEMES


def check_uri(uri: str) -> str:
    """``uri`` if its scheme is one of `REMOTE_SCHEMES`; a `DataError` naming it otherwise."""
    match = _SCHEME.match(uri)
    scheme = match.group(1).lower() if match else ""
    if scheme not in REMOTE_SCHEMES:
        raise DataError(uri, f"unsupported URI scheme {scheme!r}; use one of "
                             + ", ".join(f"{s}://" for s in REMOTE_SCHEMES) + " or a local path")
    if not uri[match.end():].strip("/"):
        raise DataError(uri, "names no bucket or host")
    return uri


@dataclass(frozen=True)
class Download:
    """A URI's files on local disk, and what was read to get them.

    ``sha256`` covers every byte downloaded and every file's name, in name order: a changed,
    added or removed object under the same URI changes it.
    """

    uri: str
    path: Path
    """The local copy: a file, or a folder holding the downloaded files."""
    sha256: str
    n_bytes: int
    n_files: int


@contextmanager
def download(uri: str, *, max_bytes: int = MAX_DOWNLOAD_BYTES,
             max_files: int = MAX_DOWNLOAD_FILES) -> Iterator[Download]:
    """Download the object or the folder at ``uri`` into a scratch folder, removed on exit.

    A folder (an S3 or GCS prefix) yields its IDX and PNG files, not its subfolders: the
    formats `dec_lib.data.datasets.load_dataset` reads from a folder. ``https://`` names one file.

    Raises
    ------
    DataError
        naming the URI: unsupported scheme, nothing there, access refused, the
        store unreachable, or more than ``max_bytes``/``max_files`` to read.
    """
    check_uri(uri)
    fs, root = _filesystem(uri)
    with tempfile.TemporaryDirectory(prefix="dec-download-") as scratch:
        try:
            files, is_folder = _listing(fs, root, uri, max_files, max_bytes)
            folder = Path(scratch) / "data"
            folder.mkdir()
            digest = hashlib.sha256()
            total = 0
            for remote in files:
                name = PurePosixPath(remote.rstrip("/")).name or "data"
                digest.update(f"{name}\0".encode())
                total = _copy_bounded(fs, remote, folder / name, digest, uri, total, max_bytes)
        except DataError:
            raise
        except FileNotFoundError:
            raise DataError(uri, "no such object or folder") from None
        except PermissionError as error:
            raise DataError(uri, f"access refused ({_reason(error)}); check the credentials in "
                                 "the environment (the data Secret on a cluster)") from None
        except Exception as error:  # network, TLS, auth and HTTP errors differ per store
            raise DataError(uri, f"cannot download: {_reason(error)}") from None
        local = folder if is_folder else folder / PurePosixPath(files[0].rstrip("/")).name
        result = Download(uri=uri, path=local, sha256=digest.hexdigest(), n_bytes=total,
                          n_files=len(files))
        log.info("downloaded %d file(s), %d bytes, from %s", len(files), total, uri)
        yield result


def _filesystem(uri: str) -> tuple[Any, str]:
    try:
        import fsspec
    except ImportError:  # pragma: no cover - fsspec is a dependency
        raise DataError(uri, "reading a URI needs fsspec; install the project's "
                             "requirements") from None
    try:
        return fsspec.core.url_to_fs(uri)
    except (ImportError, ValueError) as error:
        raise DataError(uri, f"cannot open: {_reason(error)}") from None


def _listing(fs: Any, root: str, uri: str, max_files: int, max_bytes: int
             ) -> tuple[list[str], bool]:
    """The remote files to download, sorted, and whether ``root`` is a folder.

    A folder whose listed sizes already exceed ``max_bytes`` is refused before any download;
    the sizes are then counted again as the bytes arrive, since a listing can be wrong.
    """
    if uri.lower().startswith("https://"):
        return [root], False  # a web server has files, not listable folders
    if fs.isfile(root):
        return [root], False
    entries = fs.ls(root, detail=True)  # FileNotFoundError when nothing is there
    chosen = [e for e in entries if e.get("type") == "file" and _DATA_FILE.search(e["name"])]
    files = sorted(e["name"] for e in chosen)
    listed = sum(int(e.get("size") or 0) for e in chosen)
    if listed > max_bytes:
        raise DataError(uri, f"lists {listed} bytes of data files, over the {max_bytes} byte "
                             "download limit; read a smaller data set")
    if not files:
        raise DataError(uri, "holds no IDX (*-idx3-ubyte[.gz]) or PNG (*.png) files, and no "
                             "object of that name")
    if len(files) > max_files:
        raise DataError(uri, f"holds {len(files)} data files, over the limit of {max_files}")
    return files, True


def _copy_bounded(fs: Any, remote: str, local: Path, digest: Any, uri: str, total: int,
                  max_bytes: int) -> int:
    """Copy one remote file, hashing it and counting every byte against ``max_bytes``."""
    with fs.open(remote, "rb") as source, open(local, "wb") as target:
        while chunk := source.read(min(_CHUNK_BYTES, max_bytes - total + 1)):
            total += len(chunk)
            if total > max_bytes:
                raise DataError(uri, f"holds more than {max_bytes} bytes, the download "
                                     "limit; read a smaller data set")
            digest.update(chunk)
            target.write(chunk)
    return total


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
