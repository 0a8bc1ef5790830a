"""Atomic writes: a reader sees the old file or the new one, never half of one.

Every file a step hands on (data sets, models, centres, checkpoints) and every output of the
CLI is written under a temporary name in the same folder and then renamed over the final name,
which POSIX makes atomic within one file system. A crash or an interruption leaves the previous
file in place, and only a temporary one to remove.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path


def temporary_path(path: str | os.PathLike[str]) -> Path:
    """The temporary name ``path`` is written under before it is renamed into place.

    Parameters
    ----------
    path : str or path-like
        The final path.

    Returns
    -------
    pathlib.Path
        A hidden name in the same folder that ends as ``path`` does (Keras insists on
        ``.keras`` and ``.weights.h5``) and holds this process's id, so that two processes
        writing the same file do not write into each other's temporary file.
    """
    path = Path(path)
    return path.with_name(f".tmp-{os.getpid()}-{path.name}")


@contextmanager
def replaced(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path to write; when the block ends without error, it replaces ``path``.

    For writers that want a path rather than bytes (``keras.Model.save``, ``np.savez``).
    When the block raises, the temporary file is removed and ``path`` is left as it was.

    Parameters
    ----------
    path : str or path-like
        The final path; its folder must exist.

    Yields
    ------
    pathlib.Path
        Where to write (see ``temporary_path``).

    Examples
    --------
    >>> with replaced("model.keras") as tmp:  # doctest: +SKIP
    ...     model.save(tmp)
    """
    tmp = temporary_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with suppress(FileNotFoundError):
            tmp.unlink()


def write_atomic(path: str | os.PathLike[str], data: bytes | str,
                 encoding: str = "utf-8") -> None:
    """Write ``data`` to ``path`` atomically (see ``replaced``).

    Parameters
    ----------
    path : str or path-like
        The file to write; its folder must exist.
    data : bytes or str
        The content; text is encoded with ``encoding``.
    encoding : str, default "utf-8"
        The encoding of text.
    """
    with replaced(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding=encoding)
        else:
            tmp.write_bytes(data)
