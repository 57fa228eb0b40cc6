"""Replay a rosbag2 (MCAP or sqlite3) through rclpy, like ``ros2 bag play``, without a rosbag2 install.

The bag is read with ``rosbags`` (pure Python) and its raw CDR bytes are published unchanged (rclpy
publishes ``bytes`` as is), paced by the bag's receive times divided by ``rate``. Two ways to keep a
node's ``max_frame_age_ms`` meaningful for an old recording:
- ``clock``: publish /clock with the bag time before each message; run the node with use_sim_time:=true;
- ``restamp``: rewrite header stamps to now (frames recorded together keep one stamp), no sim time.

    python -m one2any_ros.ros_tools.player BAG [--rate 1.0] [--loop] [--clock | --restamp] [--remap FROM:=TO ...]
                                     [--ros-args ...]
"""
from __future__ import annotations

import argparse
import importlib
import struct
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from rclpy.qos import QoSProfile

CLOCK_TOPIC = "/clock"


@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str  # e.g. sensor_msgs/msg/Image
    t_ns: int  # the bag's receive time
    raw: bytes  # CDR with its 4-byte encapsulation header


def read_bag(path: str | Path, *, topics: list[str] | None = None) -> list[BagMessage]:
    """Every message of the bag (of ``topics``), in time order."""
    from rosbags.rosbag2 import Reader

    with Reader(Path(path)) as reader:
        conns = [c for c in reader.connections if topics is None or c.topic in topics]
        out = [BagMessage(c.topic, c.msgtype, t, bytes(raw)) for c, t, raw in reader.messages(connections=conns)]
    return sorted(out, key=lambda m: m.t_ns)


def message_class(msgtype: str):
    pkg, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


def has_header(cls) -> bool:
    """Does the message start with a std_msgs/Header (so its stamp sits right after the encapsulation)?"""
    fields = cls.get_fields_and_field_types()
    return bool(fields) and next(iter(fields.items())) == ("header", "std_msgs/Header")


def _endian(raw: bytes) -> str:
    return "<" if raw[1] & 1 else ">"  # CDR_LE = 00 01, CDR_BE = 00 00 (and the PL_ variants)


def header_stamp_ns(raw: bytes) -> int:
    sec, nsec = struct.unpack_from(_endian(raw) + "iI", raw, 4)
    return sec * 1_000_000_000 + nsec


def restamp_raw(raw: bytes, stamp_ns: int) -> bytes:
    """The same serialized message with its header stamp replaced (no deserialization)."""
    out = bytearray(raw)
    sec, nsec = divmod(int(stamp_ns), 1_000_000_000)
    struct.pack_into(_endian(raw) + "iI", out, 4, sec, nsec)
    return bytes(out)


class BagPlayer:
    """Publishes bag messages from ``node``; topics renamed by ``remap`` ({bag topic: topic})."""

    def __init__(self, node, messages: list[BagMessage], *, rate: float = 1.0, clock: bool = False,
                 restamp: bool = False, remap: dict[str, str] | None = None, qos: QoSProfile | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        if clock and restamp:
            raise ValueError("use either clock (sim time) or restamp (wall time), not both")
        self.node, self.messages, self.rate = node, messages, rate
        self.clock, self.restamp = clock, restamp
        self.remap = dict(remap or {})
        self.publishers, self._header = {}, {}
        for m in messages:
            if m.topic not in self.publishers:
                cls = message_class(m.msgtype)
                topic = self.remap.get(m.topic, m.topic)
                self.publishers[m.topic] = node.create_publisher(cls, topic, qos or QoSProfile(depth=10))
                self._header[m.topic] = has_header(cls)
        self._clock_pub = None
        if clock:
            from rosgraph_msgs.msg import Clock

            self._clock_cls = Clock
            self._clock_pub = node.create_publisher(Clock, CLOCK_TOPIC, QoSProfile(depth=10))
        first = [header_stamp_ns(m.raw) for m in messages if self._header.get(m.topic)]
        self._stamp0 = min(first) if first else 0
        self._wall0 = time.time_ns()

    def wait_for_subscribers(self, timeout: float = 10.0, topics: list[str] | None = None) -> bool:
        """True once every (or each of ``topics``) publisher has a subscriber."""
        pubs = [p for t, p in self.publishers.items() if topics is None or t in topics]
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if all(p.get_subscription_count() > 0 for p in pubs):
                return True
            time.sleep(0.05)
        return False

    def publish(self, m: BagMessage) -> int | None:
        """Publish one message now; returns its (possibly rewritten) header stamp."""
        raw, stamp = m.raw, None
        if self._header[m.topic]:
            stamp = header_stamp_ns(raw)
            if self.restamp:
                stamp = self._wall0 + int((stamp - self._stamp0) / self.rate)
                raw = restamp_raw(raw, stamp)
        if self._clock_pub is not None:
            msg = self._clock_cls()
            msg.clock.sec, msg.clock.nanosec = divmod(m.t_ns, 1_000_000_000)
            self._clock_pub.publish(msg)
        self.publishers[m.topic].publish(raw)
        return stamp

    def play(self, messages: list[BagMessage] | None = None, *, stop: threading.Event | None = None,
             on_published: Callable[[BagMessage, int | None], None] | None = None) -> int:
        """Publish ``messages`` (default: all) paced by bag time / rate; returns how many were published."""
        msgs = self.messages if messages is None else messages
        if not msgs:
            return 0
        t_bag0, t_wall0 = msgs[0].t_ns, time.monotonic()
        stamps = [header_stamp_ns(m.raw) for m in msgs if self._header[m.topic]]
        self._wall0 = time.time_ns() - int(((stamps[0] if stamps else self._stamp0) - self._stamp0) / self.rate)
        n = 0
        for m in msgs:
            delay = t_wall0 + (m.t_ns - t_bag0) / 1e9 / self.rate - time.monotonic()
            if stop is not None and stop.wait(max(0.0, delay)):
                break
            if stop is None and delay > 0:
                time.sleep(delay)
            stamp = self.publish(m)
            n += 1
            if on_published:
                on_published(m, stamp)
        return n


def main(argv: list[str] | None = None) -> int:
    from one2any_ros.ros_tools.process_node import process_node

    p = argparse.ArgumentParser(prog="python -m one2any_ros.ros_tools.player", description=__doc__.splitlines()[0])
    p.add_argument("bag", help="rosbag2 folder (MCAP or sqlite3)")
    p.add_argument("--rate", type=float, default=1.0)
    p.add_argument("--loop", action="store_true")
    p.add_argument("--clock", action="store_true", help="publish /clock (run the node with use_sim_time:=true)")
    p.add_argument("--restamp", action="store_true", help="rewrite header stamps to the current time")
    p.add_argument("--topics", nargs="*", default=None, help="only these topics")
    p.add_argument("--remap", nargs="*", default=[], metavar="FROM:=TO")
    p.add_argument("--wait", type=float, default=5.0, help="seconds to wait for subscribers before playing")
    argv = list(sys.argv[1:] if argv is None else argv)
    ros_args = argv[argv.index("--ros-args"):] if "--ros-args" in argv else []  # for rclpy only
    a = p.parse_args(argv[: len(argv) - len(ros_args)])
    remap = dict(r.split(":=", 1) for r in a.remap)
    messages = read_bag(a.bag, topics=a.topics)
    with process_node("one2any_player", ["one2any_player", *ros_args]) as node:
        player = BagPlayer(node, messages, rate=a.rate, clock=a.clock, restamp=a.restamp, remap=remap)
        player.wait_for_subscribers(a.wait)
        while True:
            n = player.play()
            node.get_logger().info(f"published {n} messages from {a.bag}")
            if not a.loop:
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
