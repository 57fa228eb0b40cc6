"""One call on a thread of its own, joined later (``BackgroundCall``): the learned backend's hypotheses beside the ICP.

In a global search the network's hypotheses (the decoder's forward pass and RANSAC on its ROC, ~17 ms on one CPU
core) do not depend on the classic grid's multi-start ICP (~80 ms), and torch releases Python's GIL while it
computes: with a second core the two overlap. Results do not depend on it: the two computations share nothing they
write. Tracking does not overlap them: its KD-tree queries already use both cores and hold the GIL (pykdtree), and
beside the network its refinement took longer than the network it hid (docs/tracking.md, "The network beside the
ICP").

Hand-written (a plain thread per call) rather than a ``concurrent.futures`` pool: a pool made before a helper process
forks has no thread in the child, and a thread's start (~0.1 ms) is nothing beside the call.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from one2any_ros.core import query_threads

T = TypeVar("T")


def overlap_pays() -> bool:
    """Whether this process may use more than one core (``query_threads.share``): on one, a second thread only
    takes turns with the first."""
    return query_threads.share() > 1


class BackgroundCall(Generic[T]):
    """``fn(*args)`` started now on a daemon thread; ``result()`` waits for it and returns its value or raises its
    exception (in the caller's thread, as if called there). Until then this process's KD-tree query times teach the
    thread choice nothing (``query_threads.own_work_started``): whoever starts one must call ``result()`` or
    ``wait()`` on every path, errors included."""

    def __init__(self, fn: Callable[..., T], *args) -> None:
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn, args), daemon=True, name="one2any-background")
        self._running = True
        query_threads.own_work_started()
        self._thread.start()

    def _run(self, fn: Callable[..., T], args: tuple) -> None:
        try:
            self._value = fn(*args)
        except BaseException as e:  # handed to the caller by result(), never lost in the thread
            self._error = e

    def wait(self) -> None:
        """Wait for the call to end (its error, if any, kept for ``result``)."""
        self._thread.join()
        if self._running:
            self._running = False
            query_threads.own_work_ended()

    def result(self) -> T:
        self.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]
