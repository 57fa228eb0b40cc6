"""Camera model: intrinsics, depth decoding/validation, back-projection and projection.

Frames: REP-103 optical (x right, y down, z forward). Units: metres. Pixels: (u, v) = (column, row),
pixel centres at integer coordinates (OpenCV convention).
"""
from __future__ import annotations

import cv2
import numpy as np

from one2any_ros.core.errors import InputError

MIN_MASK_PIXELS = 30  # fewer valid object pixels than this cannot support a 6D fit


def validate_intrinsics(K: np.ndarray | None) -> np.ndarray:
    """Return K as a (3,3) float64 array, or raise InputError if it is missing, non-finite or singular."""
    if K is None:
        raise InputError("camera intrinsics K are missing", reason="missing_camera_info")
    K = np.asarray(K, dtype=np.float64)
    if K.size == 9:
        K = K.reshape(3, 3)
    if K.shape != (3, 3):
        raise InputError(f"intrinsics K must be 3x3, got shape {K.shape}", reason="bad_intrinsics")
    if not np.all(np.isfinite(K)):
        raise InputError("intrinsics K contain NaN/inf", reason="bad_intrinsics")
    fx, fy = K[0, 0], K[1, 1]
    if fx <= 1e-6 or fy <= 1e-6 or abs(np.linalg.det(K)) < 1e-9:
        raise InputError(f"intrinsics K are singular (fx={fx}, fy={fy})", reason="bad_intrinsics")
    return K


def decode_depth(depth: np.ndarray, *, depth_scale_m: float | None = None, encoding: str | None = None) -> np.ndarray:
    """Decode a depth image to float32 metres with invalid pixels (0, NaN, inf, negative) set to 0.

    ``encoding``: ``16UC1``/``mono16`` (millimetres), ``32FC1`` (metres), or None to infer from the dtype
    (uint16 -> millimetres, float -> metres). ``depth_scale_m`` overrides the unit: metres per raw unit
    (BOP: ``depth_scale`` mm per unit -> depth_scale / 1000).
    """
    depth = np.asarray(depth)
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[..., 0]
    if depth.ndim != 2 or depth.size == 0:
        raise InputError(f"depth must be a 2-D image, got shape {depth.shape}", reason="bad_depth_shape")
    if encoding is not None:
        enc = encoding.upper()
        if enc in ("16UC1", "MONO16"):
            if depth.dtype != np.uint16:
                raise InputError(f"depth encoding {encoding} needs uint16 data, got {depth.dtype}", reason="bad_depth_encoding")
        elif enc == "32FC1":
            if depth.dtype != np.float32:
                raise InputError(f"depth encoding {encoding} needs float32 data, got {depth.dtype}", reason="bad_depth_encoding")
        else:
            raise InputError(f"unsupported depth encoding '{encoding}' (use 16UC1 mm or 32FC1 m)", reason="bad_depth_encoding")
    if depth.dtype == np.uint16 or depth.dtype == np.int32 or depth.dtype == np.uint32:
        scale = 1e-3 if depth_scale_m is None else float(depth_scale_m)
        out = depth.astype(np.float32) * np.float32(scale)
    elif depth.dtype in (np.float32, np.float64, np.float16):
        scale = 1.0 if depth_scale_m is None else float(depth_scale_m)
        with np.errstate(over="ignore", invalid="ignore"):  # beyond float32: inf, made invalid (0) below
            out = depth.astype(np.float32) * np.float32(scale)
    else:
        raise InputError(f"unsupported depth dtype {depth.dtype} (use uint16 mm or float32 m)", reason="bad_depth_encoding")
    out[~np.isfinite(out) | (out < 0)] = 0.0
    return out


def single_channel(image: np.ndarray, what: str = "mask") -> np.ndarray:
    """The image as a 2-D array ((H,W,1) squeezed); InputError(reason="bad_mask_shape") otherwise."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim != 2 or a.size == 0:
        raise InputError(f"{what} must be a 2-D image, got shape {a.shape}", reason="bad_mask_shape")
    return a


def decode_mask(mask: np.ndarray) -> np.ndarray:
    """Return the mask as a 2-D bool array (non-zero = object)."""
    mask = single_channel(mask)
    if mask.dtype == bool:
        return mask
    if not (np.issubdtype(mask.dtype, np.integer) or np.issubdtype(mask.dtype, np.floating)):
        raise InputError(f"unsupported mask dtype {mask.dtype}", reason="bad_mask_encoding")
    return np.nan_to_num(mask) != 0


def decode_rgb(rgb: np.ndarray) -> np.ndarray:
    """Return an (H,W,3) uint8 RGB image (grey images are replicated)."""
    rgb = np.asarray(rgb)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    if rgb.ndim != 3 or rgb.shape[2] not in (3, 4) or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise InputError(f"rgb must be (H,W,3), got shape {rgb.shape}", reason="bad_rgb_shape")
    rgb = rgb[..., :3]
    if rgb.dtype != np.uint8:
        if np.issubdtype(rgb.dtype, np.floating):
            rgb = np.clip(np.nan_to_num(rgb) * (255.0 if rgb.max(initial=0) <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        elif rgb.dtype == np.uint16:
            rgb = (rgb >> 8).astype(np.uint8)
        else:
            raise InputError(f"unsupported rgb dtype {rgb.dtype}", reason="bad_rgb_encoding")
    return np.ascontiguousarray(rgb)


def pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(u, v) float32 grids of shape (H, W)."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    return u, v


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(r0, r1, c0, c1): the rows r0:r1 and columns c0:c1 that hold every True pixel of a (H,W) bool mask (None when
    it is empty). Per-object work indexes inside this box instead of scanning the whole frame: an object is a few
    per cent of a 640x480 image, and a full-frame ``np.nonzero`` costs more than the rest of its back-projection."""
    m = np.ascontiguousarray(mask if mask.dtype == bool else mask != 0)
    c0, r0, w, h = cv2.boundingRect(m.view(np.uint8))
    return None if w == 0 else (r0, r0 + h, c0, c0 + w)


def backproject(depth_m: np.ndarray, K: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Back-project valid depth pixels to 3D camera points.

    Returns ``(points (N,3) float64 m in the camera frame, pixel indices (N,2) int as (v, u))``, in row-major
    pixel order. A pixel is used when depth > 0 and (mask is None or mask[v, u]).
    """
    box = (0, depth_m.shape[0], 0, depth_m.shape[1]) if mask is None else mask_box(mask)
    if box is None:
        return np.zeros((0, 3)), np.zeros((0, 2), np.int64)
    r0, r1, c0, c1 = box
    valid = depth_m[r0:r1, c0:c1] > 0
    if mask is not None:
        valid &= mask[r0:r1, c0:c1]
    v, u = np.nonzero(valid)
    v, u = v + r0, u + c0
    z = depth_m[v, u].astype(np.float64)
    x = (u - K[0, 2]) * z / K[0, 0]
    y = (v - K[1, 2]) * z / K[1, 1]
    return np.stack([x, y, z], axis=1), np.stack([v, u], axis=1)


def depth_to_xyz_image(depth_m: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(H,W,3) float32 camera-frame points for every pixel (zeros where depth is invalid)."""
    h, w = depth_m.shape
    u, v = pixel_grid(h, w)
    z = depth_m.astype(np.float32)
    x = (u - np.float32(K[0, 2])) * z / np.float32(K[0, 0])
    y = (v - np.float32(K[1, 2])) * z / np.float32(K[1, 1])
    return np.stack([x, y, z], axis=-1)


def project(points: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project (..., 3) camera points to pixels. Returns (uv (...,2) float, z (...)). z <= 0 gives NaN uv."""
    z = points[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        zs = np.where(z > 1e-9, z, np.nan)
        u = K[0, 0] * points[..., 0] / zs + K[0, 2]
        v = K[1, 1] * points[..., 1] / zs + K[1, 2]
    return np.stack([u, v], axis=-1), z


def pixel_lookup(x: np.ndarray, y: np.ndarray, z: np.ndarray, K: np.ndarray, shape: tuple[int, ...]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pixel each camera point (x, y, z: same-shaped arrays, metres) falls in, rounded to the nearest centre,
    for reading images there. Returns (rows, cols, inside): int64 indices that are safe to use everywhere (0 where
    the point is behind the camera or off the image) and the bool mask of the points that really land inside."""
    h, w = shape[:2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.rint(K[0, 0] * x / z + K[0, 2])
        v = np.rint(K[1, 1] * y / z + K[1, 2])
    inside = (z > 1e-6) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    return np.where(inside, v, 0).astype(np.int64), np.where(inside, u, 0).astype(np.int64), inside


def crop_box(mask: np.ndarray, *, pad: float = 1.2) -> tuple[int, int, int]:
    """The crop rule (fixed: the network is trained on it): a square box centred on the mask's
    bounding box, side = ``pad`` x the larger bbox side. Returns (u0, v0, side) in pixels; it may extend
    past the image (callers pad with zeros)."""
    v, u = np.nonzero(mask)
    if v.size == 0:
        raise InputError("mask is empty", reason="empty_mask")
    cu = 0.5 * (u.min() + u.max())
    cv = 0.5 * (v.min() + v.max())
    side = max(int(np.ceil(pad * max(u.max() - u.min() + 1, v.max() - v.min() + 1))), 8)
    return int(round(cu - side / 2)), int(round(cv - side / 2)), side


def object_depth_mask(depth_m: np.ndarray, K: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mask pixels whose depth belongs to the object: valid, and in the depth cluster around the median.

    Segmenter masks bleed over object edges onto the background (and thin objects are mostly edge), so a
    few per cent of "object" pixels can carry depth metres behind the object; they would wreck the
    reference's centroid and scale. The cluster is the run of sorted depths around the median whose gaps
    stay below max(1.5 cm, half the object's lateral radius), then bounded in 3D by 4 lateral radii.
    """
    out = np.zeros(mask.shape, bool)
    box = mask_box(mask)
    if box is None:
        return out
    r0, r1, c0, c1 = box
    v, u = np.nonzero(mask[r0:r1, c0:c1] & (depth_m[r0:r1, c0:c1] > 0))
    v, u = v + r0, u + c0
    if v.size < 3:
        out[v, u] = True
        return out
    z = depth_m[v, u].astype(np.float64)
    z_med = float(np.median(z))
    (u2, u98), (v2, v98) = np.percentile(u, (2, 98)), np.percentile(v, (2, 98))
    ext_u, ext_v = u98 - u2 + 1, v98 - v2 + 1
    r_lat = 0.5 * np.hypot(ext_u / K[0, 0], ext_v / K[1, 1]) * z_med
    gap = max(0.015, 0.5 * r_lat)
    zs = np.sort(z)
    i_med = int(np.searchsorted(zs, z_med))
    breaks = np.nonzero(np.diff(zs) > gap)[0]  # zs[b] -> zs[b+1] is a gap
    lo_b = breaks[breaks < i_med]
    hi_b = breaks[breaks >= i_med]
    z_lo = zs[lo_b[-1] + 1] if lo_b.size else zs[0]
    z_hi = zs[hi_b[0]] if hi_b.size else zs[-1]
    keep = (z >= z_lo) & (z <= z_hi)
    x = (u - K[0, 2]) * z / K[0, 0]
    y = (v - K[1, 2]) * z / K[1, 1]
    # per coordinate on 1-D arrays: the same numbers as a median and norm over (N,3) rows, ~3x faster
    dx, dy, dz = (a - np.median(a[keep]) for a in (x, y, z))
    keep &= np.sqrt(dx * dx + dy * dy + dz * dz) < 4.0 * max(r_lat, 0.01)
    out[v[keep], u[keep]] = True
    return out
