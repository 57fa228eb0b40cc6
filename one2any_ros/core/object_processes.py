"""Helper processes that estimate some of a frame's objects while the caller estimates the rest (several objects for
well under N times one object's cost on a CPU; docs/benchmarks.md, Several objects).

Why processes, not threads: most of an object's work is numpy on small arrays under the GIL, so threads gain
nothing. A helper process holds some objects' PoseEstimators (its own backend, made from the caller's
``Backend.recipe``) and estimates them on the same frame while the caller estimates its own.
- The frame's images (rgb, depth, labels and the shared free-space depth) travel once per frame, through one
  anonymous memory-mapped file (``SharedFrame``) whose descriptor each helper gets once.
- Requests and answers travel through a socket pair as length-prefixed plain pickles (``_Channel``), one at a time,
  in order. Not multiprocessing's Connection: its pickler hands torch tensors over through a resource sharer whose
  authentication key the helper does not share (every answer holding a tensor failed).
- Every wait of the caller has a deadline (``HelperTimeout``, reason ``helper_timeout``): a helper that is stopped,
  swapped out or stuck never holds the caller. The caller then kills it and starts a new one in the background
  (``restart``, ``poll_started``), estimating its objects itself meanwhile (core/multi_object.py).
- The caller keeps every reference, already encoded (a learned embedding is computed once, by the caller), so a new
  helper gets its objects back; their tracking restarts with a global search.
The helpers are new interpreters (``python -m one2any_ros.core.object_processes``: never forked, since a ROS node's
middleware threads do not survive a fork, and not multiprocessing's spawn, which re-runs the caller's main script);
they end when the caller closes them or its end goes away (the caller killed).

No ROS here. Hand-written because no library here runs stateful numpy workers over a shared frame with deadlines: a
multiprocessing pool would pickle the frame once per object, could not keep each object's tracking state and has no
way to give up on one stuck worker.
"""
from __future__ import annotations

import mmap
import os
import pickle
import select
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from multiprocessing.reduction import recv_handle, send_handle
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from one2any_ros.core.errors import One2AnyError

if TYPE_CHECKING:
    from one2any_ros.core.estimator import PoseEstimator
    from one2any_ros.core.estimator_settings import EstimatorSettings
    from one2any_ros.core.frame import Frame
    from one2any_ros.core.reference import Reference
    from one2any_ros.core.tracking import Cue

Layout = tuple[tuple[tuple[int, ...], str], ...]  # (shape, dtype) of rgb, depth, labels, near depth
PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the folder that holds one2any_ros
HELPER_TIMEOUT_S = 2.0  # default deadline of one answer (beyond the caller's own share of the frame)
STARTUP_TIMEOUT_S = 60.0  # a new helper must have made its backend (torch, a checkpoint) within this
_HEADER = struct.Struct("!Q")  # the length of each pickled message


class HelperStopped(One2AnyError):
    """A helper process ended while it held objects (killed, out of memory, ...): it is started again."""

    reason = "internal_error"


class HelperTimeout(HelperStopped):
    """A helper process missed its deadline (stopped, swapped out, stuck in a library): it is killed and started
    again, and its objects are estimated by the caller meanwhile."""

    reason = "helper_timeout"


class _Channel:
    """Length-prefixed pickles over a stream socket. The caller's waits take a deadline (``timeout`` seconds, None =
    none, the helper's side); a message cut by a deadline leaves the stream out of step, so the caller then kills
    the helper."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def fileno(self) -> int:  # multiprocessing.reduction's send_handle/recv_handle need only this
        return self.sock.fileno()

    def send(self, obj: Any, timeout: float | None = None) -> None:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        self.sock.settimeout(timeout)
        self.sock.sendall(_HEADER.pack(len(data)))
        self.sock.sendall(data)

    def recv(self, timeout: float | None = None) -> Any:
        end = None if timeout is None else time.monotonic() + timeout
        size = _HEADER.unpack(self._exactly(_HEADER.size, end))[0]
        return pickle.loads(self._exactly(size, end))

    def readable(self) -> bool:
        """Whether an answer (or the helper's end of the socket closing) is waiting, without waiting."""
        return bool(select.select([self.sock], [], [], 0)[0])

    def _exactly(self, n: int, end: float | None) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            if end is not None:  # past the deadline, what is already here is still read (timeout 0: no waiting)
                self.sock.settimeout(max(0.0, end - time.monotonic()))
            try:
                chunk = self.sock.recv(min(n - len(buf), 1 << 20))
            except BlockingIOError as e:
                raise TimeoutError from e
            if not chunk:
                raise EOFError
            buf += chunk
        return bytes(buf)

    def close(self) -> None:
        self.sock.close()


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
        labels = frame.labels if frame.labels is not None else np.zeros((1, 1), np.uint8)  # none: a stand-in
        arrays = [frame.rgb, frame.depth, labels, frame.near_depth()]
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


def _serve(chan: _Channel) -> None:
    """A helper process: its backend recipe and settings first, then the caller's requests, answered in order,
    until "stop" or the caller is gone."""
    from one2any_ros.core.backends import create_backend
    from one2any_ros.core.query_threads import limit_threads

    try:
        recipe, settings, threads = chan.recv()
    except (EOFError, OSError):
        return
    backend = create_backend(recipe[0], device=recipe[1], checkpoint=recipe[2])
    if "torch" in sys.modules:  # the learned backend: its share of the cores, not half of them each (oversubscribed)
        sys.modules["torch"].set_num_threads(max(1, int(threads)))
    limit_threads(threads)  # the KD-tree's OpenMP threads: the same share
    helper = _HelperState(backend, settings)
    handlers = {"ping": lambda: None, "set": helper.set_object, "remove": helper.remove,
                "frame_file": lambda layout: helper.frame_file(chan, layout), "estimate": helper.estimate}
    while True:
        try:
            op, args = chan.recv()
        except (EOFError, OSError):
            return  # the caller is gone
        if op == "stop":
            return
        try:
            answer = ("ok", handlers[op](*args))
        except One2AnyError as e:
            answer = ("error", e)
        except Exception:  # a bug: the caller raises it with this traceback
            answer = ("bug", traceback.format_exc())
        try:
            chan.send(answer)
        except OSError:
            return  # the caller is gone (it stopped, or gave up on this helper)


class _HelperState:
    """What a helper process holds: its objects' estimators on one backend, and the mapping of the last frame."""

    def __init__(self, backend: Any, settings: "EstimatorSettings") -> None:
        self.backend, self.settings = backend, settings
        self.objects: dict[str, tuple[int, PoseEstimator]] = {}  # object id -> (mask label, estimator)
        self.frame: dict[str, Any] = {}

    def set_object(self, object_id: str, ref: "Reference", mask_label: int) -> None:
        from one2any_ros.core.estimator import PoseEstimator

        est = PoseEstimator(self.backend, settings=self.settings)
        est.set_reference(ref)
        self.objects[object_id] = (mask_label, est)

    def remove(self, object_id: str) -> None:
        self.objects.pop(object_id, None)  # nothing goes back: an estimator holds the backend (torch tensors)

    def frame_file(self, chan: _Channel, layout: Layout) -> None:
        fd = recv_handle(chan)
        # the old mapping is dropped, not closed: an array of the last frame may still point into it
        self.frame["map"] = mmap.mmap(fd, _layout_size(layout), prot=mmap.PROT_READ)
        os.close(fd)  # the mapping keeps the memory
        self.frame["layout"] = layout

    def estimate(self, K: np.ndarray, min_depth: float, max_depth: float, has_labels: bool, cues: dict[str, "Cue"],
                 new_settings: "EstimatorSettings") -> dict[str, Any]:
        from one2any_ros.core.frame import Frame
        from one2any_ros.core.tracking import estimate_object

        if new_settings != self.settings:
            self.settings = new_settings
            for _, est in self.objects.values():
                est.settings = new_settings
        rgb, depth, labels, near = _views(self.frame["map"], self.frame["layout"])
        f = Frame(rgb=rgb, depth=depth, labels=labels if has_labels else None, K=K, min_depth=min_depth,
                  max_depth=max_depth, _near={"near": near})
        out: dict[str, Any] = {}
        for object_id, (_, est) in self.objects.items():
            if object_id not in cues:
                continue
            try:
                out[object_id] = estimate_object(est, f, cues[object_id], near)
            except One2AnyError as e:
                out[object_id] = e
        return out


class ObjectProcess:
    """One helper process, and the caller's record of the objects it holds (to start it again with them).

    A helper is *starting* until it has made its backend and taken its objects: ``wait_started`` waits for that
    (the first helper of an estimator), ``poll_started`` checks without waiting (a helper started again while the
    caller estimates its objects). Every other request is answered within ``timeout_s`` or raises HelperTimeout."""

    def __init__(self, recipe: tuple[str, str, str | None], settings: "EstimatorSettings", threads: int = 1, *,
                 timeout_s: float = HELPER_TIMEOUT_S, startup_timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        """``threads``: torch's CPU threads in the helper (the learned backend)."""
        self.recipe, self.settings, self.threads = recipe, settings, threads
        self.timeout_s, self.startup_timeout_s = float(timeout_s), float(startup_timeout_s)
        self.objects: dict[str, tuple[int, "Reference"]] = {}  # id -> (mask_label, encoded reference), in order
        self.failures = 0  # restarts in a row that did not get back to a started helper (multi_object gives up)
        self._start()

    def _start(self) -> None:
        mine, theirs = socket.socketpair()
        env = dict(os.environ)  # the package importable in the helper even when the caller found it by sys.path
        env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p)
        try:
            with theirs:
                self._proc = subprocess.Popen([sys.executable, "-m", __name__, str(theirs.fileno())],
                                              pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=env)
        except BaseException:
            mine.close()
            raise
        self._chan = _Channel(mine)
        self._frame_generation = 0  # the SharedFrame file this helper has mapped (0: none)
        self._started_at = time.monotonic()
        self.starting = True
        try:
            self.send("init", timeout=self.timeout_s)
            self.send("ping", timeout=self.timeout_s)  # answered once its backend is made
        except HelperStopped:
            self.kill()
            raise

    @property
    def pid(self) -> int:
        return self._proc.pid

    def alive(self) -> bool:
        return self._proc.poll() is None

    # --- requests ----------------------------------------------------------------------------------------
    def send(self, op: str, *args, timeout: float | None = None) -> None:
        """Send one request (``init``: the recipe and settings). HelperStopped when the helper is gone, HelperTimeout
        when it does not take the request within the deadline (it is not reading: stopped or stuck)."""
        msg = (self.recipe, self.settings, self.threads) if op == "init" else (op, args)
        try:
            self._chan.send(msg, self.timeout_s if timeout is None else timeout)
        except (TimeoutError, socket.timeout) as e:
            raise self._timed_out(f"take the request {op!r}") from e
        except (OSError, ValueError) as e:  # a broken pipe: the helper is gone
            raise self._stopped() from e

    def _stopped(self) -> HelperStopped:
        self._wait(0.5)  # its exit code, for the message
        return HelperStopped(f"the object helper process (pid {self._proc.pid}) stopped (exit code "
                             f"{self._proc.returncode}); it is started again and its objects' tracking restarts")

    def _timed_out(self, what: str, timeout: float | None = None) -> HelperTimeout:
        t = self.timeout_s if timeout is None else timeout
        return HelperTimeout(f"the object helper process (pid {self._proc.pid}) did not {what} within {t:.1f} s; "
                             "it is killed and started again, its objects estimated in the node's process meanwhile")

    def _wait(self, timeout: float) -> None:
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass

    def answer(self, timeout: float | None = None) -> Any:
        """The answer to the oldest request sent, within ``timeout`` s (default ``timeout_s``): its value, the
        One2AnyError it raised, HelperStopped when the process ended, HelperTimeout past the deadline,
        RuntimeError (with the helper's traceback) on a bug."""
        timeout = self.timeout_s if timeout is None else timeout
        try:
            status, value = self._chan.recv(timeout)
        except (TimeoutError, socket.timeout) as e:
            raise self._timed_out("answer", timeout) from e
        except (EOFError, OSError, pickle.UnpicklingError) as e:
            raise self._stopped() from e
        if status == "ok":
            return value
        if status == "error":
            raise value
        raise RuntimeError(f"the object helper process failed:\n{value}")

    def call(self, op: str, *args) -> Any:
        self.send(op, *args)
        return self.answer()

    def send_estimate(self, shared: SharedFrame, frame: "Frame", cues: dict[str, "Cue"],
                      settings: "EstimatorSettings") -> None:
        """Ask for its objects' poses on the frame in ``shared`` (written already), each from what ``cues`` offers it
        (core/tracking.py); collect them with answer()."""
        if self._frame_generation != shared.generation:
            self.send("frame_file", shared.layout)
            try:
                send_handle(self._chan, shared.fd, self._proc.pid)
            except OSError as e:
                raise self._stopped() from e
            self.answer()
            self._frame_generation = shared.generation
        self.send("estimate", frame.K, frame.min_depth, frame.max_depth, frame.labels is not None, cues, settings)

    # --- starting ----------------------------------------------------------------------------------------
    def wait_started(self) -> None:
        """Wait (at most what is left of ``startup_timeout_s``) until it has made its backend, then hand it its
        objects."""
        if self.starting:
            self.answer(self._startup_left())
            self._finish_start()

    def poll_started(self) -> bool:
        """Whether it has started (its objects handed over now if it just did), without waiting for it; raises
        HelperStopped / HelperTimeout when it died or its start ran past ``startup_timeout_s``."""
        if not self.starting:
            return True
        if self._chan.readable():
            self.answer(max(self._startup_left(), self.timeout_s))
            self._finish_start()
            return True
        if self._startup_left() <= 0:
            raise self._timed_out("start", self.startup_timeout_s)
        return False

    def _startup_left(self) -> float:
        return max(0.0, self._started_at + self.startup_timeout_s - time.monotonic())

    def _finish_start(self) -> None:
        for object_id, (label, ref) in list(self.objects.items()):
            self.call("set", object_id, ref, label)
        self.starting = False

    # --- objects -----------------------------------------------------------------------------------------
    def set_object(self, object_id: str, ref: "Reference", mask_label: int) -> None:
        """Record the object (a helper that is starting takes it when it has started) and hand it over."""
        self.objects.pop(object_id, None)
        self.objects[object_id] = (int(mask_label), ref)
        if not self.starting:
            self.call("set", object_id, ref, int(mask_label))

    def remove(self, object_id: str) -> None:
        """Forget the object here and in the helper (a starting or dead helper simply never gets it)."""
        if self.objects.pop(object_id, None) is not None and not self.starting:
            self.call("remove", object_id)

    def restart(self) -> None:
        """A new process with the same objects, without waiting for it (``poll_started`` tells when it is ready)."""
        self.kill()
        self._start()

    def kill(self) -> None:
        """End the process now (a stopped or stuck one too: SIGKILL)."""
        if self.alive():
            self._proc.kill()
        self._wait(2.0)
        self._chan.close()

    def close(self) -> None:
        """Stop the process (it also ends when the caller's process does): asked first, killed if it does not end."""
        try:
            self._chan.send(("stop", ()), 0.5)
        except (OSError, ValueError):
            pass
        self._wait(2.0)
        self.kill()


__all__ = ["HELPER_TIMEOUT_S", "HelperStopped", "HelperTimeout", "ObjectProcess", "SharedFrame"]

if __name__ == "__main__":  # a helper process: python -m one2any_ros.core.object_processes <socket fd>
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's to handle; the helper ends with it (EOF)
    _serve(_Channel(socket.socket(fileno=int(sys.argv[1]))))
