"""Masks and boxes that arrive on their own (``mask_mode`` when_needed; docs/ros.md, "Masks only when needed").

A segmenter or a detector is slower than the camera and misses frames, so its messages are not part of the frame's
synchronized set: each input keeps its newest few messages by stamp, and the worker, when it takes a frame, asks
for the one whose stamp lies within ``sync_slop`` of the frame's. While such messages have been arriving (within
``ACTIVE_S``), it waits up to ``mask_wait_ms`` from the moment the frame completed; with no segmenter running, no
frame waits.

Pure threading, no rclpy: unit-tested without a graph.
"""
from __future__ import annotations

import threading
import time
from typing import Any

ACTIVE_S = 1.0  # an input counts as running when a message came within this


class CueBuffer:
    """The newest ``size`` messages of one optional input, by header stamp (ns). Thread-safe: the executor adds, the
    worker matches and waits."""

    def __init__(self, size: int = 10, active_s: float = ACTIVE_S) -> None:
        self.size = int(size)
        self.active_s = float(active_s)
        self._msgs: dict[int, Any] = {}
        self._last_arrival = float("-inf")
        self._cond = threading.Condition()
        self._stopped = False

    def add(self, stamp_ns: int, msg: Any, now: float | None = None) -> None:
        with self._cond:
            self._msgs[int(stamp_ns)] = msg
            while len(self._msgs) > self.size:
                del self._msgs[min(self._msgs)]
            self._last_arrival = time.monotonic() if now is None else now
            self._cond.notify_all()

    def active(self, now: float | None = None) -> bool:
        """Whether messages have been arriving (within ``active_s``)."""
        now = time.monotonic() if now is None else now
        with self._cond:
            return now - self._last_arrival <= self.active_s

    def match(self, stamp_ns: int, slop_ns: int) -> Any | None:
        """The message whose stamp is nearest ``stamp_ns`` within ``slop_ns`` (ties: the newer), else None."""
        with self._cond:
            return self._match_locked(int(stamp_ns), int(slop_ns))

    def _match_locked(self, stamp_ns: int, slop_ns: int) -> Any | None:
        near = [s for s in self._msgs if abs(s - stamp_ns) <= slop_ns]
        if not near:
            return None
        return self._msgs[min(near, key=lambda s: (abs(s - stamp_ns), -s))]

    def wait(self, stamp_ns: int, slop_ns: int, until: float, *, always: bool = False) -> Any | None:
        """``match``, waiting until the monotonic time ``until`` for it to arrive (not at all when the input is not
        running, ``active``, unless ``always``: a request that needs one)."""
        with self._cond:
            while True:
                found = self._match_locked(int(stamp_ns), int(slop_ns))
                left = until - time.monotonic()
                if found is not None or left <= 0 or self._stopped or \
                        (not always and time.monotonic() - self._last_arrival > self.active_s):
                    return found
                self._cond.wait(left)

    def stop(self) -> None:
        """Wake every waiter for good (the node is shutting down)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
