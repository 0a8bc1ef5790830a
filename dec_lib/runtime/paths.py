"""Checks on a path before it is opened: is it there, and is it something that can be read.

Configuration files and data sources are both paths a user hands over; both must be refused in
milliseconds, naming the path, when opening them would fail or hang.
"""

from __future__ import annotations

import errno
import os
import stat

from dec_lib.errors import DataError

__all__ = ["check_source_path"]

_FILE_KINDS = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device",
               stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}


def check_source_path(path: str | os.PathLike[str], what: str, directory_ok: bool = True,
                      expected: str | None = None) -> os.stat_result:
    """Refuse, before opening it, a path that is missing, a symlink loop, or not a regular file
    (or a directory, where ``directory_ok``).

    Opening a FIFO blocks until something writes to it, and a device never ends: a step handed
    one hung forever with its run left RUNNING.

    Parameters
    ----------
    path : str or os.PathLike
        The path to check.
    what : str
        What the path should hold ("configuration file", "data"), for the messages.
    directory_ok : bool, default=True
        Whether a directory is accepted.
    expected : str, optional
        What would be accepted, named when the path does not exist (the data formats).

    Returns
    -------
    os.stat_result
        The path's status, so the caller can tell a directory from a file without a second
        ``stat``.

    Raises
    ------
    DataError
        Naming the path and what it is.
    """
    where = str(path)
    try:
        info = os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise DataError(where, "symbolic link loop (a link that leads back to itself); "
                            "point it at the file") from None
        if error.errno in (errno.ENOENT, errno.ENOTDIR):
            if expected is None:
                raise DataError(where, f"{what} not found") from None
            raise DataError(where, f"no such file or directory (expected {expected})") from None
        raise DataError(where, f"cannot read the {what}: {error.strerror or error}") from None
    if stat.S_ISDIR(info.st_mode):
        if not directory_ok:
            raise DataError(where, f"is a directory, not a {what}")
    elif not stat.S_ISREG(info.st_mode):
        kind = _FILE_KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")
        raise DataError(where, f"is {kind}, not a regular file; refused (reading it could "
                        f"block forever); pass a {what} file")
    return info
