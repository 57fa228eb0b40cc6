"""``one2any estimate``: one reference + one query from image files (PNG/JPG, 16-bit depth PNG)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from one2any_ros.core.errors import InputError


def read_image(path: str, *, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    img = cv2.imread(str(path), flags)
    if img is None:
        raise InputError(f"cannot read image {path}", reason="unreadable_file")
    return img


def read_rgb(path: str) -> np.ndarray:
    return cv2.cvtColor(read_image(path, flags=cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def read_intrinsics(path: str) -> np.ndarray:
    """JSON with ``K`` (3x3 or 9 row-wise, e.g. BOP ``cam_K``) or ``fx, fy, cx, cy``."""
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read intrinsics {path}: {e}", reason="missing_camera_info") from e
    if "K" in d or "cam_K" in d:
        return np.asarray(d.get("K", d.get("cam_K")), dtype=np.float64).reshape(3, 3)
    try:
        return np.array([[d["fx"], 0, d["cx"]], [0, d["fy"], d["cy"]], [0, 0, 1]], dtype=np.float64)
    except KeyError as e:
        raise InputError(f"intrinsics {path} need K or fx, fy, cx, cy (missing {e})", reason="missing_camera_info") from e


def estimate_from_files(a) -> dict:
    from one2any_ros.core.estimator import PoseEstimator
    from one2any_ros.core.frame import make_view
    from one2any_ros.core.visualize import draw_pose, save_rgb
    from one2any_ros.core.geometry import transform_points

    K = read_intrinsics(a.intrinsics)
    ref_pose = None
    if a.ref_pose:
        ref_pose = np.asarray(json.loads(Path(a.ref_pose).read_text()), dtype=np.float64).reshape(4, 4)

    def view(files, **kw):
        rgb, depth, mask = files
        return make_view(read_rgb(rgb), read_image(depth), read_image(mask, flags=cv2.IMREAD_GRAYSCALE), K,
                         depth_scale_m=a.depth_scale, **kw)

    est = PoseEstimator(a.backend, device=a.device, checkpoint=a.checkpoint)
    ref = est.set_reference(view(a.ref, T_cam_obj=ref_pose))
    q = view(a.query)
    res = est.estimate(q)
    if a.overlay:
        img = draw_pose(q.rgb, K, res.T_camera_object, axis_len=ref.scale,
                        cloud_cam=transform_points(res.T_camera_C, ref.points_C), label=f"{res.backend} conf {res.confidence:.2f}")
        save_rgb(a.overlay, img)
    return {"T_camera_object": res.T_camera_object.tolist(), "confidence": res.confidence, "inliers": res.inliers,
            "residual_m": res.residual_m, "backend": res.backend, "timings_ms": res.timings_ms}
