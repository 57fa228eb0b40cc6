"""Several objects side by side in helper processes (issue 17): N objects on one frame for well under N times one
object's cost on a CPU.

Why processes, not threads: tracking one object (640x480, classic) is ~9.5 ms, most of it numpy on small arrays
under the GIL. Measured on 2 cores: two threads took two objects from 19.5 to 19.1 ms and four from 37.5 to 36.0 ms,
and a shorter GIL switch interval did not help. A helper process holds some objects' PoseEstimators (its own
backend, made from the caller's ``Backend.recipe``) and estimates them on the same frame while the caller estimates
its own.
- The frame's images (rgb, depth, labels and the shared free-space depth) travel once per frame, through one
  anonymous memory-mapped file (``SharedFrame``) whose descriptor each helper gets once.
- Requests and answers (a PoseResult, or the object's One2AnyError) travel through a socket pair, one at a time, in
  order.
- The caller keeps every reference, already encoded (a learned embedding is computed once, by the caller), so a
  helper that dies is started again with its objects; their tracking restarts with a global search.
The helpers are new interpreters (``python -m one2any_ros.core.object_processes``: never forked, since a ROS node's
middleware threads do not survive a fork, and not multiprocessing's spawn, which re-runs the caller's main script)
talking over a socket pair; they end when the caller closes them or its end goes away (the caller killed).

No ROS here. Hand-written because no library here runs stateful numpy workers over a shared frame: a
multiprocessing pool would pickle the frame once per object and could not keep each object's tracking state.
"""
from __future__ import annotations

import mmap
import os
import socket
import subprocess
import sys
import tempfile
import traceback
from multiprocessing.connection import Connection
from multiprocessing.reduction import recv_handle, send_handle
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from one2any_ros.core.errors import One2AnyError

if TYPE_CHECKING:
    from one2any_ros.core.estimator import EstimatorSettings
    from one2any_ros.core.multi_object import Frame
    from one2any_ros.core.reference import Reference

Layout = tuple[tuple[tuple[int, ...], str], ...]  # (shape, dtype) of rgb, depth, labels, near depth
PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the folder that holds one2any_ros
POLL_S = 0.2  # how often a caller waiting for an answer checks that the helper is still alive


class HelperStopped(One2AnyError):
    """A helper process ended while it held objects (killed, out of memory, ...): it is started again."""

    reason = "internal_error"


def _views(buf, layout: Layout) -> list[np.ndarray]:
    """The frame's arrays laid out one after another in ``buf``."""
    out, offset = [], 0
    for shape, dtype in layout:
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        out.append(np.frombuffer(buf, np.dtype(dtype), count=int(np.prod(shape)), offset=offset).reshape(shape))
        offset += n
    return out


def _layout_size(layout: Layout) -> int:
    return sum(int(np.prod(shape)) * np.dtype(dtype).itemsize for shape, dtype in layout)


class SharedFrame:
    """The frame being estimated, written once into an anonymous file in memory (``/dev/shm`` when there is one) that
    the helpers map. One writer (the caller), read only while it waits for the helpers' answers: no locking. The file
    has no name (unlinked at once), so nothing is left behind even when the process is killed."""

    def __init__(self) -> None:
        self.layout: Layout | None = None
        self.fd: int | None = None
        self.generation = 0  # counts the files made (a new file may reuse the old descriptor's number)
        self._file = None
        self._map: mmap.mmap | None = None
        self._arrays: list[np.ndarray] = []

    def write(self, frame: "Frame") -> None:
        """Copy ``frame`` in (into a new file when its size changed: ``generation`` tells helpers to map that)."""
        arrays = [frame.rgb, frame.depth, frame.labels, frame.near_depth()]
        layout: Layout = tuple((tuple(a.shape), a.dtype.str) for a in arrays)
        if layout != self.layout:
            self.close()
            self._file = tempfile.TemporaryFile(prefix="one2any_frame_",
                                                dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
            self._file.truncate(_layout_size(layout))
            self.fd = self._file.fileno()
            self._map = mmap.mmap(self.fd, _layout_size(layout))
            self._arrays = _views(self._map, layout)
            self.layout = layout
            self.generation += 1
        for dst, src in zip(self._arrays, arrays):
            dst[...] = src

    def close(self) -> None:
        self._arrays = []
        if self._map is not None:
            self._map.close()
        if self._file is not None:
            self._file.close()
        self._map = self._file = self.fd = self.layout = None


def _serve(conn: Connection) -> None:
    """A helper process: its backend recipe and settings first, then the caller's requests, answered in order,
    until "stop" or the caller is gone."""
    from one2any_ros.core.backends import create_backend
    from one2any_ros.core.estimator import PoseEstimator
    from one2any_ros.core.multi_object import Frame

    try:
        recipe, settings, threads = conn.recv()
    except (EOFError, OSError):
        return
    backend = create_backend(recipe[0], device=recipe[1], checkpoint=recipe[2])
    if "torch" in sys.modules:  # the learned backend: its share of the cores, not half of them each (oversubscribed)
        sys.modules["torch"].set_num_threads(max(1, int(threads)))
    objects: dict[str, tuple[int, PoseEstimator]] = {}
    frame: dict[str, Any] = {}

    def set_object(object_id: str, ref: "Reference", mask_label: int) -> None:
        est = PoseEstimator(backend, settings=settings)
        est.set_reference(ref)
        objects[object_id] = (mask_label, est)

    def frame_file(layout: Layout) -> None:
        fd = recv_handle(conn)
        # the old mapping is dropped, not closed: an array of the last frame may still point into it
        frame["map"] = mmap.mmap(fd, _layout_size(layout), prot=mmap.PROT_READ)
        os.close(fd)  # the mapping keeps the memory
        frame["layout"] = layout

    def estimate(K: np.ndarray, min_depth: float, max_depth: float, track: bool,
                 new_settings: "EstimatorSettings") -> dict[str, Any]:
        nonlocal settings
        if new_settings != settings:
            settings = new_settings
            for _, est in objects.values():
                est.settings = settings
        rgb, depth, labels, near = _views(frame["map"], frame["layout"])
        f = Frame(rgb=rgb, depth=depth, labels=labels, K=K, min_depth=min_depth, max_depth=max_depth,
                  _near={"near": near})
        out: dict[str, Any] = {}
        for object_id, (label, est) in objects.items():
            try:
                out[object_id] = est.estimate(f.view(label), track=track, near_depth=near)
            except One2AnyError as e:
                out[object_id] = e
        return out

    handlers = {"set": set_object, "remove": lambda object_id: objects.pop(object_id, None),
                "frame_file": frame_file, "estimate": estimate}
    while True:
        try:
            op, args = conn.recv()
        except (EOFError, OSError):
            return  # the caller is gone
        if op == "stop":
            return
        try:
            conn.send(("ok", handlers[op](*args)))
        except One2AnyError as e:
            conn.send(("error", e))
        except Exception:  # a bug: the caller raises it with this traceback
            conn.send(("bug", traceback.format_exc()))


class ObjectProcess:
    """One helper process, and the caller's record of the objects it holds (to start it again with them)."""

    def __init__(self, recipe: tuple[str, str, str | None], settings: "EstimatorSettings", threads: int = 1) -> None:
        """``threads``: torch's CPU threads in the helper (the learned backend)."""
        self.recipe, self.settings, self.threads = recipe, settings, threads
        self.objects: dict[str, tuple[int, "Reference"]] = {}  # id -> (mask_label, encoded reference), in order
        self._start()

    def _start(self) -> None:
        mine, theirs = socket.socketpair()
        env = dict(os.environ)  # the package importable in the helper even when the caller found it by sys.path
        env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p)
        with theirs:
            self._proc = subprocess.Popen([sys.executable, "-m", __name__, str(theirs.fileno())],
                                          pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=env)
        self._conn = Connection(mine.detach())
        self._conn.send((self.recipe, self.settings, self.threads))
        self._frame_generation = 0  # the SharedFrame file this helper has mapped (0: none)

    @property
    def pid(self) -> int:
        return self._proc.pid

    def alive(self) -> bool:
        return self._proc.poll() is None

    # --- requests ----------------------------------------------------------------------------------------
    def send(self, op: str, *args) -> None:
        try:
            self._conn.send((op, args))
        except (OSError, ValueError) as e:  # a broken pipe: the helper is gone
            raise self._stopped() from e

    def _stopped(self) -> HelperStopped:
        return HelperStopped(f"the object helper process (pid {self._proc.pid}) stopped (exit code "
                             f"{self._proc.returncode}); it is started again and its objects' tracking restarts")

    def _wait(self, timeout: float) -> None:
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass

    def answer(self) -> Any:
        """The answer to the oldest request sent: its value, the One2AnyError it raised, HelperStopped when the
        process ended, RuntimeError (with the helper's traceback) on a bug."""
        try:
            while not self._conn.poll(POLL_S):
                if not self.alive():
                    break
            status, value = self._conn.recv()
        except (EOFError, OSError) as e:
            self._wait(1.0)  # its exit code, for the message
            raise self._stopped() from e
        if status == "ok":
            return value
        if status == "error":
            raise value
        raise RuntimeError(f"the object helper process failed:\n{value}")

    def call(self, op: str, *args) -> Any:
        self.send(op, *args)
        return self.answer()

    def send_estimate(self, shared: SharedFrame, frame: "Frame", track: bool, settings: "EstimatorSettings") -> None:
        """Ask for its objects' poses on the frame in ``shared`` (written already); collect them with answer()."""
        if self._frame_generation != shared.generation:
            self.send("frame_file", shared.layout)
            try:
                send_handle(self._conn, shared.fd, self._proc.pid)
            except OSError as e:
                raise self._stopped() from e
            self.answer()
            self._frame_generation = shared.generation
        self.send("estimate", frame.K, frame.min_depth, frame.max_depth, track, settings)

    # --- objects -----------------------------------------------------------------------------------------
    def set_object(self, object_id: str, ref: "Reference", mask_label: int) -> None:
        self.call("set", object_id, ref, int(mask_label))
        self.objects.pop(object_id, None)
        self.objects[object_id] = (int(mask_label), ref)

    def remove(self, object_id: str) -> None:
        if self.objects.pop(object_id, None) is not None:
            try:
                self.call("remove", object_id)
            except HelperStopped:
                pass  # gone already: it starts again when it next has objects (set_object, or a frame)

    def restart(self) -> None:
        """A new process with the same objects (after the old one stopped)."""
        self.close()
        self._start()
        for object_id, (label, ref) in list(self.objects.items()):
            self.call("set", object_id, ref, label)

    def close(self) -> None:
        """Stop the process (it also ends when the caller's process does)."""
        try:
            self._conn.send(("stop", ()))
        except (OSError, ValueError):
            pass
        self._wait(2.0)
        if self.alive():
            self._proc.kill()
            self._wait(2.0)
        self._conn.close()


__all__ = ["HelperStopped", "ObjectProcess", "SharedFrame"]

if __name__ == "__main__":  # a helper process: python -m one2any_ros.core.object_processes <socket fd>
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's to handle; the helper ends with it (EOF)
    _serve(Connection(int(sys.argv[1])))
