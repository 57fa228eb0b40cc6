"""Approximate-time synchronization of the node's inputs (rgb, depth, mask, camera_info).

``message_filters.ApproximateTimeSynchronizer`` is used when a real ``message_filters`` is importable (a
full ROS install). Otherwise :class:`ApproximateSync` does the same job: it is pure Python (no ROS), so
its behaviour is unit-tested without a graph. Either way :class:`FrameSynchronizer` owns the
subscriptions, hands complete sets to one callback, and keeps per-input arrival records so the node can
say *why* no frame completes (an input missing, or stamps that never fall within ``slop``).

The two differ (docs/ros.md, "Synchronizer"): message_filters emits the first combination, in order of
closeness to the new message, whose spread is strictly below ``slop``, and deletes only the matched
messages, so an older set can complete after a newer one; ApproximateSync emits the smallest spread
(``<= slop``) and discards everything older, so its sets come out in stamp order. The node itself drops a
set older than the last one it took, so frames are never estimated backwards with either.
"""
from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from one2any_ros.ros.conversions import stamp_to_ns


def message_filters_module():
    """The real message_filters, or None. Checks attributes, not just the import: a folder named
    ``message_filters`` on sys.path (e.g. a checkout at the repo root) imports as an empty namespace package."""
    try:
        import message_filters
    except ImportError:
        return None
    if all(hasattr(message_filters, a) for a in ("Subscriber", "ApproximateTimeSynchronizer")):
        return message_filters
    return None


class ApproximateSync:
    """Match one message per input whose header stamps all lie within ``slop_s`` of each other.

    ``add(i, stamp_ns, msg)`` stores a message of input ``i`` (each input keeps its newest ``queue_size``)
    and, when the new message completes a set, calls ``callback(*msgs)`` (in input order) with the set of
    the smallest stamp spread (ties: the newest). The matched messages and every older message are then
    discarded: sets come out in stamp order and a late straggler never completes an old set.
    Thread-safe; the callback runs outside the lock.
    """

    def __init__(self, num_inputs: int, *, slop_s: float, queue_size: int = 5,
                 callback: Callable[..., None]) -> None:
        if num_inputs < 1 or queue_size < 1:
            raise ValueError("need at least one input and a queue of at least one message")
        self.slop_s = float(slop_s)
        self.queue_size = int(queue_size)
        self._callback = callback
        self._queues: list[dict[int, Any]] = [{} for _ in range(num_inputs)]
        self._lock = threading.Lock()

    def add(self, index: int, stamp_ns: int, msg: Any) -> bool:
        with self._lock:
            match = self._add_locked(index, int(stamp_ns), msg)
        if match is None:
            return False
        self._callback(*match)
        return True

    def _add_locked(self, index: int, t: int, msg: Any):
        q = self._queues[index]
        q[t] = msg
        while len(q) > self.queue_size:
            del q[min(q)]
        slop = int(round(self.slop_s * 1e9))
        candidates = []
        for j, other in enumerate(self._queues):
            if j == index:
                candidates.append([t])
                continue
            near = [s for s in other if abs(s - t) <= slop]
            if not near:
                return None
            candidates.append(near)
        best = None
        for combo in itertools.product(*candidates):
            spread = max(combo) - min(combo)
            if spread <= slop and (best is None or (spread, -min(combo)) < (best[0], -min(best[1]))):
                best = (spread, combo)
        if best is None:
            return None
        msgs = []
        for queue, s in zip(self._queues, best[1]):
            msgs.append(queue[s])
            for old in [k for k in queue if k <= s]:
                del queue[old]
        return msgs

    def pending(self) -> list[int]:
        """Messages waiting per input (for tests and diagnostics)."""
        with self._lock:
            return [len(q) for q in self._queues]


@dataclass
class InputRecord:
    count: int = 0
    last_arrival: float = float("-inf")  # time.monotonic() of the last message
    last_stamp_ns: int = 0


class InputMonitor:
    """Per-input arrival records and the last complete frame: explains frames that never complete."""

    def __init__(self, names: list[str]) -> None:
        self.names = list(names)
        self.records = {n: InputRecord() for n in names}
        self.last_complete = float("-inf")
        self._lock = threading.Lock()

    def arrived(self, name: str, stamp_ns: int, now: float | None = None) -> None:
        with self._lock:
            r = self.records[name]
            r.count += 1
            r.last_arrival = time.monotonic() if now is None else now
            r.last_stamp_ns = stamp_ns

    def completed(self, now: float | None = None) -> None:
        with self._lock:
            self.last_complete = time.monotonic() if now is None else now

    def explain(self, *, window_s: float, slop_s: float, now: float | None = None) -> str:
        """' (reason: message)' when frames are incomplete, ' (nothing arrives ...)' when no input arrives, else ''."""
        now = time.monotonic() if now is None else now
        issue = self.diagnose(window_s=window_s, slop_s=slop_s, now=now)
        if issue:
            return f" ({issue[0]}: {issue[1]})"
        with self._lock:
            recent = any(now - r.last_arrival <= window_s for r in self.records.values())
        return "" if recent else f" (nothing arrives on {', '.join(self.names)}: check the topic remappings)"

    def diagnose(self, *, window_s: float, slop_s: float, now: float | None = None) -> tuple[str, str] | None:
        """(reason, message) when inputs arrive in the last ``window_s`` but no frame completed, else None."""
        now = time.monotonic() if now is None else now
        with self._lock:
            recent = {n: now - r.last_arrival <= window_s for n, r in self.records.items()}
            if not any(recent.values()) or now - self.last_complete <= window_s:
                return None
            missing = [n for n, ok in recent.items() if not ok]
            stamps = ", ".join(f"{n} {r.last_stamp_ns / 1e9:.3f}" for n, r in self.records.items() if r.count)
        if missing:
            arriving = [n for n in self.names if n not in missing]
            return (f"missing_{missing[0]}",
                    f"{', '.join(arriving)} arrive but no {' or '.join(missing)} in the last {window_s:.1f} s: "
                    "no frame is complete")
        return ("unsynchronized_inputs",
                f"all inputs arrive but their stamps never fall within sync_slop = {slop_s:.3f} s "
                f"(last stamps: {stamps})")


@dataclass(frozen=True)
class Frame:
    """One complete synchronized set, as the node's worker and services see it."""

    msgs: dict  # {input name: message}
    stamp_ns: int  # the rgb image's stamp
    received: float  # time.monotonic() when the set completed
    seq: int

    @property
    def header(self):
        """The rgb image's stamp with the first non-empty frame_id of the set (the camera frame)."""
        from std_msgs.msg import Header

        frame_id = next((m.header.frame_id for m in self.msgs.values() if m.header.frame_id), "")
        return Header(stamp=self.msgs["rgb"].header.stamp, frame_id=frame_id)


class FrameSynchronizer:
    """Subscribes ``topics`` ({name: msg type}, relative names) with ``qos`` and calls
    ``callback({name: msg})`` for every approximately synchronized set. ``use_message_filters``: None =
    when available."""

    def __init__(self, node, topics: dict[str, type], *, qos, slop_s: float, callback: Callable[[dict], None],
                 queue_size: int = 5, callback_group=None, use_message_filters: bool | None = None) -> None:
        self.names = list(topics)
        self.monitor = InputMonitor(self.names)
        self._callback = callback
        mf = message_filters_module() if use_message_filters in (None, True) else None
        if use_message_filters and mf is None:
            raise ImportError("message_filters is not available")
        self.backend = "message_filters" if mf is not None else "one2any_ros.ros.sync"
        if mf is not None:
            from rclpy.duration import Duration

            self._duration = Duration
            subs = []
            for name, msg_type in topics.items():
                sub = mf.Subscriber(node, msg_type, name, qos_profile=qos, callback_group=callback_group)
                sub.registerCallback(self._make_recorder(name))
                subs.append(sub)
            self._sync = mf.ApproximateTimeSynchronizer(subs, queue_size, slop_s)
            self._sync.registerCallback(self._emit)
            self.filters = subs  # message_filters.Subscriber per input (their .callback feeds a message in)
            self.subscriptions = [s.sub for s in subs]
        else:
            self._sync = ApproximateSync(len(self.names), slop_s=slop_s, queue_size=queue_size, callback=self._emit)
            self.filters = []
            self.subscriptions = [
                node.create_subscription(msg_type, name, self._make_feeder(i, name), qos, callback_group=callback_group)
                for i, (name, msg_type) in enumerate(topics.items())]

    def set_slop(self, slop_s: float) -> None:
        if isinstance(self._sync, ApproximateSync):
            self._sync.slop_s = float(slop_s)
        else:
            self._sync.slop = self._duration(seconds=float(slop_s))

    def _make_recorder(self, name: str):
        def record(msg) -> None:
            self.monitor.arrived(name, stamp_to_ns(msg.header.stamp))
        return record

    def _make_feeder(self, index: int, name: str):
        def feed(msg) -> None:
            stamp = stamp_to_ns(msg.header.stamp)
            self.monitor.arrived(name, stamp)
            self._sync.add(index, stamp, msg)
        return feed

    def _emit(self, *msgs) -> None:
        self.monitor.completed()
        self._callback(dict(zip(self.names, msgs)))
