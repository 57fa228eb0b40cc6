"""Pose overlays a person can judge at a glance: object axes plus the reference cloud drawn on the image."""
from __future__ import annotations

import cv2
import numpy as np

from one2any_ros.core.camera import project
from one2any_ros.core.geometry import transform_points

AXIS_COLOURS = ((255, 0, 0), (0, 255, 0), (0, 0, 255))  # x red, y green, z blue (RGB), REP-103 habit


def draw_pose(rgb: np.ndarray, K: np.ndarray, T_cam_obj: np.ndarray, *, axis_len: float, cloud_cam: np.ndarray | None = None,
              cloud_colour=(255, 220, 0), label: str | None = None, thickness: int = 2) -> np.ndarray:
    """Return a copy of the RGB image with the cloud (N,3 camera frame) as dots and the object axes.

    Args:
        rgb: (H, W, 3) uint8 RGB (not changed).
        K: (3, 3) intrinsics, pixels.
        T_cam_obj: (4, 4) float object pose in the camera, metres.
        axis_len: length of the drawn axes, metres.
        cloud_cam: (N, 3) float points in the camera, metres, or None.
        cloud_colour: RGB 0-255 of the dots (blended 65 % over the image).
        label: text drawn in the top-left corner, or None.
        thickness: the axes' line width, pixels.

    Returns:
        (H, W, 3) uint8 RGB copy with the overlay.
    """
    img = np.ascontiguousarray(rgb.copy())
    h, w = img.shape[:2]
    if cloud_cam is not None and len(cloud_cam):
        uv, z = project(cloud_cam, K)
        ok = (z > 0) & np.all(np.isfinite(uv), axis=1)
        uv = np.rint(uv[ok]).astype(int)
        ok2 = (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
        uv = uv[ok2]
        img[uv[:, 1], uv[:, 0]] = (0.35 * img[uv[:, 1], uv[:, 0]] + 0.65 * np.array(cloud_colour)).astype(np.uint8)
    axes = np.array([[0, 0, 0], [axis_len, 0, 0], [0, axis_len, 0], [0, 0, axis_len]], dtype=np.float64)
    uv, z = project(transform_points(T_cam_obj, axes), K)
    if np.all(z > 0) and np.all(np.isfinite(uv)) and np.all(np.abs(uv) < 1e5):
        o = tuple(int(x) for x in np.rint(uv[0]))
        for k in range(3):
            cv2.arrowedLine(img, o, tuple(int(x) for x in np.rint(uv[k + 1])), AXIS_COLOURS[k], thickness, cv2.LINE_AA, tipLength=0.15)
    if label:
        # white on a dark box: a thick dark outline behind small text merges neighbouring glyphs ("deg,0 mm")
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        box = img[2:min(th + base + 8, h), 2:min(tw + 10, w)]
        box[:] = (0.35 * box).astype(np.uint8)
        cv2.putText(img, label, (6, 6 + th), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def side_by_side(*images: np.ndarray) -> np.ndarray:
    """Images next to each other, left to right, for one overlay file.

    Args:
        *images: (H_i, W_i, 3) uint8 RGB images.

    Returns:
        (max H_i, sum (W_i + 4), 3) uint8: each image padded white at the bottom and by a 4-pixel white gap on
        the right.
    """
    h = max(i.shape[0] for i in images)
    padded = [np.pad(i, ((0, h - i.shape[0]), (0, 4), (0, 0)), constant_values=255) for i in images]
    return np.concatenate(padded, axis=1)


def save_rgb(path, rgb: np.ndarray) -> None:
    """An RGB image to a file (OpenCV writes BGR, so the channels are swapped first).

    Args:
        path: the file; its extension picks the format (.png, .jpg, ...).
        rgb: (H, W, 3) uint8 RGB.
    """
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
