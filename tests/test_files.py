"""Atomic writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import numpy as np
import pytest

from dec_lib.runtime.files import replaced, temporary_path, write_atomic


def test_text_and_bytes_replace_the_file_whole(tmp_path):
    path = tmp_path / "state.json"
    write_atomic(path, "old")
    write_atomic(path, b"new")
    assert path.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path):
    path = tmp_path / "model.keras"
    path.write_text("old")
    with pytest.raises(RuntimeError), replaced(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crashed while writing")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]


def test_the_temporary_path_ends_as_the_final_one_for_writers_that_check(tmp_path):
    # Keras wants .keras and .weights.h5; np.savez appends .npz to a path without it.
    for name in ("model.keras", "autoencoder.weights.h5", "optimizer.npz"):
        tmp = temporary_path(tmp_path / name)
        assert tmp.parent == tmp_path and tmp.name.startswith(".") and tmp.name.endswith(name)
    with replaced(tmp_path / "optimizer.npz") as tmp:
        np.savez(tmp, np.arange(3))
    with np.load(tmp_path / "optimizer.npz") as saved:
        assert saved["arr_0"].tolist() == [0, 1, 2]
