"""The node's cue inputs: masks (``mask_mode`` when_needed) and detector boxes that arrive on their own topics,
subscribed here and matched to a frame by stamp (ros/cue_buffer.py; docs/ros.md, "Masks only when needed").
"""
from __future__ import annotations

from typing import Callable

from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from one2any_ros.core.box_segment import Box
from one2any_ros.ros import conversions as conv
from one2any_ros.ros.cue_buffer import CueBuffer
from one2any_ros.ros.params import NodeSettings
from one2any_ros.ros.sync import Frame


class CueInputs:
    """Subscribes ``node`` to ``mask`` (when ``mask_mode`` is when_needed) and ``boxes`` (when vision_msgs imports),
    and hands the worker a frame's messages with the cues of its stamp."""

    def __init__(self, node: Node, *, mask_mode: str) -> None:
        self._mask_buffer, self._box_buffer = CueBuffer(), CueBuffer()
        if mask_mode == "when_needed":
            node.create_subscription(Image, "mask", _buffer_into(self._mask_buffer), qos_profile_sensor_data)
        try:
            from vision_msgs.msg import Detection2DArray

            node.create_subscription(Detection2DArray, "boxes", _buffer_into(self._box_buffer),
                                     qos_profile_sensor_data)
        except ImportError as e:
            node.get_logger().error(f"boxes will not be taken: vision_msgs missing ({e})")

    def messages(self, frame: Frame, s: NodeSettings, *, need_mask_s: float = 0.0) -> dict:
        """The frame's messages with the mask and the boxes of its stamp window (None when none came), waiting up to
        ``mask_wait_ms`` from its completion while masks or boxes have been arriving; ``need_mask_s``: a request
        that needs a mask or a box (~/set_reference without roi) waits this long for one whatever arrived before."""
        msgs = dict(frame.msgs)
        slop = int(s.sync_slop * 1e9)
        until = frame.received + max(s.mask_wait_ms / 1000.0, need_mask_s)
        if "mask" not in msgs:
            msgs["mask"] = self._mask_buffer.wait(frame.stamp_ns, slop, until, always=need_mask_s > 0)
        msgs["boxes"] = self._box_buffer.wait(frame.stamp_ns, slop, until,
                                              always=need_mask_s > 0 and msgs["mask"] is None)
        return msgs

    def stop(self) -> None:
        """Wake and end every wait (the node is going)."""
        self._mask_buffer.stop()
        self._box_buffer.stop()


def boxes_of(msgs: dict, object_ids, stride: int = 1) -> dict[str, Box]:
    """{object id: Box} of the frame's Detection2DArray (none: {}), on the frame decimated by ``stride``."""
    if msgs.get("boxes") is None:
        return {}
    return {oid: box.scaled(stride) for oid, box in conv.boxes_from_detections(msgs["boxes"], object_ids).items()}


def _buffer_into(buffer: CueBuffer) -> Callable:
    def add(msg) -> None:
        buffer.add(conv.stamp_to_ns(msg.header.stamp), msg)
    return add
