"""Test double of ``tf2_ros`` (a full ROS 2 install's package): the two broadcasters' public API.

Real API (ros2/geometry2, tf2_ros_py): ``TransformBroadcaster(node, qos=None)`` publishes
``tf2_msgs/msg/TFMessage`` on ``/tf`` with ``QoSProfile(depth=100)`` when ``qos`` is None;
``StaticTransformBroadcaster(node, qos=None)`` latches on ``/tf_static`` (depth 1, transient local) and
republishes every child frame it was ever given. Both have exactly one method, ``sendTransform``,
taking a TransformStamped, a list of them, or another iterable of them. There is no ``send_transform``.
``ONE2ANY_TEST_TF_RAISE_AT`` (test only; see README.md): 1-based call numbers of ``sendTransform``
that raise RuntimeError.
"""
from __future__ import annotations

import os

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile
from tf2_msgs.msg import TFMessage

__all__ = ["TransformBroadcaster", "StaticTransformBroadcaster"]


def _as_list(transform) -> list:
    if isinstance(transform, list):
        return transform
    return list(transform) if hasattr(transform, "__iter__") else [transform]


def _forced_failures() -> set[int]:
    raw = os.environ.get("ONE2ANY_TEST_TF_RAISE_AT", "")
    return {int(x) for x in raw.split(",") if x.strip()}


class TransformBroadcaster:
    def __init__(self, node, qos: QoSProfile | int | None = None) -> None:
        self.pub_tf = node.create_publisher(TFMessage, "/tf", QoSProfile(depth=100) if qos is None else qos)
        self._calls = 0
        self._fail_at = _forced_failures()

    def sendTransform(self, transform) -> None:  # noqa: N802 (the real name)
        self._calls += 1
        if self._calls in self._fail_at:
            raise RuntimeError(f"tf2_ros test double: sendTransform call {self._calls} forced to fail")
        self.pub_tf.publish(TFMessage(transforms=_as_list(transform)))


class StaticTransformBroadcaster:
    def __init__(self, node, qos: QoSProfile | int | None = None) -> None:
        if qos is None:
            qos = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, history=HistoryPolicy.KEEP_LAST)
        self.pub_tf = node.create_publisher(TFMessage, "/tf_static", qos)
        self.net_message = TFMessage()
        self._child_frame_ids: set[str] = set()

    def sendTransform(self, transform) -> None:  # noqa: N802 (the real name)
        for t in _as_list(transform):  # first transform of each child frame kept, as the real one does
            if t.child_frame_id not in self._child_frame_ids:
                self._child_frame_ids.add(t.child_frame_id)
                self.net_message.transforms.append(t)
        self.pub_tf.publish(self.net_message)
