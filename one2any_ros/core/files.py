"""Atomic file writes: a reader, or a restart after a crash, sees the old file or the new one, never half of one.

The new content goes to a temp file in the target's directory (``os.replace`` is atomic only within one file
system), is flushed to disk, then renamed over the target; on an error the temp file is removed and the old file
stays as it was. The one place the library writes files that something reads back (references, checkpoints, run
state, reports).

A process killed between creating the temp file and the rename (``kill -9``, a power cut) cannot remove it: the
temp file stays beside the target, named ``<target name>.<tag>.tmp`` (``<tag>``: letters, digits, ``_``). This
module owns that naming rule (``temp_target``, ``stray_temp_files``), so whoever owns a target can find and
delete its leftovers at start without touching anything else's files.
"""
from __future__ import annotations

import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

TEMP_SUFFIX = ".tmp"  # run directories ignore ``*.tmp`` (.gitignore, tools/gpu_train_chunk.sh)
# mkstemp's random part: letters, digits and "_", never a dot, so the target name is all before the last dot
_TEMP_TAG = re.compile(r"[A-Za-z0-9_]+")


def _process_umask() -> int:
    """The umask, read once: ``os.umask`` can only be read by setting it, which is not thread-safe later on."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_process_umask()  # what a plain open() would give (mkstemp creates 0600)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path`` for a writer that needs a file name (safetensors ``save_file``, a zip,
    ``np.savez`` into an open file, ``savefig`` with an explicit ``format``); when the block ends without an
    error, the temp file replaces ``path``. The temp name ends in ``.tmp``, so a writer that infers the format
    from the extension must be told it.

    Args:
        path: the target file; its folder is created if missing.

    Yields:
        Path of the temp file ``<name>.<tag>.tmp`` in the target's folder (created empty).

    Raises:
        OSError: the folder or the temp file cannot be made, or the rename fails; whatever the block raises goes
            through after the temp file is removed.
    """
    path = Path(path)
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=path.name + ".", suffix=TEMP_SUFFIX, dir=directory)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, _FILE_MODE)
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(directory)


def temp_target(name: str) -> str | None:
    """The name of the file whose atomic write a temp file called ``name`` belongs to (``a.zip.k3x_9q2m.tmp``
    gives ``a.zip``), or None when ``name`` is not such a temp file. Names only: nothing is read from disk.

    Args:
        name: a file name (no folder).

    Returns:
        the target's name, or None.
    """
    if not name.endswith(TEMP_SUFFIX):
        return None
    target, dot, tag = name[: -len(TEMP_SUFFIX)].rpartition(".")
    return target if dot and target and _TEMP_TAG.fullmatch(tag) else None


def stray_temp_files(path: str | os.PathLike) -> list[Path]:
    """The temp files ``atomic_path`` left beside ``path`` (sorted): a writer that died before its rename.
    Only files whose target is exactly ``path`` (not ``path``'s temp files' own temps, not ``ab.zip``'s for
    ``a.zip``). Deleting one is safe only when nothing is writing ``path`` now.

    Args:
        path: the target file.

    Returns:
        sorted list of Path, empty when there are none or the folder does not exist.
    """
    path = Path(path)
    return [p for p in temp_files_in(path.parent) if temp_target(p.name) == path.name]


def temp_files_in(directory: str | os.PathLike) -> list[Path]:
    """Every file in ``directory`` named like an ``atomic_path`` temp file (sorted; symbolic links and folders
    are not: ``atomic_path`` makes neither). An owner picks its own by ``temp_target``.

    Args:
        directory: the folder to scan (not recursive).

    Returns:
        sorted list of Path; empty when the folder does not exist.
    """
    try:
        with os.scandir(directory) as it:
            return sorted(Path(e.path) for e in it if e.is_file(follow_symlinks=False) and temp_target(e.name))
    except (FileNotFoundError, NotADirectoryError):
        return []


def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """Replace ``path`` with ``data`` (``str`` is written as UTF-8) atomically.

    Args:
        path: the target file; its folder is created if missing.
        data: the new content, bytes or text.

    Raises:
        OSError: the write or the rename fails (the old file stays as it was).
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_path(path) as tmp:
        tmp.write_bytes(raw)


def _fsync(path: Path) -> None:
    """Flush a written file's data to disk before it is renamed into place (else a power cut may leave the
    new name pointing at an empty file)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable where the platform allows it (best effort: not on every OS)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
