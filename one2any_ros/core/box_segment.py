"""An object's pixels from a box around it and the depth alone: what an operator gives instead of a segmenter
(``SetReference.roi``; docs/ros.md, Services).

Inside the box: the plane behind or under the object (a table, a wall), fitted to the box's rim, is removed, the
rest is split where the depth jumps, and the largest connected part is the object, preferring the part nearest
the box's centre; the pieces at its depths that a sensor's dropout cut off it (gaps of up to two pixels without
depth) are joined to it.

No ROS here. Hand-written because no library here segments depth this way: OpenCV gives the connected parts,
the plane fit is a small vectorised RANSAC (Open3D's segment_plane is not a dependency), the parts' median
depths scipy.ndimage's.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from one2any_ros.core import camera
from one2any_ros.core.errors import InputError


@dataclass(frozen=True)
class Box:
    """A box in pixels, as ``sensor_msgs/RegionOfInterest`` gives it: (x_offset, y_offset) its top-left corner,
    width x height pixels. width 0 = no box."""

    x: int
    y: int
    width: int
    height: int

    @property
    def is_set(self) -> bool:
        return self.width > 0

    def scaled(self, stride: int) -> Box:
        """The box on a frame decimated by ``stride`` (``frame.at_working_width``): the pixels there that its pixels
        fall in. An unset or empty box stays as it is, and one outside the image stays outside."""
        if stride == 1 or self.width <= 0 or self.height <= 0:
            return self
        x, y = self.x // stride, self.y // stride
        return Box(x, y, -(-(self.x + self.width) // stride) - x, -(-(self.y + self.height) // stride) - y)

    def pixels(self, height: int, width: int) -> tuple[slice, slice]:
        """(rows, columns) of the box inside an image of ``height`` x ``width``; InputError(reason="bad_roi") when it
        is empty or lies outside the image."""
        if self.width <= 0 or self.height <= 0:
            raise InputError(f"roi {self.width}x{self.height} is empty (width and height must both be > 0; width 0 "
                             "= no box)", reason="bad_roi")
        x1, y1 = min(self.x + self.width, width), min(self.y + self.height, height)
        if self.x < 0 or self.y < 0 or self.x >= width or self.y >= height or x1 <= self.x or y1 <= self.y:
            raise InputError(f"roi (x {self.x}, y {self.y}, {self.width}x{self.height}) lies outside the "
                             f"{width}x{height} image", reason="bad_roi")
        return slice(self.y, y1), slice(self.x, x1)


@dataclass(frozen=True)
class BoxSegmentSettings:
    plane_iterations: int = 200  # RANSAC samples of the dominant plane
    score_points: int = 2000  # ... each scored on this many of the box's points
    plane_band_m: float = 0.006  # a point within this of the plane (plus plane_band_rel x its depth) is on it
    plane_band_rel: float = 0.004
    rim: float = 0.12  # the box's rim, x its shorter side, where the plane behind or under the object is fitted
    border_share: float = 0.3  # ... and kept when it holds this share of the rim's pixels
    jump_m: float = 0.01  # neighbours further apart in depth than this (plus jump_rel x depth) are not connected
    jump_rel: float = 0.01
    centre_weight: float = 0.5  # a part's size counts down to (1 - this) at the box's corner


def segment_in_box(depth_m: np.ndarray, K: np.ndarray, box: Box,
                   settings: BoxSegmentSettings = BoxSegmentSettings(), *,
                   rng: np.random.Generator | None = None, behind_m: float | None = None,
                   exclude: np.ndarray | None = None) -> np.ndarray:
    """The object's pixels inside ``box``, from depth alone.

    Args:
        depth_m: (H, W) float32 metres, 0 = invalid (already range-limited).
        K: (3, 3) intrinsics.
        box: the box around the object.
        behind_m: a depth, metres, the object is known to lie behind: a part whose median depth is nearer is taken
            only when no part lies behind it (something passing in front of the object), or None.
        exclude: (H, W) bool, pixels never taken (read as without depth: the objects already known there), or None.
    Returns:
        (H, W) bool mask, True on the object's pixels (all inside the box).
    Raises:
        InputError(reason="bad_roi"): the box is empty, outside the image, or holds no usable depth.
    """
    h, w = depth_m.shape
    rows, cols = box.pixels(h, w)
    d = np.asarray(depth_m[rows, cols], np.float32)
    if exclude is not None:
        d = np.where(exclude[rows, cols], np.float32(0), d)
    valid = d > 0
    if int(valid.sum()) < camera.MIN_MASK_PIXELS:
        raise InputError(f"roi holds {int(valid.sum())} pixels with valid depth (need >= {camera.MIN_MASK_PIXELS})",
                         reason="bad_roi")
    keep = valid & ~_support_plane(d, K, rows, cols, settings, rng or np.random.default_rng(0))
    part = _best_part(d, keep, settings, behind_m)
    if int(part.sum()) < camera.MIN_MASK_PIXELS:
        raise InputError("nothing in the roi stands out of the plane behind it: is the object inside the box?",
                         reason="bad_roi")
    out = np.zeros((h, w), bool)
    out[rows, cols] = part
    return out


def _support_plane(d: np.ndarray, K: np.ndarray, rows: slice, cols: slice, s: BoxSegmentSettings,
                   rng: np.random.Generator) -> np.ndarray:
    """(h, w) bool: the box's pixels on the plane behind or under the object, when there is one. The plane is
    fitted to the box's rim (the box encloses the object, so its rim is mostly what the object stands on or
    before) and kept when it holds ``border_share`` of the rim's pixels, those without depth counted too (a rim of
    clutter has no plane, and neither has a rim that is mostly empty: the few pixels with depth there are the
    object's own edge, whose face a plane fitted to them would cut away)."""
    h, w = d.shape
    v, u = np.nonzero(d > 0)
    z = d[v, u].astype(np.float64)
    pts = np.stack([(u + cols.start - K[0, 2]) * z / K[0, 0], (v + rows.start - K[1, 2]) * z / K[1, 1], z], axis=1)
    band = s.plane_band_m + s.plane_band_rel * z
    ring = max(2, int(round(s.rim * min(h, w))))
    rim = (v < ring) | (v >= h - ring) | (u < ring) | (u >= w - ring)
    if rim.sum() < 3:
        return np.zeros(d.shape, bool)
    rim_idx = np.flatnonzero(rim)
    sample = rim_idx[rng.integers(0, len(rim_idx), size=(s.plane_iterations, 3))]
    a, b, c = pts[sample[:, 0]], pts[sample[:, 1]], pts[sample[:, 2]]
    n = np.cross(b - a, c - a)
    norm = np.linalg.norm(n, axis=1)
    ok = norm > 1e-12
    if not ok.any():
        return np.zeros(d.shape, bool)
    n, a = n[ok] / norm[ok, None], a[ok]
    offsets = np.einsum("ij,ij->i", n, a)
    j = rim_idx[rng.choice(len(rim_idx), size=min(len(rim_idx), s.score_points), replace=False)]
    hits = (np.abs(pts[j] @ n.T - offsets[None, :]) <= band[j, None]).sum(axis=0)
    best = int(np.argmax(hits))
    rim_area = h * w - max(h - 2 * ring, 0) * max(w - 2 * ring, 0)  # the rim's pixels, with depth or not
    if hits[best] / len(j) * len(rim_idx) < s.border_share * rim_area:
        return np.zeros(d.shape, bool)
    on = np.zeros(d.shape, bool)
    on[v, u] = np.abs(pts @ n[best] - offsets[best]) <= band
    return on


def _best_part(d: np.ndarray, keep: np.ndarray, s: BoxSegmentSettings, behind_m: float | None = None) -> np.ndarray:
    """The largest part of ``keep`` connected without a depth jump, weighted towards the box's centre; with
    ``behind_m``, among the parts whose median depth lies behind it when there is one of at least MIN_MASK_PIXELS."""
    thr = s.jump_m + s.jump_rel * d
    jump = np.zeros(d.shape, bool)
    dz_x = np.abs(np.diff(d, axis=1)) > thr[:, 1:]
    dz_y = np.abs(np.diff(d, axis=0)) > thr[1:, :]
    jump[:, 1:] |= dz_x
    jump[:, :-1] |= dz_x
    jump[1:, :] |= dz_y
    jump[:-1, :] |= dz_y
    inner = keep & ~jump
    n, labels, stats, centres = cv2.connectedComponentsWithStats(inner.astype(np.uint8), connectivity=4)
    if n <= 1:
        return np.zeros(d.shape, bool)
    h, w = d.shape
    half_diag = 0.5 * np.hypot(h, w)
    dist = np.hypot(centres[1:, 0] - (w - 1) / 2, centres[1:, 1] - (h - 1) / 2) / max(half_diag, 1.0)
    score = stats[1:, cv2.CC_STAT_AREA] * (1.0 - s.centre_weight * np.clip(dist, 0.0, 1.0))
    if behind_m is not None:
        behind = np.asarray(ndimage.median(d, labels, np.arange(1, n))) >= behind_m  # each part's median depth
        if (behind & (stats[1:, cv2.CC_STAT_AREA] >= camera.MIN_MASK_PIXELS)).any():
            score = np.where(behind, score, -1.0)
    part = labels == 1 + int(np.argmax(score))
    # the pixels at the part's depths connected to it are the object's too: the jump pixels (a steep or noisy
    # surface) and pieces cut off by gaps of up to two pixels without depth (a sensor drops depth along a thin or
    # small object's edges: a pen at 50 cm kept 21 of its 44 pixels with depth, below MIN_MASK_PIXELS)
    z_part = np.median(d[part])
    spread = np.percentile(np.abs(d[part] - z_part), 98) + s.jump_m
    near = part | (keep & (np.abs(d - z_part) <= spread))
    gaps = (d <= 0) & cv2.dilate(near.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    _, lab = cv2.connectedComponents((near | gaps).astype(np.uint8), connectivity=8)
    ids = np.unique(lab[part])
    part = np.isin(lab, ids[ids > 0]) & near
    # and the pixels without depth it encloses (holes of a sensor's depth, not the object's own openings)
    outside = np.pad(~part, 1, constant_values=True).astype(np.uint8)
    cv2.floodFill(outside, None, (0, 0), 2)
    holes = (outside[1:-1, 1:-1] == 1) & (d <= 0)
    return part | holes
