"""``~/detections``: one ``vision_msgs/Detection3DArray`` per processed frame (docs/ros.md).

Contract: the array's ``header`` is the rgb image's header; one ``Detection3D`` per object that has a pose
this frame (none, ``detections == []``, when no object has one), each with

- ``header`` = the same header, ``id`` = the object's TF child frame name;
- ``results[0].hypothesis.class_id`` = the child frame name, ``results[0].hypothesis.score`` = its
  confidence, ``results[0].pose.pose`` = T_camera_object as a ``geometry_msgs/Pose`` (metres; the
  covariance is left all zero: not estimated);
- ``bbox.center`` = the same pose, ``bbox.size`` = the extent of the object's reference cloud in its object
  frame O (:func:`object_extent`, metres).

vision_msgs has no wheel: without a full ROS install it is the stand-in built from its unchanged message
definitions (``ros_interfaces/vision_msgs``, ``tools/build_standin_msgs.sh``, run by ``make``). Importing this
module raises ImportError when neither is importable; the node catches it and publishes no detections.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Vector3
from std_msgs.msg import Header
from vision_msgs.msg import Detection3D, Detection3DArray, ObjectHypothesisWithPose

from one2any_ros.ros.conversions import matrix_to_pose


@dataclass(frozen=True, eq=False)  # eq=False: ndarray fields make == ambiguous; instances compare by identity
class DetectionInput:
    """One object's pose this frame, as ``detection_array`` needs it."""

    child_frame: str  # the object's TF child frame name (also the detection's id and class_id)
    T_camera_object: np.ndarray  # (4,4) object frame O in the camera frame, metres
    confidence: float  # the estimate's confidence, the hypothesis score
    size_m: np.ndarray  # (3,) extent of the reference cloud along O's x, y, z, metres (object_extent)

    def __post_init__(self) -> None:
        T = np.array(self.T_camera_object, dtype=np.float64)
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            raise ValueError(f"T_camera_object of {self.child_frame!r} must be a finite 4x4 transform")
        size = np.array(self.size_m, dtype=np.float64).reshape(-1)
        if size.shape != (3,) or not np.all(np.isfinite(size)) or np.any(size < 0):
            raise ValueError(f"size_m of {self.child_frame!r} must be 3 finite non-negative extents, "
                             f"got {size.tolist()}")
        T.flags.writeable = False
        size.flags.writeable = False
        object.__setattr__(self, "T_camera_object", T)
        object.__setattr__(self, "size_m", size)
        object.__setattr__(self, "confidence", float(self.confidence))
        object.__setattr__(self, "child_frame", str(self.child_frame))


def object_extent(points_O: np.ndarray) -> np.ndarray:
    """(3,) float64: max - min along each axis of the reference cloud ``points_O`` (N,3), in the object frame O,
    metres. Rows with a non-finite coordinate are ignored; ValueError when no finite point is left."""
    pts = np.asarray(points_O, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points_O must be (N,3), got shape {pts.shape}")
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    if len(pts) == 0:
        raise ValueError("points_O has no finite point")
    return pts.max(axis=0) - pts.min(axis=0)


def _copy_header(header: Header) -> Header:
    return Header(stamp=Time(sec=header.stamp.sec, nanosec=header.stamp.nanosec), frame_id=header.frame_id)


def detection_array(header: Header, detections: list[DetectionInput]) -> Detection3DArray:
    """The frame's Detection3DArray (module docstring): ``header`` on the array and on every detection (as
    copies, so later edits of one do not change the others), one Detection3D per entry of ``detections``, in
    order; empty ``detections`` -> an array with the header and no detections."""
    out = []
    for d in detections:
        det = Detection3D(header=_copy_header(header), id=d.child_frame)
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = d.child_frame
        hyp.hypothesis.score = d.confidence
        hyp.pose.pose = matrix_to_pose(d.T_camera_object)
        det.results = [hyp]
        det.bbox.center = matrix_to_pose(d.T_camera_object)  # its own Pose, equal to results[0].pose.pose
        sx, sy, sz = (float(v) for v in d.size_m)
        det.bbox.size = Vector3(x=sx, y=sy, z=sz)
        out.append(det)
    return Detection3DArray(header=_copy_header(header), detections=out)
