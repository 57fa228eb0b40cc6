"""TF broadcasting: ``tf2_ros.TransformBroadcaster`` when a full ROS install provides it, else a
broadcaster with the same behaviour publishing ``tf2_msgs/msg/TFMessage`` on ``/tf``.

Without tf2_ros, ``tf2_msgs`` comes from the stand-in in ``ros_interfaces/tf2_msgs`` (the same one-line
definition, so the same type name and type hash), built into the venv by ``tools/build_tf2_msgs.sh``.
"""
from __future__ import annotations

from collections.abc import Sequence

from geometry_msgs.msg import TransformStamped
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

# tf2_ros's default for /tf: reliable, volatile, depth 100
TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)


def _tf2_ros():
    try:
        import tf2_ros
    except ImportError:
        return None
    return tf2_ros if hasattr(tf2_ros, "TransformBroadcaster") else None  # not an empty namespace package


def tf_message_type():
    """tf2_msgs.msg.TFMessage, or None when no tf2_msgs is installed."""
    try:
        from tf2_msgs.msg import TFMessage
    except ImportError:
        return None
    return TFMessage


class TfBroadcaster:
    """Publishes transforms on ``/tf`` (the tf2_ros.TransformBroadcaster API: ``send_transform``)."""

    def __init__(self, node: Node, *, qos: QoSProfile | None = None, topic: str = "/tf") -> None:
        self._type = tf_message_type()
        if self._type is None:
            raise ImportError("tf2_msgs is not installed: run `make` (it builds the tf2_msgs stand-in into the venv)")
        self._pub = node.create_publisher(self._type, topic, qos or TF_QOS)

    def send_transform(self, transform: TransformStamped | Sequence[TransformStamped]) -> None:
        transforms = [transform] if isinstance(transform, TransformStamped) else list(transform)
        self._pub.publish(self._type(transforms=transforms))


def create_broadcaster(node: Node, *, qos: QoSProfile | None = None):
    """A broadcaster with ``send_transform``: tf2_ros's when importable, else :class:`TfBroadcaster`.
    Raises ImportError when neither tf2_ros nor tf2_msgs is installed."""
    tf2_ros = _tf2_ros()
    if tf2_ros is not None:
        return tf2_ros.TransformBroadcaster(node, qos=qos or TF_QOS)
    return TfBroadcaster(node, qos=qos)
