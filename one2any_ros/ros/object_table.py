"""The node's objects and what its threads share about them: one table, owned by the node and handed to the
reference services (ros/references.py), the way tf2_ros hands a listener its buffer.

Threads: the estimator is used under ``lock`` by one thread at a time (the worker, a backend swap). The executor
thread reads ``listing()`` and ``degraded`` (snapshots replaced whole, never changed in place) and clears the table
without waiting for the lock: when it is busy, the clear is left pending and the next holder applies it first.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np

from one2any_ros.core.multi_object import MultiObjectEstimator
from one2any_ros.core.reference import Reference
from one2any_ros.core.reference_store import ReferenceStore
from one2any_ros.ros.diagnostics import NodeStats

Listing = list[tuple[str, int, float]]  # (object id, mask label, radius m) in the order they were set
Box = tuple[np.ndarray, np.ndarray]  # a reference cloud's box in O: centre and extent, metres


class ObjectTable:
    """The estimator of every object (``objects``), where their references are saved (``store``), and the
    per-object records the node's threads read: the listing, counters, boxes and the helper processes' state."""

    def __init__(self, objects: MultiObjectEstimator, store: ReferenceStore, logger) -> None:
        self.objects = objects
        self.store = store
        self.lock = threading.Lock()  # the estimator
        self.degraded: tuple[str, dict[str, str]] = ("", {})  # the helpers' state for other threads (report_helpers)
        self._logger = logger
        self._clear_pending = False  # a clear came while the estimator was busy (see estimator())
        self._listing: Listing = []
        self._stats: dict[str, NodeStats] = {}  # per object (its /diagnostics status)
        self._boxes: dict[str, tuple[Reference, Box]] = {}  # id -> (its reference, its cloud's box in O)
        self._helper_reported = ""

    @property
    def clear_pending(self) -> bool:
        return self._clear_pending

    def listing(self) -> Listing:
        """The objects as other threads see them: none while a clear is pending."""
        return [] if self._clear_pending else list(self._listing)

    def refresh_listing(self) -> None:
        """The snapshot other threads read (list_references, diagnostics): replaced whole after each change."""
        self._listing = [(o, self.objects.get(o).mask_label, float(self.objects.get(o).reference.scale))
                         for o in self.objects.object_ids]

    @contextmanager
    def estimator(self) -> Iterator[MultiObjectEstimator]:
        """The objects under their lock, with a clear that came in while they were busy applied first."""
        with self.lock:
            if self._clear_pending:
                self._clear_now()
            yield self.objects

    def clear(self) -> int:
        """Forget every object (now, or by the estimator's next holder when it is busy: never waits for it).
        Returns how many there were."""
        n = 0 if self._clear_pending else len(self._listing)
        if self.lock.acquire(blocking=False):
            try:
                self._clear_now()
            finally:
                self.lock.release()
        else:  # a frame (or a backend swap) holds the estimator: do not wait for it
            self._clear_pending = True
        self._stats.clear()
        return n

    def _clear_now(self) -> None:
        self.objects.clear()
        self._clear_pending = False
        self.refresh_listing()

    def object_stats(self, object_id: str) -> NodeStats:
        """Its counters (the worker and the diagnostics timer both ask: setdefault is one atomic step)."""
        stats = self._stats.get(object_id)
        return stats if stats is not None else self._stats.setdefault(object_id, NodeStats())

    def forget_records(self, object_id: str) -> None:
        """A new or removed reference starts a new record: its counters and box go."""
        self._stats.pop(object_id, None)
        self._boxes.pop(object_id, None)

    def box(self, object_id: str, ref: Reference, make: Callable[[Reference], Box]) -> Box:
        """The box of ``ref`` (``make`` computes it), once per reference."""
        cached = self._boxes.get(object_id)
        if cached is None or cached[0] is not ref:
            cached = (ref, make(ref))
            self._boxes[object_id] = cached
        return cached[1]

    def report_helpers(self) -> None:
        """The worker's report of the object helper processes (core/multi_object.py): said once in the log when
        they were turned off, or when one is started again (and when it is back); the snapshot /diagnostics reads."""
        objs = self.objects
        err, degraded = objs.helper_error, objs.degraded
        if err and err != self._helper_reported:
            self._helper_reported = err
            self._logger.warning(err)
        before = self.degraded[0]
        if degraded != before:
            if degraded:
                self._logger.warning(f"object helper process: {degraded}")
            else:
                self._logger.info("object helper processes back: every object is estimated where it was placed")
        self.degraded = (degraded or err, objs.degraded_objects())
