"""The node's outputs for one frame's poses (docs/ros.md, Topics): ``~/pose`` (the default object),
``~/estimate``, ``/tf``, ``~/detections`` (when vision_msgs imports) and, with ``debug``, ``~/debug_image``.
"""
from __future__ import annotations

import time

import numpy as np
from geometry_msgs.msg import PoseStamped, TransformStamped
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from one2any_ros.core.errors import One2AnyError
from one2any_ros.core.frame import DEFAULT_OBJECT
from one2any_ros.core.geometry import invert_transform, transform_points
from one2any_ros.msg import PoseEstimate
from one2any_ros.ros import conversions as conv
from one2any_ros.ros.diagnostics import NodeStats
from one2any_ros.ros.object_table import ObjectTable
from one2any_ros.ros.params import NodeSettings
from one2any_ros.ros.sync import Frame
from one2any_ros.ros.tf import create_broadcaster

OUT_QOS = QoSProfile(depth=10)  # outputs: reliable, volatile


class PoseOutputs:
    """The publishers of ``node``'s poses; each published pose is counted in ``stats`` and its object's record in
    ``table``. ``tf`` is None when no broadcaster could be made (``tf_note`` says why)."""

    def __init__(self, node: Node, table: ObjectTable, stats: NodeStats) -> None:
        self._node, self._table, self._stats = node, table, stats
        self._pose_pub = node.create_publisher(PoseStamped, "~/pose", OUT_QOS)
        self._estimate_pub = node.create_publisher(PoseEstimate, "~/estimate", OUT_QOS)
        self._debug_pub = None  # made when the first debug image goes out
        self._det_pub = self._det = None  # ~/detections and its builder (ros/detections.py), when vision_msgs imports
        try:
            from one2any_ros.ros import detections
            from vision_msgs.msg import Detection3DArray

            self._det, self._det_pub = detections, node.create_publisher(Detection3DArray, "~/detections", OUT_QOS)
        except ImportError as e:
            node.get_logger().error(f"~/detections will not be published: vision_msgs missing ({e})")
        self.tf_note = ""
        try:
            self.tf = create_broadcaster(node)
        except ImportError as e:
            self.tf, self.tf_note = None, "TF disabled: tf2_msgs missing"
            node.get_logger().error(f"/tf will not be published: {e}")

    def publish(self, frame: Frame, s: NodeSettings, qframe, results: dict, refs: dict) -> None:
        """Each object's pose (``results``: a pose or the object's failure, skipped here), then the frame's one
        Detection3DArray."""
        header = frame.header
        detections = []
        for oid, r in results.items():
            if isinstance(r, One2AnyError):
                continue
            T, child = r.T_camera_object, s.child_frame(oid)
            pose = conv.matrix_to_pose(T)
            latency_ms = (time.monotonic() - frame.received) * 1000.0
            if oid == DEFAULT_OBJECT:
                self._pose_pub.publish(PoseStamped(header=header, pose=pose))
            self._estimate_pub.publish(PoseEstimate(
                header=header, object_id=oid, pose=pose, confidence=float(r.confidence), inliers=int(r.inliers),
                residual_m=float(r.residual_m), latency_ms=float(latency_ms), backend=r.backend))
            if s.publish_tf and self.tf is not None:
                # tf2_ros's API (and our stand-in's): sendTransform, camelCase
                self.tf.sendTransform(TransformStamped(header=header, child_frame_id=child,
                                                       transform=conv.matrix_to_transform(T)))
            if self._det_pub is not None:
                center_O, size_O = self._table.box(oid, refs[oid], self._box)
                detections.append(self._det.DetectionInput(child_frame=child, T_camera_object=T,
                                                           confidence=float(r.confidence), size_m=size_O,
                                                           center_O=center_O))
            self._table.object_stats(oid).pose_published(latency_ms, r.inliers, r.confidence, r.mode)
            self._stats.pose_published(latency_ms, r.inliers, r.confidence)
        if self._det_pub is not None:
            self._det_pub.publish(self._det.detection_array(header, detections))
        if s.debug:
            self._publish_debug(header, qframe, results, refs)

    def _box(self, ref) -> tuple[np.ndarray, np.ndarray]:
        """The reference cloud's axis-aligned box in O (its centre and extent, metres): Detection3D's bbox."""
        return self._det.object_box(transform_points(invert_transform(ref.T_C_O), ref.points_C))

    def _publish_debug(self, header: Header, qframe, results: dict, refs: dict) -> None:
        from one2any_ros.core.visualize import draw_pose

        if self._debug_pub is None:
            self._debug_pub = self._node.create_publisher(Image, "~/debug_image", OUT_QOS)
        img = qframe.rgb
        for oid, r in results.items():
            if isinstance(r, One2AnyError):
                continue
            ref = refs[oid]
            name = f"{oid or 'default'}: " if len(results) > 1 else ""
            img = draw_pose(img, qframe.K, r.T_camera_object, axis_len=ref.scale,
                            cloud_cam=transform_points(r.T_camera_C, ref.points_C),
                            label=f"{name}{r.backend} {r.mode} conf {r.confidence:.2f} inliers {r.inliers}")
        self._debug_pub.publish(conv.array_to_image(img, "rgb8", stamp=header.stamp, frame_id=header.frame_id))
