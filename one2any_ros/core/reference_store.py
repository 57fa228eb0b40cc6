"""Several named references on disk (one per object), so a node restarts with the objects it was given.

Layout, for the node's ``reference_path`` ``P`` (e.g. ``.../ns.one2any.reference.zip``):

- the default object ``""`` lives exactly at ``P``: the file today's single-object node writes, so an existing
  installation keeps its reference and old files still load;
- a named object ``id`` lives beside it at ``P.with_name(P.stem + "." + id + P.suffix)``; ``P.stem`` keeps every
  suffix but the last, so ``x.reference.zip`` gives ``x.reference.<id>.zip``;
- the index ``P.name + ".index.json"`` lists the objects in the order they were set:
  ``{"version": 1, "objects": [{"object_id": str, "mask_label": int, "file": <file name>}, ...]}``.

The index is the truth: a reference file it does not list is ignored (it is what a crash between two steps leaves
behind), so an object that was removed or cleared never comes back. Every change writes the index atomically
(temp file in the same directory, fsync, ``os.replace``); the order of the steps is chosen so that a crash between
any two of them leaves a state that loads consistently:

- ``save``: reference file first (``save_reference`` is atomic), then the index. A crash before the index is
  written leaves the previous state (the new file unlisted, or, when an id is replaced, the new arrays under the
  id's previous label and place);
- ``remove``: index without the object first, then its file is deleted;
- ``clear``: empty index first, then the files.

A process killed mid-write (``kill -9``, a power cut) can leave the temp file of the reference or index it was
writing (``files.atomic_path``: ``<file name>.<tag>.tmp``); nothing loads it, and ``remove_stray_temp_files``,
called when the node starts, deletes this store's own (those of the index, the default file and any object's
file: never another store's in the same directory, never a non-temp file).

Legacy: with no index at all but a file at ``P`` (saved by the single-object node), ``P`` is the default object
with ``mask_label`` 0. An unreadable index (corrupt, wrong version) is reported and the same legacy rule applies;
the next change rewrites the index from that state.

Loading never raises for a bad entry (corrupt or missing file, bad id or label in the index): it is reported as
``(object_id, error text)`` and the other objects still load. No ROS here; the node is a thin layer over it.
"""
from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from one2any_ros.core.errors import InputError
from one2any_ros.core.files import temp_files_in, temp_target, write_atomic
from one2any_ros.core.frame import DEFAULT_OBJECT, check_label, validate_object_id
from one2any_ros.core.reference import Reference, load_reference, save_reference

INDEX_FORMAT_VERSION = 1
INDEX_SUFFIX = ".index.json"

LoadedObject = tuple[str, int, Reference]  # (object_id, mask_label, reference)
LoadError = tuple[str, str]  # (object_id, error text)


@dataclass(frozen=True)
class _Entry:
    """One valid line of the index."""

    object_id: str
    mask_label: int
    file: str

    def to_json(self) -> dict:
        return {"object_id": self.object_id, "mask_label": self.mask_label, "file": self.file}


class _IndexUnreadable(Exception):
    """The index exists but cannot be used (I/O error, bad JSON, wrong structure or version)."""


class ReferenceStore:
    """The references of one node: the default object at ``path``, named ones beside it, and their index.

    Every call reads the index from disk, so two instances on the same path (e.g. before and after a restart)
    always agree; a lock serialises this instance's own changes.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    # --- paths ---------------------------------------------------------------------------------------------
    @property
    def index_path(self) -> Path:
        """The index beside the default file: ``<path name>.index.json``."""
        return self.path.with_name(self.path.name + INDEX_SUFFIX)

    def file_for(self, object_id: str) -> Path:
        """Where ``object_id`` is stored: ``path`` for the default object, else ``<stem>.<id><suffix>`` beside it.

        Raises InputError(reason="bad_object_id") for an id that is not a valid name (so no id can name a path
        outside the directory)."""
        validate_object_id(object_id)
        if object_id == DEFAULT_OBJECT:
            return self.path
        return self.path.with_name(self.path.stem + "." + object_id + self.path.suffix)

    def owns_file_name(self, name: str) -> bool:
        """Whether ``name`` (a file name in ``path``'s directory) is one this store writes: the index, the
        default file or the file of some valid object id (listed or not)."""
        if name in (self.path.name, self.index_path.name):
            return True
        head, suffix = self.path.stem + ".", self.path.suffix
        if not (name.startswith(head) and name.endswith(suffix) and len(name) > len(head) + len(suffix)):
            return False
        object_id = name[len(head): len(name) - len(suffix)]
        try:
            return self.file_for(object_id).name == name
        except InputError:  # not a valid id: "obj.m" in "x.reference.obj.m.zip", the store "x.reference.obj.zip"'s
            return False

    # --- changes -------------------------------------------------------------------------------------------
    def save(self, object_id: str, mask_label: int, ref: Reference) -> Path:
        """Store ``ref`` for ``object_id`` and make it the last in the order (a replaced id moves to the end too).

        The reference file is written before the index, so a crash in between never lists a file that is not
        complete. Returns the reference file's path. Raises InputError for a bad id or label; OSError when the
        disk refuses."""
        file = self.file_for(object_id)
        label = check_label(mask_label)
        with self._lock:
            file.parent.mkdir(parents=True, exist_ok=True)
            save_reference(ref, file)
            entries = [e for e in self._current_entries() if e.object_id != object_id]
            entries.append(_Entry(object_id, label, file.name))
            self._write_index(entries)
        return file

    def remove(self, object_id: str) -> bool:
        """Forget ``object_id``: the index without it is written first, then its file is deleted (a missing file
        is fine), so a crash in between leaves an unlisted file that is ignored. Returns whether it was stored."""
        file = self.file_for(object_id)
        with self._lock:
            entries = self._current_entries()
            kept = [e for e in entries if e.object_id != object_id]
            self._write_index(kept)
            _unlink(file)
        return len(kept) != len(entries)

    def clear(self) -> None:
        """Forget every object: an empty index first, then every listed file and the default file."""
        with self._lock:
            entries = self._current_entries()
            self._write_index([])
            for e in entries:
                _unlink(self.path.with_name(e.file))
            _unlink(self.path)

    def remove_stray_temp_files(self) -> list[Path]:
        """Delete the temp files a writer of this store left when it was killed mid-write; returns their paths
        (sorted). Only this store's (``owns_file_name`` of the temp file's target), only temp files. Call it at
        start, before this store's first change: a save in progress, here or in another process on the same
        path, has a temp file too. OSError when one cannot be deleted (one already gone is fine)."""
        removed: list[Path] = []
        with self._lock:
            for tmp in temp_files_in(self.path.parent):
                if self.owns_file_name(temp_target(tmp.name) or ""):
                    try:
                        tmp.unlink()
                    except FileNotFoundError:
                        continue
                    removed.append(tmp)
        return removed

    # --- loading -------------------------------------------------------------------------------------------
    def load(self) -> tuple[list[LoadedObject], list[LoadError]]:
        """The stored objects in the order they were set, and ``(object_id, error text)`` for each one that
        could not be loaded (the others still load). Never raises for what is on disk: a node must start even
        when one file, or the index, is damaged."""
        errors: list[LoadError] = []
        try:
            entries = self._read_index(errors)
        except _IndexUnreadable as e:
            errors.append((DEFAULT_OBJECT, f"index unreadable: {e}"))
            entries = self._legacy_entries()
        if entries is None:
            entries = self._legacy_entries()
        objects: list[LoadedObject] = []
        for e in entries:
            try:
                objects.append((e.object_id, e.mask_label, load_reference(self.path.with_name(e.file))))
            except Exception as exc:  # whatever a damaged file makes the loader raise: report it, load the rest
                errors.append((e.object_id, str(exc) if str(exc) else type(exc).__name__))
        return objects, errors

    def object_ids(self) -> list[str]:
        """The ids the store lists, in order, without loading any reference (legacy rule included)."""
        return [e.object_id for e in self._current_entries()]

    # --- internals -----------------------------------------------------------------------------------------
    def _current_entries(self) -> list[_Entry]:
        """The listed objects a change starts from: the index, or the legacy rule when there is none or it is
        unreadable (bad lines are dropped: they were reported by ``load``)."""
        try:
            entries = self._read_index([])
        except _IndexUnreadable:
            entries = None
        return self._legacy_entries() if entries is None else entries

    def _legacy_entries(self) -> list[_Entry]:
        """A file at ``path`` without a (usable) index is the single-object node's reference: the default
        object, every non-zero pixel (mask_label 0)."""
        return [_Entry(DEFAULT_OBJECT, 0, self.path.name)] if self.path.is_file() else []

    def _read_index(self, errors: list[LoadError]) -> list[_Entry] | None:
        """The index's valid entries (None when there is no index); each bad line is appended to ``errors``.
        Raises _IndexUnreadable when the file exists but is not a version-1 index."""
        try:
            text = self.index_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as e:
            raise _IndexUnreadable(f"{self.index_path}: {e}") from e
        try:
            doc = json.loads(text)
        except ValueError as e:
            raise _IndexUnreadable(f"{self.index_path} is not JSON: {e}") from e
        if not isinstance(doc, dict) or doc.get("version") != INDEX_FORMAT_VERSION or not isinstance(
                doc.get("objects"), list):
            version = doc.get("version") if isinstance(doc, dict) else None
            raise _IndexUnreadable(f"{self.index_path} is not a version-{INDEX_FORMAT_VERSION} index "
                                   f"(version {version!r})")
        entries: list[_Entry] = []
        seen: set[str] = set()
        for item in doc["objects"]:
            try:
                entry = self._parse_entry(item)
            except InputError as e:
                raw = item.get("object_id") if isinstance(item, dict) else item
                name = raw if isinstance(item, dict) and isinstance(raw, str) else repr(raw)[:40]
                errors.append((name, f"index entry unusable: {e}"))
                continue
            if entry.object_id in seen:
                errors.append((entry.object_id, "index entry unusable: object listed twice; the first is kept"))
                continue
            seen.add(entry.object_id)
            entries.append(entry)
        return entries

    def _parse_entry(self, item: object) -> _Entry:
        """One index line, checked: a valid id, a label that can occur in a label image, and the file name this
        store would use for that id (anything else could point outside the store)."""
        if not isinstance(item, dict):
            raise InputError(f"entry {item!r:.40} is not an object")
        object_id = item.get("object_id")
        if not isinstance(object_id, str):
            raise InputError(f"object_id {object_id!r} is not a string", reason="bad_object_id")
        expected = self.file_for(object_id).name  # InputError(bad_object_id) for a bad name
        label = item.get("mask_label")
        if isinstance(label, bool):
            raise InputError(f"mask_label {label!r} is not an integer", reason="bad_mask_label")
        label = check_label(label)  # type: ignore[arg-type]
        if item.get("file") != expected:
            raise InputError(f"file {item.get('file')!r} is not {expected!r}, the file of object {object_id!r}")
        return _Entry(object_id, label, expected)

    def _write_index(self, entries: list[_Entry]) -> None:
        """Replace the index atomically (``files.write_atomic``: temp file, fsync, os.replace), so a reader (or a
        restart after a crash) sees the old index or the new one, never half of one."""
        doc = {"version": INDEX_FORMAT_VERSION, "objects": [e.to_json() for e in entries]}
        write_atomic(self.index_path, json.dumps(doc, indent=1) + "\n")


def _unlink(path: Path) -> None:
    """Delete a file that may already be gone."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass
