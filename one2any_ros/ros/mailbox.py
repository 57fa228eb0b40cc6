"""The node's mailbox: what the executor thread hands its one worker thread (docs/ros.md, Concurrency).

Two kinds of work, one condition variable:
- frames, latest wins: one slot; a frame still waiting there when a newer one comes is replaced (dropped);
- jobs (services, parameter changes), first in first out, each answered through a future; the worker
  takes jobs before frames, because an operator is waiting on them.
Frames are taken in stamp order: a set older than the last one taken is dropped, never estimated
(message_filters can complete an older set after a newer one); a jump back of more than ``stamp_reset_s``
(a bag replayed again, a clock reset) restarts the order instead.

Pure threading, no rclpy: the node passes rclpy's ``Future`` (awaitable in its executor) as
``future_factory``; tests use ``concurrent.futures.Future``.
"""
from __future__ import annotations

import concurrent.futures
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

STAMP_RESET_S = 3.0  # a set this much older than the last one taken is a restarted stream, not a late set

F = TypeVar("F")  # the frame type (the node's sync.Frame)


@dataclass(frozen=True)
class Put:
    """What became of a frame handed to :meth:`Mailbox.put_frame`."""

    accepted: bool  # False: late (older than the last frame taken, by at most stamp_reset_s) and dropped
    replaced: bool  # a frame still waiting in the slot was dropped for this one (latest wins)
    back_ns: int  # how far this stamp is behind the last frame taken (0: not behind)

    @property
    def reset(self) -> bool:
        """Accepted although its stamp went back: a restarted stream, followed from here."""
        return self.accepted and self.back_ns > 0

    @property
    def dropped(self) -> int:
        """Frames this put cost: the late frame itself, or the one it replaced."""
        return int(not self.accepted) + int(self.replaced)


@dataclass(frozen=True)
class Job:
    """A function for the worker and the future that receives its result (or its exception)."""

    fn: Callable[[], Any]
    future: Any  # concurrent.futures.Future or rclpy.task.Future: set_result / set_exception / done

    def run(self) -> None:
        """Call ``fn`` and hand its result or its exception to the future, unless the future was given up on
        meanwhile (done already: its deadline passed). A BaseException that is not an Exception, e.g.
        KeyboardInterrupt, propagates: the caller decides what to do with the future."""
        try:
            result = self.fn()
        except Exception as e:  # handed to whoever awaits the future
            if not self.future.done():
                self.future.set_exception(e)
            return
        if not self.future.done():
            self.future.set_result(result)


class Mailbox(Generic[F]):
    """One producer (puts frames, submits jobs) and one worker (``next``); thread-safe."""

    def __init__(self, *, stamp_reset_s: float = STAMP_RESET_S,
                 future_factory: Callable[[], Any] = concurrent.futures.Future) -> None:
        self._cv = threading.Condition()
        self._reset_ns = int(stamp_reset_s * 1e9)
        self._future_factory = future_factory
        self._pending: F | None = None  # the slot the worker empties
        self._latest: F | None = None  # the newest frame accepted (kept after the worker took it)
        self._jobs: deque[Job] = deque()
        self._seq = 0  # frames accepted so far
        self._last_taken_ns: int | None = None  # stamp of the newest frame accepted (stamp order)
        self._stopped = False

    # -- the producer's side ---------------------------------------------------------------------------
    def put_frame(self, stamp_ns: int, make: Callable[[int], F]) -> Put:
        """Offer a frame stamped ``stamp_ns``; ``make(seq)`` builds it only when it is accepted (``seq``: its
        number, counting from 1). It replaces a frame still waiting; the worker is woken."""
        with self._cv:
            last = self._last_taken_ns
            back = last - stamp_ns if last is not None and stamp_ns < last else 0
            if 0 < back <= self._reset_ns:
                return Put(accepted=False, replaced=False, back_ns=back)
            self._last_taken_ns = stamp_ns
            self._seq += 1
            replaced = self._pending is not None
            self._latest = self._pending = make(self._seq)
            self._cv.notify_all()
        return Put(accepted=True, replaced=replaced, back_ns=back)

    def submit(self, fn: Callable[[], Any]) -> Any:
        """Queue ``fn`` for the worker (after the jobs already queued, before any frame); its future."""
        job = Job(fn, self._future_factory())
        with self._cv:
            self._jobs.append(job)
            self._cv.notify_all()
        return job.future

    def cancel(self, future: Any) -> bool:
        """Take the job of ``future`` out of the queue if the worker has not taken it yet: whether it was there."""
        with self._cv:
            for job in self._jobs:
                if job.future is future:
                    self._jobs.remove(job)
                    return True
        return False

    def stop(self) -> None:
        """From now on ``next`` returns None (the worker ends); idempotent."""
        with self._cv:
            self._stopped = True
            self._cv.notify_all()

    # -- the worker's side -----------------------------------------------------------------------------
    def next(self, timeout: float | None = None) -> Job | F | None:
        """Block until there is work: the oldest job, else the waiting frame (taken: the slot empties).
        None once stopped (or after ``timeout`` seconds with nothing to do)."""
        with self._cv:
            self._cv.wait_for(lambda: self._stopped or self._jobs or self._pending is not None, timeout)
            if self._stopped:
                return None
            if self._jobs:
                return self._jobs.popleft()
            frame, self._pending = self._pending, None
            return frame

    # -- anyone ----------------------------------------------------------------------------------------
    @property
    def stopped(self) -> bool:
        return self._stopped

    @property
    def seq(self) -> int:
        """Frames accepted so far (a frame's ``seq`` is the count when it came)."""
        with self._cv:
            return self._seq

    @property
    def last_taken_ns(self) -> int | None:
        """The stamp of the newest frame accepted (frames are taken in stamp order from it)."""
        return self._last_taken_ns

    def latest(self) -> F | None:
        """The newest frame accepted, whether or not the worker has taken it."""
        with self._cv:
            return self._latest

    def wait_frame_after(self, seq: int, timeout: float) -> F | None:
        """The newest frame once one later than frame ``seq`` has come; None after ``timeout`` seconds."""
        with self._cv:
            return self._latest if self._cv.wait_for(lambda: self._seq > seq, timeout) else None
