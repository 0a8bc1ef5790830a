"""Paths refused before they are opened: missing, looping, or not regular files."""

from __future__ import annotations

import os

import pytest

from dec_lib.errors import DataError
from dec_lib.runtime.paths import check_source_path


def test_a_regular_file_and_a_directory_are_accepted(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("x")
    assert check_source_path(path, "configuration file").st_size == 1
    check_source_path(tmp_path, "data")


def test_a_directory_is_refused_where_a_file_is_needed(tmp_path):
    with pytest.raises(DataError, match="is a directory, not a configuration file"):
        check_source_path(tmp_path, "configuration file", directory_ok=False)


def test_a_missing_path_names_what_was_expected(tmp_path):
    with pytest.raises(DataError, match="configuration file not found"):
        check_source_path(tmp_path / "nope.yaml", "configuration file")
    with pytest.raises(DataError, match=r"no such file or directory \(expected an .npz\)"):
        check_source_path(tmp_path / "nope.npz", "data", expected="an .npz")


def test_a_fifo_is_refused_without_opening_it(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="FIFO"):
        check_source_path(fifo, "data")


def test_a_symlink_loop_is_refused(tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(DataError, match="symbolic link loop"):
        check_source_path(loop, "data")
