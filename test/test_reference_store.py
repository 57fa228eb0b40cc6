"""ReferenceStore: several named references survive a restart; removed or cleared ones never come back, even
after a crash between two steps; one damaged file costs only its object; the single-object file still loads; a
writer killed with SIGKILL mid-save (real processes) loses nothing and leaves no half file, and the temp files it
leaves are cleaned at start, only this store's."""
import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from one2any_ros.core.errors import InputError
from one2any_ros.core.reference import Reference, load_reference, make_reference, save_reference
from one2any_ros.core.frame import make_view
from one2any_ros.core.reference_store import ReferenceStore

K = np.array([[60.0, 0, 31.5], [0, 60.0, 23.5], [0, 0, 1]])
REPO = Path(__file__).resolve().parent.parent


def _ref(seed: int, box: tuple[int, int, int, int] = (10, 38, 12, 52)) -> Reference:
    """A real reference: a 64x48 tilted plane at ~0.5 m (its tilt and offset depend on ``seed``), a box mask."""
    h, w = 48, 64
    v, u = np.mgrid[0:h, 0:w]
    depth = (0.5 + 0.01 * seed + 0.002 * (u - w / 2) + 0.001 * seed * (v - h / 2)).astype(np.float32)
    mask = np.zeros((h, w), bool)
    r0, r1, c0, c1 = box
    mask[r0:r1, c0:c1] = True
    rgb = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    ref = make_reference(make_view(rgb, depth, mask, K, depth_encoding="32FC1"))
    ref.embedding = {"tokens": np.full((2, 3), seed, np.float32)}
    ref.embedding_backend = "classic"
    return ref


def _same(a: Reference, b: Reference) -> None:
    np.testing.assert_array_equal(a.view.mask, b.view.mask)
    np.testing.assert_allclose(a.view.depth, b.view.depth, atol=1e-6)
    np.testing.assert_allclose(a.points_C, b.points_C, atol=1e-9)
    np.testing.assert_allclose(a.T_refcam_C, b.T_refcam_C, atol=1e-9)
    np.testing.assert_allclose(a.T_C_O, b.T_C_O, atol=1e-9)
    assert a.scale == pytest.approx(b.scale)
    np.testing.assert_array_equal(a.embedding["tokens"], b.embedding["tokens"])


def _index(store: ReferenceStore) -> dict:
    return json.loads(store.index_path.read_text())


def _listed_files_exist(store: ReferenceStore) -> None:
    """The index never lists a file that is not there."""
    for e in _index(store)["objects"]:
        assert (store.path.parent / e["file"]).is_file(), e


@pytest.fixture(scope="module")
def refs() -> list[Reference]:
    return [_ref(1), _ref(2, (5, 30, 5, 40)), _ref(3, (20, 45, 30, 60))]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "ros_home" / "one2any" / "ns.one2any.reference.zip"  # directory does not exist yet


def test_layout_and_names(path):
    store = ReferenceStore(path)
    assert store.file_for("") == path
    assert store.file_for("mug") == path.with_name("ns.one2any.reference.mug.zip")
    assert store.index_path == path.with_name("ns.one2any.reference.zip.index.json")
    for bad in ("../x", "a b", "a" * 33, "é"):
        with pytest.raises(InputError) as ei:
            store.file_for(bad)
        assert ei.value.reason == "bad_object_id"


def test_round_trip_three_objects(path, refs):
    store = ReferenceStore(path)
    assert store.load() == ([], [])  # nothing stored yet: no error either
    store.save("mug", 3, refs[0])
    store.save("", 0, refs[1])
    store.save("box_2", 65535, refs[2])
    assert _index(store) == {"version": 1, "objects": [
        {"object_id": "mug", "mask_label": 3, "file": "ns.one2any.reference.mug.zip"},
        {"object_id": "", "mask_label": 0, "file": "ns.one2any.reference.zip"},
        {"object_id": "box_2", "mask_label": 65535, "file": "ns.one2any.reference.box_2.zip"}]}
    _listed_files_exist(store)
    assert not list(path.parent.glob("*.tmp"))  # no temp file left behind
    objects, errors = ReferenceStore(path).load()  # a restart: a new instance on the same path
    assert errors == []
    assert [(i, lab) for i, lab, _ in objects] == [("mug", 3), ("", 0), ("box_2", 65535)]
    for (_, _, back), ref in zip(objects, refs):
        _same(back, ref)
    assert ReferenceStore(path).object_ids() == ["mug", "", "box_2"]


def test_replace_moves_to_end(path, refs):
    store = ReferenceStore(path)
    store.save("a", 1, refs[0])
    store.save("b", 2, refs[1])
    store.save("c", 3, refs[2])
    store.save("a", 7, refs[2])  # replaced: new arrays, new label, last in the order
    objects, errors = ReferenceStore(path).load()
    assert errors == []
    assert [(i, lab) for i, lab, _ in objects] == [("b", 2), ("c", 3), ("a", 7)]
    _same(objects[2][2], refs[2])
    _listed_files_exist(store)


def test_bad_label_is_refused_before_anything_is_written(path, refs):
    store = ReferenceStore(path)
    for bad in (-1, 65536, 1.5):
        with pytest.raises(InputError):
            store.save("a", bad, refs[0])
    assert not path.parent.exists() or not any(path.parent.iterdir())


def test_remove_and_clear_never_resurrect(path, refs):
    store = ReferenceStore(path)
    for i, (oid, ref) in enumerate(zip(["", "a", "b"], refs)):
        store.save(oid, i, ref)
    assert store.remove("a") is True
    assert not store.file_for("a").exists()
    assert store.remove("a") is False  # already gone: fine
    assert store.remove("never_set") is False
    _listed_files_exist(store)
    objects, errors = ReferenceStore(path).load()
    assert errors == [] and [o[0] for o in objects] == ["", "b"]
    ReferenceStore(path).clear()
    assert not path.exists() and not store.file_for("b").exists()
    assert _index(store)["objects"] == []
    assert ReferenceStore(path).load() == ([], [])
    store.save("b", 5, refs[1])  # usable again after a clear
    assert [(o[0], o[1]) for o in ReferenceStore(path).load()[0]] == [("b", 5)]


def test_crash_inside_remove_leaves_it_removed(path, refs):
    store = ReferenceStore(path)
    store.save("", 0, refs[0])
    store.save("a", 1, refs[1])
    # what remove("a") and remove("") leave when the process dies after the index, before the delete
    store._write_index([e for e in store._current_entries() if e.object_id not in ("a", "")])
    assert store.file_for("a").is_file() and path.is_file()
    assert ReferenceStore(path).load() == ([], [])  # unlisted files are ignored, the legacy rule does not apply
    assert ReferenceStore(path).object_ids() == []
    # the next change does not pick the orphans up either
    ReferenceStore(path).save("b", 2, refs[2])
    assert [o[0] for o in ReferenceStore(path).load()[0]] == ["b"]


def test_crash_inside_clear_leaves_it_cleared(path, refs):
    store = ReferenceStore(path)
    store.save("", 0, refs[0])
    store.save("a", 1, refs[1])
    store._write_index([])  # clear() died after its first step
    assert ReferenceStore(path).load() == ([], [])


def test_crash_inside_save_keeps_the_previous_state(path, refs):
    store = ReferenceStore(path)
    store.save("a", 1, refs[0])
    save_reference(refs[1], store.file_for("new"))  # save("new") died after the file, before the index
    objects, errors = ReferenceStore(path).load()
    assert errors == [] and [o[0] for o in objects] == ["a"]


def test_corrupt_object_file_costs_only_that_object(path, refs):
    store = ReferenceStore(path)
    store.save("a", 1, refs[0])
    store.save("b", 2, refs[1])
    store.save("c", 3, refs[2])
    data = store.file_for("b").read_bytes()
    store.file_for("b").write_bytes(data[: len(data) // 2])
    store.file_for("c").unlink()
    objects, errors = ReferenceStore(path).load()
    assert [(o[0], o[1]) for o in objects] == [("a", 1)]
    _same(objects[0][2], refs[0])
    assert [e[0] for e in errors] == ["b", "c"]
    assert "corrupt" in errors[0][1] and "does not exist" in errors[1][1]
    store.save("b", 2, refs[1])  # replacing the damaged one repairs it
    objects, errors = ReferenceStore(path).load()
    assert [o[0] for o in objects] == ["a", "b"] and [e[0] for e in errors] == ["c"]


def test_bad_index_entries_are_reported_not_raised(path, refs):
    store = ReferenceStore(path)
    store.save("a", 1, refs[0])
    doc = _index(store)
    doc["objects"] += [
        {"object_id": "../../etc", "mask_label": 0, "file": "x.zip"},  # bad id
        {"object_id": "b", "mask_label": -4, "file": "ns.one2any.reference.b.zip"},  # bad label
        {"object_id": "c", "mask_label": True, "file": "ns.one2any.reference.c.zip"},  # bool is no label
        {"object_id": "d", "mask_label": 1, "file": "../elsewhere.zip"},  # a file that is not d's
        {"object_id": "a", "mask_label": 9, "file": "ns.one2any.reference.a.zip"},  # listed twice
        "junk",
    ]
    store.index_path.write_text(json.dumps(doc))
    objects, errors = ReferenceStore(path).load()
    assert [(o[0], o[1]) for o in objects] == [("a", 1)]
    assert [e[0] for e in errors] == ["../../etc", "b", "c", "d", "a", "'junk'"]
    # the next change keeps only the usable entries
    store.save("e", 2, refs[1])
    assert [e["object_id"] for e in _index(store)["objects"]] == ["a", "e"]


def test_legacy_single_file_loads_as_default(path, refs):
    path.parent.mkdir(parents=True)
    save_reference(refs[0], path)  # what today's single-object node writes
    store = ReferenceStore(path)
    assert not store.index_path.exists()
    objects, errors = store.load()
    assert errors == [] and [(o[0], o[1]) for o in objects] == [("", 0)]
    _same(objects[0][2], refs[0])
    # adding an object keeps the legacy one, first in the order
    store.save("a", 4, refs[1])
    assert [(o[0], o[1]) for o in ReferenceStore(path).load()[0]] == [("", 0), ("a", 4)]
    _listed_files_exist(store)
    # and the default file stays readable by the single-object loader
    _same(load_reference(path), refs[0])


def test_legacy_removed_never_returns(path, refs):
    path.parent.mkdir(parents=True)
    save_reference(refs[0], path)
    assert ReferenceStore(path).remove("") is True
    assert not path.exists()
    assert ReferenceStore(path).load() == ([], [])
    # the crash variant: the index written, the legacy file still there
    save_reference(refs[0], path)
    assert ReferenceStore(path).load() == ([], [])  # an index exists now: the file is not listed


def test_corrupt_legacy_file_is_reported(path):
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a zip")
    objects, errors = ReferenceStore(path).load()
    assert objects == [] and len(errors) == 1 and errors[0][0] == ""


@pytest.mark.parametrize("text", ["{not json", json.dumps([1, 2]), json.dumps({"version": 99, "objects": []}),
                                  json.dumps({"version": 1, "objects": "x"})])
def test_unreadable_index_falls_back_to_legacy(path, refs, text):
    store = ReferenceStore(path)
    store.save("", 0, refs[0])
    store.save("a", 1, refs[1])
    store.index_path.write_text(text)
    objects, errors = ReferenceStore(path).load()
    assert [(o[0], o[1]) for o in objects] == [("", 0)]
    assert len(errors) == 1 and errors[0][0] == "" and errors[0][1].startswith("index unreadable: ")
    # without the default file there is nothing to fall back to, and still nothing raises
    path.unlink()
    objects, errors = ReferenceStore(path).load()
    assert objects == [] and errors[0][1].startswith("index unreadable: ")
    # the next change writes a good index again
    store.save("b", 2, refs[2])
    assert ReferenceStore(path).load()[1] == [] and _index(store)["version"] == 1


def test_index_never_lists_a_deleted_file(path, refs):
    store = ReferenceStore(path)
    ops = [("save", "a"), ("save", ""), ("save", "b"), ("remove", "b"), ("save", "c"), ("remove", ""),
           ("save", "a"), ("remove", "zzz"), ("clear", None), ("save", "d"), ("remove", "d")]
    for i, (op, oid) in enumerate(ops):
        if op == "save":
            store.save(oid, i, refs[i % 3])
        elif op == "remove":
            store.remove(oid)
        else:
            store.clear()
        _listed_files_exist(store)
        listed = {e["file"] for e in _index(store)["objects"]}
        on_disk = {p.name for p in path.parent.glob("*.zip")}
        assert on_disk == listed, (op, oid)  # and nothing lingers unlisted after a completed change


def _leftover(target: Path) -> Path:
    """The temp file a writer killed inside ``files.atomic_path(target)`` leaves (the same mkstemp call)."""
    fd, name = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    os.write(fd, b"half of a file")
    os.close(fd)
    return Path(name)


def _files(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


def test_stray_temp_files_are_removed_only_the_stores_own(tmp_path, refs):
    """Stores whose names start alike share a directory: each removes the temp files of its index, its default
    file and any object's file (listed or not), and nothing else."""
    stores = [ReferenceStore(tmp_path / n) for n in ("a.reference.zip", "ab.reference.zip", "a.reference")]
    assert ReferenceStore(tmp_path / "nothing_yet" / "x.zip").remove_stray_temp_files() == []  # no directory
    for s in stores:
        s.save("", 0, refs[0])
        s.save("m", 1, refs[1])
    own = [sorted([_leftover(s.path), _leftover(s.index_path), _leftover(s.file_for("m")),
                   _leftover(s.file_for("never_saved")), _leftover(s.file_for("m"))]) for s in stores]
    (tmp_path / "a.reference.zip.old").write_text("not a temp file")
    (tmp_path / "a.reference.zip.notes.tmp.txt").write_text("not a temp file either")
    _leftover(tmp_path / "a.reference.m.zip.abcd1234.tmp")  # the temp of a temp file: atomic_path writes none
    before = _files(tmp_path)
    for s, mine in zip(stores, own):
        assert s.remove_stray_temp_files() == mine
        before -= {p.name for p in mine}
        assert _files(tmp_path) == before  # every other file is still there
        assert s.remove_stray_temp_files() == []
    for s in stores:  # and every store still loads all it had
        objects, errors = ReferenceStore(s.path).load()
        assert errors == [] and [(o[0], o[1]) for o in objects] == [("", 0), ("m", 1)]


def test_stray_temp_files_of_a_store_named_like_an_object_file(tmp_path, refs):
    """``x.reference.zip``'s object ``m`` and the store at ``x.reference.m.zip``: neither removes the other's index,
    object or default temp files. (The one name they share, ``x.reference.m.zip`` itself, is both stores' file by
    the layout: such a pair shares that reference, not only its temp files.)"""
    x, xm = ReferenceStore(tmp_path / "x.reference.zip"), ReferenceStore(tmp_path / "x.reference.m.zip")
    assert x.file_for("m") == xm.path
    x_own = sorted([_leftover(x.path), _leftover(x.index_path), _leftover(x.file_for("o"))])
    xm_own = sorted([_leftover(xm.index_path), _leftover(xm.file_for("o"))])  # x.reference.m.o.zip: no id of x
    shared = _leftover(xm.path)
    for s, mine in ((x, x_own), (xm, xm_own)):
        assert not any(s.owns_file_name(p.name) for p in (x_own + xm_own) if p not in mine)
    assert x.owns_file_name(xm.path.name) and xm.owns_file_name(x.file_for("m").name)
    assert not x.owns_file_name("x.reference.m.o.zip") and not x.owns_file_name(xm.index_path.name)
    assert xm.remove_stray_temp_files() == sorted(xm_own + [shared])
    assert x.remove_stray_temp_files() == x_own
    assert not list(tmp_path.iterdir())


# --- a real writer, killed with SIGKILL mid-save ------------------------------------------------------------------

_WRITER = """
import sys
from one2any_ros.core.reference import load_reference
from one2any_ros.core.reference_store import ReferenceStore
store = ReferenceStore(sys.argv[1])
refs = [load_reference(p) for p in sys.argv[2:4]]
print("ready", flush=True)
i = 0
while True:  # until the test kills it
    store.save("mug", 3, refs[i % 2])
    store.save("box", 5, refs[(i + 1) % 2])
    i += 1
"""
MIN_KILLS, MAX_KILLS = 15, 40


def _identical(a: Reference, b: Reference) -> bool:
    """Every stored array and the backend name, bit for bit."""
    pairs = [(a.view.rgb, b.view.rgb), (a.view.depth, b.view.depth), (a.view.mask, b.view.mask), (a.view.K, b.view.K),
             (a.T_C_O, b.T_C_O), (a.T_refcam_C, b.T_refcam_C), (a.points_C, b.points_C), (a.roc_map, b.roc_map)]
    return (a.embedding.keys() == b.embedding.keys() and a.embedding_backend == b.embedding_backend
            and all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in pairs)
            and all(np.array_equal(a.embedding[k], b.embedding[k]) for k in a.embedding))


@pytest.mark.slow
def test_kill_9_mid_save_loses_nothing_and_leaves_only_temp_files(tmp_path, refs):
    """A child process saves two references alternately for "mug" and for "box" in a tight loop; it is killed with
    SIGKILL after a seeded random delay, again and again. After every kill a new store loads both objects, each
    exactly one of the two references (never lost, never half), and the cleanup leaves no temp file. The kills
    must include one that left a temp file (it landed mid-write), else the test proved nothing: it kills more
    until one does (a save is ~95% of the loop, so in practice most do)."""
    rng = random.Random(25)
    sources, expected = [], []
    for i in range(2):  # a 256 kB embedding: a save takes tens of ms, so kills land inside one
        ref = dataclasses.replace(refs[i], embedding={
            "tokens": np.random.default_rng(i).standard_normal((64, 1024)).astype(np.float32)})
        save_reference(ref, tmp_path / f"source{i}.zip")
        sources.append(load_reference(tmp_path / f"source{i}.zip"))  # what the child saves
        save_reference(sources[i], tmp_path / f"expected{i}.zip")
        expected.append(load_reference(tmp_path / f"expected{i}.zip"))  # what loading its save gives
    assert not _identical(expected[0], expected[1])
    path = tmp_path / "store" / "ns.one2any.reference.zip"
    ReferenceStore(path).save("mug", 3, sources[0])
    ReferenceStore(path).save("box", 5, sources[1])
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    kills = mid_write = strays = 0
    seen = set()
    while kills < MIN_KILLS or (mid_write == 0 and kills < MAX_KILLS):
        child = subprocess.Popen([sys.executable, "-c", _WRITER, str(path), *(str(tmp_path / f"source{i}.zip")
                                                                             for i in range(2))],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            ready = child.stdout.readline()
            if ready == "ready\n":
                time.sleep(rng.uniform(0.0, 0.15))  # a loop (two saves) takes ~60 ms here
        finally:
            child.send_signal(signal.SIGKILL)  # also when the child died by itself: then this is a no-op
            _, err = child.communicate(timeout=60)
        assert ready == "ready\n" and child.returncode == -signal.SIGKILL, f"the writer failed:\n{err}"
        kills += 1
        leftovers = sorted(path.parent.glob("*.tmp"))
        mid_write += bool(leftovers)
        strays += len(leftovers)
        objects, errors = ReferenceStore(path).load()
        assert errors == [], (kills, errors)
        assert sorted((o[0], o[1]) for o in objects) == [("box", 5), ("mug", 3)]
        for oid, _, ref in objects:
            which = [i for i in range(2) if _identical(ref, expected[i])]
            assert len(which) == 1, (kills, oid)
            seen.add((oid, which[0]))
        assert ReferenceStore(path).remove_stray_temp_files() == leftovers
        assert not list(path.parent.glob("*.tmp"))
        assert sorted(p.name for p in path.parent.iterdir()) == [
            "ns.one2any.reference.box.zip", "ns.one2any.reference.mug.zip", "ns.one2any.reference.zip.index.json"]
    print(f"{kills} kills, {mid_write} mid-write, {strays} stray temp files removed, states seen {sorted(seen)}")
    assert mid_write >= 1, f"none of {kills} kills landed mid-write"
