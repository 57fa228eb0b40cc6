"""The node's health in numbers: thread-safe counters and the /diagnostics status built from them.

Keys (docs/ros.md, Diagnostics; exactly): rate_hz, latency_ms, dropped_frames, inliers, confidence, reference (set/none),
backend, device, input_age_ms, last_failure; and per object (``<node>/<child frame>``): confidence, inliers,
rate_hz, last_failure, state.
"""
from __future__ import annotations

import threading
import time
from collections import deque

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

KEYS = ("rate_hz", "latency_ms", "dropped_frames", "inliers", "confidence", "reference", "backend", "device",
        "input_age_ms", "last_failure")
OBJECT_KEYS = ("confidence", "inliers", "rate_hz", "last_failure", "state")
STATES = ("detected", "tracking", "lost", "searching")  # an object's state (docs/ros.md, Diagnostics)


class NodeStats:
    """Counters the node's threads update; :meth:`status` reads them once a second."""

    def __init__(self, *, window_s: float = 5.0) -> None:
        self.window_s = window_s
        self._lock = threading.Lock()
        self._poses: deque[tuple[float, float]] = deque()  # (monotonic time, latency ms) of published poses
        self.frames = 0  # complete frames received
        self.dropped = 0  # complete frames replaced by a newer one before the worker took them
        self.poses = 0
        self.failures = 0
        self.worker_restarts = 0  # times the watchdog restarted a dead estimation worker
        self.inliers = 0
        self.confidence = 0.0
        self.input_age_ms: float | None = None  # age of the newest complete frame when it arrived
        self.newest_stamp_ns: int | None = None  # its header stamp (the age keeps growing when input stops)
        self.last_failure = ""  # "reason: message" of the most recent failure (never an empty text once set)
        self.last_ok: bool | None = None  # did the most recent frame give a pose (None: no frame processed yet)
        self.state = "searching"  # an object's: STATES (set "detected" by ~/set_reference)

    def frame_received(self, age_ms: float | None, stamp_ns: int | None = None) -> None:
        with self._lock:
            self.frames += 1
            self.input_age_ms = age_ms
            if stamp_ns is not None:
                self.newest_stamp_ns = int(stamp_ns)

    def frame_dropped(self) -> None:
        with self._lock:
            self.dropped += 1

    def worker_restarted(self) -> None:
        with self._lock:
            self.worker_restarts += 1

    def pose_published(self, latency_ms: float, inliers: int, confidence: float, mode: str = "global") -> None:
        """``mode``: the estimate's ("track": from the last pose, the state is ``tracking``; else ``detected``)."""
        now = time.monotonic()
        with self._lock:
            self.poses += 1
            self._poses.append((now, latency_ms))
            self.inliers, self.confidence, self.last_ok = int(inliers), float(confidence), True
            self.state = "tracking" if mode == "track" else "detected"

    def failure(self, reason: str, message: str, *, frame: bool = True) -> None:
        """Record a failure; ``frame`` = it cost a frame its pose (else: a service or startup problem).
        An empty reason or message is replaced by a placeholder: /diagnostics never says "reason: " alone."""
        with self._lock:
            self.failures += 1
            self.last_failure = failure_text(reason, message)
            if frame:
                self.last_ok = False
                # the frame that loses a pose is "lost"; the frames after it, until a pose comes back, "searching"
                self.state = "lost" if self.state in ("tracking", "detected") else "searching"

    def _recent(self, now: float) -> list[tuple[float, float]]:
        while self._poses and now - self._poses[0][0] > self.window_s:
            self._poses.popleft()
        return list(self._poses)

    def rate_hz(self) -> float:
        with self._lock:
            recent = self._recent(time.monotonic())
        return len(recent) / self.window_s

    def status(self, name: str, *, reference: bool, backend: str, device: str, note: str = "",
               now_ns: int | None = None, stale_ms: float | None = None, worker_error: str = "",
               worker_stalled: str = "", degraded: str = "") -> DiagnosticStatus:
        """``now_ns``: the node clock, so that input_age_ms is the newest frame's age now (it grows when the
        camera stops), not when it arrived; ``stale_ms``: above this age the status says the input is stale;
        ``worker_error``: non-empty when the estimation worker is not running (level ERROR, it says why);
        ``worker_stalled``: non-empty when it has been stuck on one frame or request (ERROR); ``degraded``: non-empty
        while some objects are estimated in the node's process because their helper process is being started
        again, or the helpers are off (WARN, it says why)."""
        with self._lock:
            recent = self._recent(time.monotonic())
            age_ms = self.input_age_ms
            if now_ns and now_ns > 0 and self.newest_stamp_ns is not None:
                age_ms = (now_ns - self.newest_stamp_ns) / 1e6
            lat = sorted(l for _, l in recent)
            values = {
                "rate_hz": f"{len(recent) / self.window_s:.2f}",
                "latency_ms": f"{lat[len(lat) // 2]:.1f}" if lat else "",
                "dropped_frames": str(self.dropped),
                "inliers": str(self.inliers),
                "confidence": f"{self.confidence:.3f}",
                "reference": "set" if reference else "none",
                "backend": backend,
                "device": device,
                "input_age_ms": "" if age_ms is None else f"{age_ms:.1f}",
                "last_failure": self.last_failure,
            }
            last_ok, frames = self.last_ok, self.frames
        if worker_error:
            level, msg = DiagnosticStatus.ERROR, f"estimation worker not running ({worker_error}): restarting it"
        elif worker_stalled:
            level, msg = DiagnosticStatus.ERROR, f"estimation worker {worker_stalled}"
        elif not reference:
            level, msg = DiagnosticStatus.WARN, "no reference: call ~/set_reference"
        elif frames == 0:
            level, msg = DiagnosticStatus.WARN, "no complete frame received"
        elif stale_ms is not None and age_ms is not None and age_ms > stale_ms:
            level, msg = DiagnosticStatus.WARN, f"input stale: the newest frame is {age_ms / 1000:.1f} s old"
        elif degraded:
            level, msg = DiagnosticStatus.WARN, f"degraded: {degraded}"
        elif last_ok is None:
            level, msg = DiagnosticStatus.OK, "waiting for the first pose"
        elif not last_ok:
            level, msg = DiagnosticStatus.WARN, "last frame gave no pose: " + (values["last_failure"] or "no reason recorded")
        else:
            level, msg = DiagnosticStatus.OK, f"tracking at {values['rate_hz']} Hz"
        if note:
            msg = f"{msg} ({note})"
        return DiagnosticStatus(level=level, name=name, message=msg, hardware_id=device,
                                values=[KeyValue(key=k, value=values[k]) for k in KEYS])

    def object_status(self, name: str, *, degraded: str = "") -> DiagnosticStatus:
        """One object's status (``name`` = ``<node's full name>/<child frame>``; keys OBJECT_KEYS): OK while its
        last frame gave it a pose, WARN with the reason when it did not, or while it is estimated in the node's
        process because its helper process is being started again (``degraded``: why)."""
        with self._lock:
            recent = self._recent(time.monotonic())
            values = {"confidence": f"{self.confidence:.3f}", "inliers": str(self.inliers),
                      "rate_hz": f"{len(recent) / self.window_s:.2f}", "last_failure": self.last_failure,
                      "state": self.state}
            last_ok = self.last_ok
        if last_ok is None:
            level, msg = DiagnosticStatus.OK, "waiting for the first pose"
        elif last_ok:
            level, msg = DiagnosticStatus.OK, f"tracking at {values['rate_hz']} Hz"
        else:
            level, msg = DiagnosticStatus.WARN, "last frame gave no pose: " + (values["last_failure"] or "no reason recorded")
        if degraded:
            level = DiagnosticStatus.WARN
            msg = f"estimated in the node's process while its helper restarts ({degraded}); {msg}"
        return DiagnosticStatus(level=level, name=name, message=msg,
                                values=[KeyValue(key=k, value=values[k]) for k in OBJECT_KEYS])


def failure_text(reason: str, message: str) -> str:
    """``reason: message`` with neither part empty (a bare exception's str() is often "")."""
    return f"{reason.strip() or 'unknown'}: {message.strip() or 'no detail given'}"


def diagnostic_array(status: DiagnosticStatus | list[DiagnosticStatus], stamp) -> DiagnosticArray:
    arr = DiagnosticArray(status=list(status) if isinstance(status, list) else [status])
    arr.header.stamp = stamp
    return arr
