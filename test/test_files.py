"""Atomic writes (one2any_ros.core.files): a failed writer keeps the old file and leaves no temp file behind; the
temp file a killed writer leaves is recognised as that target's, and as nothing else's."""
import os
import stat

import numpy as np
import pytest

from one2any_ros.core.files import atomic_path, stray_temp_files, temp_files_in, temp_target, write_atomic


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


def test_temp_names_name_their_target(tmp_path):
    """The rule stray_temp_files relies on holds for the names atomic_path really makes."""
    for name in ("a.zip", "x.reference.obj.zip", "ns.zip.index.json", "plain", "a.tmp"):
        with atomic_path(tmp_path / name) as tmp:
            assert temp_target(tmp.name) == name
            assert stray_temp_files(tmp_path / name) == [tmp]
            tmp.write_text("x")
        assert stray_temp_files(tmp_path / name) == []
    assert temp_target("a.zip.k3x_9q2m.tmp") == "a.zip"
    for not_temp in ("a.zip", "a.tmp", ".k3x_9q2m.tmp", "a.zip.k3-9.tmp", "a.zip..tmp", "a.zip.tmp.bak", "tmp"):
        assert temp_target(not_temp) is None, not_temp


def test_stray_temp_files_finds_only_the_targets_own(tmp_path):
    """A killed writer's leftovers, told apart from those of targets whose names start alike."""
    names = ["a.zip.abcd1234.tmp", "a.zip.zz_99.tmp",  # a.zip's
             "ab.zip.abcd1234.tmp", "a.zip.index.json.abcd1234.tmp", "xa.zip.abcd1234.tmp",  # other targets'
             "a.zip.abcd1234.tmp.q1w2e3r4.tmp",  # the temp file of a temp file: not a.zip's
             "a.zip.tmp",  # the temp file of "a"
             "a.zip", "a.zip.old", "a.zip.tmp.bak", "a.zip.ab-cd.tmp"]  # not temp files
    for n in names:
        (tmp_path / n).write_text(n)
    (tmp_path / "a.zip.dir00001.tmp").mkdir()  # atomic_path makes no folders
    (tmp_path / "a.zip.link0001.tmp").symlink_to(tmp_path / "a.zip")  # nor links
    assert stray_temp_files(tmp_path / "a.zip") == [tmp_path / "a.zip.abcd1234.tmp", tmp_path / "a.zip.zz_99.tmp"]
    assert stray_temp_files(tmp_path / "ab.zip") == [tmp_path / "ab.zip.abcd1234.tmp"]
    assert stray_temp_files(tmp_path / "missing" / "a.zip") == []  # no directory: nothing
    assert [p.name for p in temp_files_in(tmp_path)] == sorted(
        n for n in names if n.endswith(".tmp") and n != "a.zip.ab-cd.tmp")
