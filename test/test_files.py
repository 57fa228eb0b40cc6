"""Atomic writes (one2any_ros.core.files): a failed writer keeps the old file and leaves no temp file behind."""
import os
import stat

import numpy as np
import pytest

from one2any_ros.core.files import atomic_path, write_atomic


class WriterDied(Exception):
    pass


def test_write_atomic_replaces_the_file(tmp_path):
    p = tmp_path / "sub" / "state.json"
    write_atomic(p, "old")
    write_atomic(p, b"new \x00 bytes")
    assert p.read_bytes() == b"new \x00 bytes"
    assert sorted(x.name for x in p.parent.iterdir()) == ["state.json"]


def test_a_writer_that_raises_keeps_the_old_file_and_no_temp(tmp_path):
    p = tmp_path / "report.json"
    p.write_text("old")
    with pytest.raises(WriterDied):
        with atomic_path(p) as tmp:
            tmp.write_text("half of the new")
            raise WriterDied
    assert p.read_text() == "old"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["report.json"]


def test_a_writer_that_raises_before_writing_anything_leaves_nothing(tmp_path):
    p = tmp_path / "new.bin"
    with pytest.raises(WriterDied):
        with atomic_path(p):
            raise WriterDied
    assert list(tmp_path.iterdir()) == []


def test_the_temp_file_lies_beside_the_target(tmp_path):
    p = tmp_path / "checkpoint.safetensors"
    with atomic_path(p) as tmp:
        assert tmp.parent == p.parent and tmp != p and tmp.name.endswith(".tmp")
        with open(tmp, "wb") as f:  # np.savez into a file object, as train_scorer caches its pools
            np.savez(f, a=np.arange(3))
    with np.load(p, allow_pickle=False) as z:
        np.testing.assert_array_equal(z["a"], np.arange(3))


def test_the_written_file_gets_a_plain_open_permissions(tmp_path):
    """mkstemp makes 0600 files; a bundled checkpoint or a shared reference must be readable like any file."""
    plain = tmp_path / "plain"
    plain.write_text("x")
    p = tmp_path / "atomic"
    write_atomic(p, "x")
    assert stat.S_IMODE(os.stat(p).st_mode) == stat.S_IMODE(os.stat(plain).st_mode)
