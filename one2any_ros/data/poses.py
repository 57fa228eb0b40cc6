"""Rotations, object pose samplers and the default camera of the rendered data (docs/architecture.md,
Renderers). Pure functions of numpy arrays and an ``rng``; rotations through scipy's ``Rotation``.

Frames: the OpenCV camera (x right, y down, z forward); poses are 4x4 ``T_cam_obj`` in metres.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from one2any_ros.core.geometry import rotation_angle_deg

DEFAULT_WIDTH, DEFAULT_HEIGHT = 640, 480
DEFAULT_K = np.array([[600.0, 0.0, 319.5], [0.0, 600.0, 239.5], [0.0, 0.0, 1.0]])  # a 640x480 RGB-D camera


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """(3,3) rotation uniformly distributed on SO(3): a normalised 4D Gaussian is a uniform unit quaternion
    (drawn from ``rng`` rather than by ``Rotation.random``, so a seed keeps its scenes)."""
    q = rng.normal(size=4)
    return Rotation.from_quat(q / np.linalg.norm(q)).as_matrix()


def axis_angle_to_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation by ``angle`` radians about ``axis`` (normalised here; a zero axis gives the identity)."""
    a = np.asarray(axis, float)
    return Rotation.from_rotvec(a * (angle / max(np.linalg.norm(a), 1e-12))).as_matrix()


def rotation_angle(Ra: np.ndarray, Rb: np.ndarray) -> float:
    """Geodesic angle between two rotations (or the rotations of (4,4) poses), radians in [0, pi]
    (``core.geometry.rotation_angle_deg``, the one formula)."""
    return float(np.radians(rotation_angle_deg(Ra[:3, :3].T @ Rb[:3, :3])))


def rotation_at_angle(
    R: np.ndarray, angle: float, rng: np.random.Generator | None = None, *, axis: np.ndarray | None = None
) -> np.ndarray:
    """A rotation exactly ``angle`` radians from ``R`` (geodesic): ``exp(angle·axis) @ R``, the extra
    rotation about a camera-frame axis (random unit axis unless given)."""
    if axis is None:
        rng = rng if rng is not None else np.random.default_rng()
        axis = rng.normal(size=3)
    return axis_angle_to_matrix(axis, angle) @ np.asarray(R, float)[:3, :3]


def sample_translation(
    rng: np.random.Generator,
    *,
    K: np.ndarray,
    width: int,
    height: int,
    distance_range: tuple[float, float] = (0.4, 1.2),
    radius: float = 0.0,
    margin: float = 0.05,
) -> np.ndarray:
    """(3,) camera-frame position: depth uniform in ``distance_range``, the projection uniform over the
    image keeping an object of ``radius`` (m) inside it with a ``margin`` (fraction of the size)."""
    z = float(rng.uniform(*distance_range))
    rpx_u, rpx_v = K[0, 0] * radius / z, K[1, 1] * radius / z
    lo_u, hi_u = margin * width + rpx_u, (1 - margin) * width - 1 - rpx_u
    lo_v, hi_v = margin * height + rpx_v, (1 - margin) * height - 1 - rpx_v
    u = rng.uniform(lo_u, hi_u) if hi_u > lo_u else 0.5 * (width - 1)
    v = rng.uniform(lo_v, hi_v) if hi_v > lo_v else 0.5 * (height - 1)
    return np.array([(u - K[0, 2]) * z / K[0, 0], (v - K[1, 2]) * z / K[1, 1], z])


def sample_pose(
    rng: np.random.Generator,
    *,
    K: np.ndarray | None = None,
    width: int = 640,
    height: int = 480,
    distance_range: tuple[float, float] = (0.4, 1.2),
    radius: float = 0.0,
    margin: float = 0.05,
    R: np.ndarray | None = None,
) -> np.ndarray:
    """(4,4) random object pose in front of the camera: uniform rotation (or ``R``), see
    :func:`sample_translation` for the position."""
    K = DEFAULT_K if K is None else np.asarray(K, float)
    T = np.eye(4)
    T[:3, :3] = random_rotation(rng) if R is None else R
    T[:3, 3] = sample_translation(
        rng, K=K, width=width, height=height, distance_range=distance_range, radius=radius, margin=margin
    )
    return T


def crop_intrinsics(K: np.ndarray, u0: float, v0: float, side: float, out_size: int) -> np.ndarray:
    """K of a square crop (top-left (u0, v0), ``side`` px) resized to ``out_size`` px, with the
    cv2.resize pixel-centre convention. Render a crop directly with this K and (out_size, out_size)."""
    s = side / out_size
    K2 = np.array(K, dtype=np.float64, copy=True)
    K2[0, 0] /= s
    K2[1, 1] /= s
    K2[0, 1] /= s
    K2[0, 2] = (K[0, 2] - u0 + 0.5) / s - 0.5
    K2[1, 2] = (K[1, 2] - v0 + 0.5) / s - 0.5
    return K2
