"""``~/detections``: one ``vision_msgs/Detection3DArray`` per processed frame (docs/ros.md).

Contract: the array's ``header`` is the rgb image's header; one ``Detection3D`` per object that has a pose
this frame (none, ``detections == []``, when no object has one), each with

- ``header`` = the same header, ``id`` = the object's TF child frame name;
- ``results[0].hypothesis.class_id`` = the child frame name, ``results[0].hypothesis.score`` = its
  confidence, ``results[0].pose.pose`` = T_camera_object as a ``geometry_msgs/Pose`` (metres; the
  covariance is left all zero: not estimated);
- ``bbox`` = the reference cloud's axis-aligned box in the object frame O (:func:`object_box`), carried by the
  pose: ``bbox.center`` = the box's centre in the camera frame (orientation = the pose's), ``bbox.size`` = its
  extent, metres. O's origin is not the box's centre in general (by default it is the median of the reference's
  visible points), so a planner reading the box gets the object's box, not one offset by that difference.

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
    size_m: np.ndarray  # (3,) extent of the reference cloud along O's x, y, z, metres (object_box)
    center_O: np.ndarray  # (3,) the box's centre in O, metres (object_box)

    def __post_init__(self) -> None:
        T = np.array(self.T_camera_object, dtype=np.float64)
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            raise ValueError(f"T_camera_object of {self.child_frame!r} must be a finite 4x4 transform")
        size = np.array(self.size_m, dtype=np.float64).reshape(-1)
        if size.shape != (3,) or not np.all(np.isfinite(size)) or np.any(size < 0):
            raise ValueError(f"size_m of {self.child_frame!r} must be 3 finite non-negative extents, "
                             f"got {size.tolist()}")
        center = np.array(self.center_O, dtype=np.float64).reshape(-1)
        if center.shape != (3,) or not np.all(np.isfinite(center)):
            raise ValueError(f"center_O of {self.child_frame!r} must be 3 finite coordinates, got {center.tolist()}")
        T.flags.writeable = False
        size.flags.writeable = False
        center.flags.writeable = False
        object.__setattr__(self, "T_camera_object", T)
        object.__setattr__(self, "size_m", size)
        object.__setattr__(self, "center_O", center)
        object.__setattr__(self, "confidence", float(self.confidence))
        object.__setattr__(self, "child_frame", str(self.child_frame))


def object_box(points_O: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The axis-aligned box of the reference cloud in the object frame O.

    Args:
        points_O: (N, 3) reference points in O, metres; rows with a non-finite coordinate are ignored.
    Returns:
        (centre (3,), extent (3,)) float64, metres: (max + min) / 2 and max - min along O's x, y, z.
    Raises:
        ValueError: wrong shape, or no finite point.
    """
    pts = np.asarray(points_O, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points_O must be (N,3), got shape {pts.shape}")
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    if len(pts) == 0:
        raise ValueError("points_O has no finite point")
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    return (lo + hi) / 2.0, hi - lo


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
        box = d.T_camera_object.copy()
        box[:3, 3] = d.T_camera_object[:3, :3] @ d.center_O + d.T_camera_object[:3, 3]  # O's box centre, camera frame
        det.bbox.center = matrix_to_pose(box)
        sx, sy, sz = (float(v) for v in d.size_m)
        det.bbox.size = Vector3(x=sx, y=sy, z=sz)
        out.append(det)
    return Detection3DArray(header=_copy_header(header), detections=out)
