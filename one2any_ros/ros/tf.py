"""TF broadcasting: ``tf2_ros.TransformBroadcaster`` when a full ROS install provides it, else
:class:`TfBroadcaster`, a stand-in with the same constructor and the same one method, ``sendTransform``.

tf2_ros's Python API (geometry2, tf2_ros_py): ``TransformBroadcaster(node, qos=None)`` (QoSProfile(depth=100)
when None; Rolling adds a keyword-only ``callback_group``) publishes ``tf2_msgs/msg/TFMessage`` on ``/tf``;
``sendTransform(transform)`` takes one TransformStamped, a list, or any other iterable of them. It has no
``send_transform``: the node calls ``sendTransform`` whichever broadcaster it got (docs/ros.md, "Full
install"). Without tf2_ros, ``tf2_msgs`` comes from the stand-in in ``ros_interfaces/tf2_msgs`` (the same
one-line definition, so the same type name and type hash), built into the venv by ``tools/build_tf2_msgs.sh``.
"""
from __future__ import annotations

from collections.abc import Iterable

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
    """Publishes transforms on ``/tf``: tf2_ros.TransformBroadcaster's constructor and ``sendTransform``."""

    def __init__(self, node: Node, qos: QoSProfile | int | None = None) -> None:
        self._type = tf_message_type()
        if self._type is None:
            raise ImportError("tf2_msgs is not installed: run `make` (it builds the tf2_msgs stand-in into the venv)")
        self.pub_tf = node.create_publisher(self._type, "/tf", TF_QOS if qos is None else qos)

    def sendTransform(self, transform: TransformStamped | Iterable[TransformStamped]) -> None:  # noqa: N802 (tf2_ros's name)
        transforms = [transform] if isinstance(transform, TransformStamped) else list(transform)
        self.pub_tf.publish(self._type(transforms=transforms))


def create_broadcaster(node: Node, *, qos: QoSProfile | None = None):
    """A broadcaster with ``sendTransform``: tf2_ros's when importable, else :class:`TfBroadcaster`.
    Raises ImportError when neither tf2_ros nor tf2_msgs is installed."""
    tf2_ros = _tf2_ros()
    if tf2_ros is not None:
        return tf2_ros.TransformBroadcaster(node, qos=qos or TF_QOS)
    return TfBroadcaster(node, qos=qos)


def broadcaster_name(broadcaster) -> str:
    """``tf2_ros.TransformBroadcaster`` or ``one2any_ros.ros.tf.TfBroadcaster``: which path the node took (its log)."""
    cls = type(broadcaster)
    module = "tf2_ros" if cls.__module__.split(".")[0] == "tf2_ros" else cls.__module__  # tf2_ros.transform_broadcaster
    return f"{module}.{cls.__name__}"
