"""Test double of ``message_filters`` (a full ROS 2 install's package): the public Python API the node and
its users touch, with the real library's matching rules (read from ros2/message_filters; written anew).

- ``SimpleFilter``: ``registerCallback(cb, *args)`` returns a connection number; ``signalMessage(*msgs)``
  calls every ``cb(*msgs, *args)`` in registration order.
- ``Subscriber(node, msg_type, topic, **kwargs)``: ``node.create_subscription(msg_type, topic, self.callback,
  **kwargs)`` with ``qos_profile`` defaulting to 10; the subscription is ``.sub``; unknown attributes are
  looked up on it; ``getTopic()``.
- ``TimeSynchronizer(fs, queue_size)``: per input a dict {stamp ns: msg}, the oldest dropped past
  ``queue_size``; every stamp present in all inputs is emitted (oldest first) and deleted.
- ``ApproximateTimeSynchronizer(fs, queue_size, slop, allow_headerless=False)``: ``slop`` is kept as an
  ``rclpy.duration.Duration`` in ``.slop``. On each new message, the other inputs' stamps within ``slop``
  of it are ordered by closeness to it; combinations are tried in that order (the first input varying
  slowest) and the FIRST whose spread (max - min) is strictly below ``slop`` is emitted; only its
  messages are deleted, so an older set can still complete after a newer one. Callbacks run under the
  synchronizer's lock. Messages without a header stamp are dropped with a warning unless
  ``allow_headerless`` (then stamped with the ROS clock's now).
"""
from __future__ import annotations

import itertools
import threading

import rclpy
from rclpy.clock import ROSClock
from rclpy.duration import Duration
from rclpy.time import Time

__all__ = ["SimpleFilter", "Subscriber", "TimeSynchronizer", "ApproximateTimeSynchronizer"]


class SimpleFilter:
    def __init__(self) -> None:
        self.callbacks: dict[int, tuple] = {}

    def registerCallback(self, cb, *args) -> int:  # noqa: N802 (the real name)
        conn = len(self.callbacks)
        self.callbacks[conn] = (cb, args)
        return conn

    def signalMessage(self, *msg) -> None:  # noqa: N802
        for cb, args in list(self.callbacks.values()):
            cb(*(msg + args))


class Subscriber(SimpleFilter):
    def __init__(self, *args, **kwargs) -> None:
        SimpleFilter.__init__(self)
        self.node, self.topic = args[0], args[2]
        kwargs.setdefault("qos_profile", 10)
        self.sub = self.node.create_subscription(*args[1:], self.callback, **kwargs)

    def callback(self, msg) -> None:
        self.signalMessage(msg)

    def getTopic(self) -> str:  # noqa: N802
        return self.topic

    def __getattr__(self, key):
        return getattr(self.__dict__["sub"], key) if "sub" in self.__dict__ else object.__getattribute__(self, key)


def _stamp_of(msg, allow_headerless: bool, who: str) -> Time | None:
    header = getattr(msg, "header", None)
    if header is None or not hasattr(header, "stamp"):
        if not allow_headerless:
            rclpy.logging.get_logger(who).warning(
                "can not use message filters messages without timestamp information when "
                '"allow_headerless" is disabled')
            return None
        return ROSClock().now()
    stamp = header.stamp
    return stamp if hasattr(stamp, "nanoseconds") else Time.from_msg(stamp)


class TimeSynchronizer(SimpleFilter):
    def __init__(self, fs, queue_size) -> None:
        SimpleFilter.__init__(self)
        self.queue_size = queue_size
        self.lock = threading.Lock()
        self.connectInput(fs)

    def connectInput(self, fs) -> None:  # noqa: N802
        self.queues = [{} for _ in fs]
        self.input_connections = [f.registerCallback(self.add, q, i) for i, (f, q) in enumerate(zip(fs, self.queues))]

    def _store(self, queue: dict, t_ns: int, msg) -> None:
        queue[t_ns] = msg
        while len(queue) > self.queue_size:
            del queue[min(queue)]

    def add(self, msg, my_queue, my_queue_index=None) -> None:
        with self.lock:
            self._store(my_queue, Time.from_msg(msg.header.stamp).nanoseconds, msg)
            common = set.intersection(*(set(q) for q in self.queues))
            for t in sorted(common):
                self.signalMessage(*(q[t] for q in self.queues))
                for q in self.queues:
                    del q[t]


class ApproximateTimeSynchronizer(TimeSynchronizer):
    def __init__(self, fs, queue_size, slop, allow_headerless=False) -> None:
        TimeSynchronizer.__init__(self, fs, queue_size)
        self.slop = Duration(seconds=slop)
        self.allow_headerless = allow_headerless

    def add(self, msg, my_queue, my_queue_index=None) -> None:
        stamp = _stamp_of(msg, self.allow_headerless, "message_filters_approx")
        if stamp is None:
            return
        t = stamp.nanoseconds
        with self.lock:
            self._store(my_queue, t, msg)
            others = [q for i, q in enumerate(self.queues) if my_queue_index is None or i != my_queue_index]
            near = []
            for q in others:
                close = sorted(((abs(s - t), s) for s in q if Duration(nanoseconds=abs(s - t)) <= self.slop),
                               key=lambda d_s: d_s[0])  # stable: ties keep arrival order
                if not close:
                    return
                near.append([s for _, s in close])
            for combo in itertools.product(*near):
                combo = list(combo)
                if my_queue_index is not None:
                    combo.insert(my_queue_index, t)
                pairs = list(zip(self.queues, combo))
                if Duration(nanoseconds=max(combo) - min(combo)) < self.slop and all(s in q for q, s in pairs):
                    self.signalMessage(*(q[s] for q, s in pairs))
                    for q, s in pairs:
                        del q[s]
                    break
