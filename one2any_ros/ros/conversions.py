"""Message <-> array conversion at the ROS edge, once, in one place (STYLE: vision_opencv/tf2 habits).

Images: ``rgb8``/``bgr8`` colour, ``mono8``/``8UC1`` masks, ``16UC1``/``mono16`` depth in millimetres and
``32FC1`` depth in metres (docs/architecture.md, Conventions); row padding (``step``) and big-endian data
are handled. CameraInfo -> K (3,3). Pose/Transform <-> 4x4 float64: the messages' quaternions (x, y, z, w)
become rotation matrices here, through scipy's ``Rotation`` (whose order is xyzw too); the library beyond
this module speaks in matrices (pybullet's xyzw in ``data/render.py`` is the renderer's own business).
Every problem raises :class:`ConversionError` (an :class:`~one2any_ros.core.errors.InputError`) whose
``reason`` is a stable key the node reports in /diagnostics.
"""
from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Pose, Transform
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import CameraInfo, Image, RegionOfInterest

from one2any_ros.core.box_segment import Box
from one2any_ros.core.errors import InputError
from one2any_ros.core.frame import Frame, at_working_width, decode_frame
from one2any_ros.core.frame import View, make_view

# encoding -> (dtype, channels)
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "mono8": (np.dtype(np.uint8), 1),
    "8UC1": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
}
RGB_ENCODINGS = ("rgb8", "bgr8")
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")  # mono16 is read as 16UC1 (mm)
MASK_ENCODINGS = ("mono8", "8UC1", "mono16", "16UC1")  # label images: 0 = background, else a label


class ConversionError(InputError):
    """A message that cannot be turned into an array (encoding, size, layout, values)."""

    reason = "bad_message"


# --- stamps -------------------------------------------------------------------------------------------

def stamp_to_ns(stamp: Time) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns: int) -> Time:
    sec, nsec = divmod(int(ns), 1_000_000_000)
    return Time(sec=sec, nanosec=nsec)


# --- images -------------------------------------------------------------------------------------------

def image_to_array(msg: Image, *, what: str = "image") -> np.ndarray:
    """(H,W) or (H,W,C) array of a supported encoding, a copy in native byte order. Raises ConversionError."""
    enc = msg.encoding
    if enc not in ENCODINGS:
        raise ConversionError(f"{what} has unsupported encoding '{enc}' (supported: {', '.join(ENCODINGS)})",
                              reason="bad_encoding")
    dtype, ch = ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    row = w * ch * dtype.itemsize
    if h <= 0 or w <= 0:
        raise ConversionError(f"{what} is empty ({w}x{h})", reason="empty_image")
    if step < row:
        raise ConversionError(f"{what} step {step} is smaller than width*channels*bytes = {row}", reason="bad_step")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size < step * (h - 1) + row:
        raise ConversionError(f"{what} has {data.size} bytes, {w}x{h} {enc} with step {step} needs {step * h}",
                              reason="truncated_image")
    rows = np.lib.stride_tricks.as_strided(data, shape=(h, row), strides=(step, 1))
    wire = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    arr = np.ascontiguousarray(rows).view(wire).astype(dtype)  # a native-order copy, never a view of msg.data
    return arr.reshape(h, w, ch) if ch > 1 else arr.reshape(h, w)


def array_to_image(arr: np.ndarray, encoding: str, *, stamp: Time | None = None, frame_id: str = "") -> Image:
    """An Image of ``arr`` (dtype and channels must match ``encoding``), little-endian, no row padding."""
    if encoding not in ENCODINGS:
        raise ConversionError(f"unsupported encoding '{encoding}'", reason="bad_encoding")
    dtype, ch = ENCODINGS[encoding]
    arr = np.asarray(arr)
    shape_ok = arr.ndim == 2 if ch == 1 else (arr.ndim == 3 and arr.shape[2] == ch)
    if arr.dtype != dtype or not shape_ok:
        raise ConversionError(f"array {arr.dtype} {arr.shape} does not fit encoding {encoding}", reason="bad_encoding")
    msg = Image()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(arr.shape[1] * ch * dtype.itemsize)
    msg.data = np.ascontiguousarray(arr, dtype=dtype.newbyteorder("<")).tobytes()
    return msg


def rgb_from_image(msg: Image) -> np.ndarray:
    """(H,W,3) uint8 RGB from an rgb8 or bgr8 Image."""
    if msg.encoding not in RGB_ENCODINGS:
        raise ConversionError(f"rgb image has encoding '{msg.encoding}' (use rgb8 or bgr8)", reason="bad_rgb_encoding")
    arr = image_to_array(msg, what="rgb image")
    return np.ascontiguousarray(arr[..., ::-1]) if msg.encoding == "bgr8" else arr


def depth_from_image(msg: Image) -> tuple[np.ndarray, str]:
    """(depth array, '16UC1' (uint16 mm) or '32FC1' (float32 m)) from a depth Image."""
    if msg.encoding not in DEPTH_ENCODINGS:
        raise ConversionError(f"depth image has encoding '{msg.encoding}' (use 16UC1 in mm or 32FC1 in m)",
                              reason="bad_depth_encoding")
    arr = image_to_array(msg, what="depth image")
    return arr, ("32FC1" if msg.encoding == "32FC1" else "16UC1")


def mask_from_image(msg: Image) -> np.ndarray:
    """(H,W) label image from a mono8 (uint8) or mono16 (uint16) Image: 0 = background; each object's pixels
    carry its label (a plain mask: non-zero = the object)."""
    if msg.encoding not in MASK_ENCODINGS:
        raise ConversionError(f"mask has encoding '{msg.encoding}' (use mono8 or mono16: 0 = background, else a "
                              "label)", reason="bad_mask_encoding")
    return image_to_array(msg, what="mask")


# --- camera info --------------------------------------------------------------------------------------

def camera_info_to_K(msg: CameraInfo) -> np.ndarray:
    """K (3,3) float64 from CameraInfo.k (row-major). An all-zero K means an uncalibrated camera."""
    K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0 or K[2, 2] == 0:
        raise ConversionError(f"camera_info K is not a calibrated pinhole matrix: {K.ravel().tolist()}",
                              reason="bad_intrinsics")
    return K


def K_to_camera_info(K: np.ndarray, width: int, height: int, *, stamp: Time | None = None,
                     frame_id: str = "") -> CameraInfo:
    """A rectified (no distortion) CameraInfo with k = K, p = [K | 0], r = identity."""
    K = np.asarray(K, dtype=np.float64).reshape(3, 3)
    msg = CameraInfo()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.width, msg.height = int(width), int(height)
    msg.distortion_model = "plumb_bob"
    msg.d = [0.0] * 5
    msg.k = K.ravel().tolist()
    msg.r = np.eye(3).ravel().tolist()
    msg.p = np.hstack([K, np.zeros((3, 1))]).ravel().tolist()
    return msg


# --- poses: message quaternions (x, y, z, w) <-> matrices ------------------------------------------

def quaternion_xyzw_to_matrix(q) -> np.ndarray:
    """(3,3) rotation of a quaternion (x, y, z, w); normalised; a zero or non-finite one raises."""
    q = np.asarray(q, dtype=np.float64)
    n = np.linalg.norm(q)
    if q.shape != (4,) or not np.isfinite(n) or n < 1e-9:
        raise ConversionError(f"quaternion {q.tolist()} is not a rotation", reason="bad_quaternion")
    return Rotation.from_quat(q / n).as_matrix()


def matrix_to_quaternion_xyzw(R: np.ndarray) -> np.ndarray:
    """Quaternion (x, y, z, w) with w >= 0 of a (3,3) rotation."""
    q = Rotation.from_matrix(np.asarray(R, dtype=np.float64)).as_quat()
    return -q if q[3] < 0 else q


def _check_T(T: np.ndarray) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise ConversionError("pose must be a finite 4x4 transform", reason="bad_pose")
    return T


def matrix_to_pose(T: np.ndarray) -> Pose:
    """geometry_msgs/Pose of a 4x4 rigid transform (metres)."""
    T = _check_T(T)
    p = Pose()
    p.position.x, p.position.y, p.position.z = (float(v) for v in T[:3, 3])
    q = matrix_to_quaternion_xyzw(T[:3, :3])
    p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = (float(v) for v in q)
    return p


def pose_to_matrix(pose: Pose) -> np.ndarray:
    """4x4 float64 of a geometry_msgs/Pose; raises ConversionError on a zero/non-finite quaternion or position."""
    o, t = pose.orientation, pose.position
    T = np.eye(4)
    T[:3, :3] = quaternion_xyzw_to_matrix([o.x, o.y, o.z, o.w])
    T[:3, 3] = [t.x, t.y, t.z]
    return _check_T(T)


def request_pose_to_matrix(pose: Pose, *, unit_tolerance: float = 0.05) -> np.ndarray:
    """4x4 float64 of a pose a client sent (``SetReference.object_pose``), checked strictly: a quaternion that is
    zero, not finite or whose norm is off 1 by more than ``unit_tolerance`` raises ConversionError(reason=
    "bad_quaternion") (a client's bug, not a rotation to normalise); a NaN or infinite position raises
    ConversionError(reason="bad_object_pose")."""
    o, t = pose.orientation, pose.position
    q = np.array([o.x, o.y, o.z, o.w], dtype=np.float64)
    n = float(np.linalg.norm(q)) if np.all(np.isfinite(q)) else float("nan")
    if not abs(n - 1.0) <= unit_tolerance:
        raise ConversionError(f"object_pose.orientation {q.tolist()} is not a unit quaternion (norm {n:.3g}; "
                              f"x, y, z, w with norm 1 +- {unit_tolerance})", reason="bad_quaternion")
    p = np.array([t.x, t.y, t.z], dtype=np.float64)
    if not np.all(np.isfinite(p)):
        raise ConversionError(f"object_pose.position {p.tolist()} is not finite (metres)", reason="bad_object_pose")
    return pose_to_matrix(pose)


def roi_to_box(roi: RegionOfInterest) -> Box:
    """The library's Box of a sensor_msgs/RegionOfInterest (``do_rectify`` is not used: boxes are in the image the
    node receives)."""
    return Box(int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height))


def detection_box(bbox) -> Box:
    """The Box of a vision_msgs/BoundingBox2D (centre and size in pixels; its theta is not used: boxes are upright).
    A size that is not finite and positive gives an empty box (bad_roi when it is used)."""
    cx, cy = float(bbox.center.position.x), float(bbox.center.position.y)
    sx, sy = float(bbox.size_x), float(bbox.size_y)
    if not all(np.isfinite([cx, cy, sx, sy])) or sx <= 0 or sy <= 0:
        return Box(0, 0, 1, 0)
    x0, y0 = int(np.floor(cx - sx / 2)), int(np.floor(cy - sy / 2))
    return Box(x0, y0, int(np.ceil(cx + sx / 2)) - x0, int(np.ceil(cy + sy / 2)) - y0)


def boxes_from_detections(msg, object_ids) -> dict[str, Box]:
    """{object id: Box} of a vision_msgs/Detection2DArray (read by attribute, so any build of it does): a detection
    whose ``results[0].hypothesis.class_id`` is an object's id is that object's box; the only detection of the array
    is the default object's ("") when no id claims it. Detections of unknown classes are ignored."""
    ids = set(object_ids)
    out: dict[str, Box] = {}
    for det in msg.detections:
        class_id = det.results[0].hypothesis.class_id if len(det.results) else ""
        if class_id in ids and class_id not in out:
            out[class_id] = detection_box(det.bbox)
    if "" in ids and "" not in out and len(msg.detections) == 1:
        out[""] = detection_box(msg.detections[0].bbox)
    return out


def stamp_text(ns: int) -> str:
    """A header stamp in seconds with all nine decimals, exactly (``1733459000.000000042``): how the node's
    messages name the frame they are about."""
    sec, nsec = divmod(int(ns), 1_000_000_000)
    return f"{sec}.{nsec:09d}"


def matrix_to_transform(T: np.ndarray) -> Transform:
    """geometry_msgs/Transform of a 4x4 rigid transform (for TF)."""
    p = matrix_to_pose(T)
    tf = Transform()
    tf.translation.x, tf.translation.y, tf.translation.z = p.position.x, p.position.y, p.position.z
    tf.rotation = p.orientation
    return tf


def transform_to_matrix(tf: Transform) -> np.ndarray:
    p = Pose()
    p.position.x, p.position.y, p.position.z = tf.translation.x, tf.translation.y, tf.translation.z
    p.orientation = tf.rotation
    return pose_to_matrix(p)


# --- a synchronized set -> the library's View ---------------------------------------------------------

def _decoded_messages(msgs: dict) -> tuple[np.ndarray, np.ndarray, str, np.ndarray | None, np.ndarray]:
    """(rgb, depth, its encoding, mask/label image (None: no "mask" or None there), K) of {rgb, depth, mask,
    camera_info}, sizes checked."""
    rgb = rgb_from_image(msgs["rgb"])
    depth, encoding = depth_from_image(msgs["depth"])
    mask = mask_from_image(msgs["mask"]) if msgs.get("mask") is not None else None
    info = msgs["camera_info"]
    K = camera_info_to_K(info)
    if info.width and info.height and (info.height, info.width) != depth.shape:
        raise InputError(f"camera_info is {info.width}x{info.height} but depth is {depth.shape[1]}x{depth.shape[0]}",
                         reason="size_mismatch")
    return rgb, depth, encoding, mask, K


def frame_from_messages(msgs: dict, *, min_depth: float, max_depth: float, max_width: int = 0) -> Frame:
    """One decoded frame of {rgb, depth, mask (label image), camera_info} messages, shared by every object, decimated
    to at most ``max_width`` pixels across (``frame.at_working_width``; 0 = as it came); InputError (reason) when
    unusable."""
    rgb, depth, encoding, labels, K = _decoded_messages(msgs)
    return at_working_width(decode_frame(rgb, depth, labels, K, depth_encoding=encoding, min_depth=min_depth,
                                         max_depth=max_depth), max_width)


def view_from_messages(msgs: dict, *, min_depth: float, max_depth: float, T_cam_obj: np.ndarray | None = None) -> View:
    """A validated View of {rgb, depth, mask, camera_info} messages; InputError (reason) when unusable."""
    rgb, depth, encoding, mask, K = _decoded_messages(msgs)
    return make_view(rgb, depth, mask, K, depth_encoding=encoding, min_depth=min_depth, max_depth=max_depth,
                     T_cam_obj=T_cam_obj)
