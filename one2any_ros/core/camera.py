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
    """The intrinsics checked once at the edge, so the library can trust them.

    Args:
        K: (3, 3) pinhole intrinsics (fx, fy, cx, cy, skew), pixels.

    Returns:
        (3, 3) float64 K.

    Raises:
        InputError: K missing, non-finite or singular.
    """
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
    with np.errstate(over="ignore"):  # a K whose determinant overflows is no camera's: rejected below
        det = np.linalg.det(K)
    if fx <= 1e-6 or fy <= 1e-6 or not np.isfinite(det) or abs(det) < 1e-9:
        raise InputError(f"intrinsics K are singular or out of range (fx={fx}, fy={fy})", reason="bad_intrinsics")
    return K


def decode_depth(depth: np.ndarray, *, depth_scale_m: float | None = None, encoding: str | None = None) -> np.ndarray:
    """Decode a depth image to float32 metres with invalid pixels (0, NaN, inf, negative) set to 0.

    Args:
        depth: (H, W) raw depth image.
        depth_scale_m: metres per raw unit, overriding the encoding (BOP: ``depth_scale`` mm per unit ->
            depth_scale / 1000).
        encoding: ``16UC1``/``mono16`` (millimetres), ``32FC1`` (metres), or None to infer from the dtype
            (uint16 -> millimetres, float -> metres).

    Returns:
        (H, W) float32 depth, metres, 0 = invalid.
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
    """The image as a 2-D array: a (H, W, 1) image squeezed.

    Args:
        image: (H, W) or (H, W, 1) array, not empty.
        what: what the image is, for the error message.

    Returns:
        (H, W) array.

    Raises:
        InputError: reason "bad_mask_shape" for any other shape.
    """
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim != 2 or a.size == 0:
        raise InputError(f"{what} must be a 2-D image, got shape {a.shape}", reason="bad_mask_shape")
    return a


def decode_mask(mask: np.ndarray) -> np.ndarray:
    """The mask as a 2-D bool array (non-zero = object).

    Args:
        mask: (H, W) or (H, W, 1) array of any dtype.

    Returns:
        (H, W) bool.
    """
    mask = single_channel(mask)
    if mask.dtype == bool:
        return mask
    if not (np.issubdtype(mask.dtype, np.integer) or np.issubdtype(mask.dtype, np.floating)):
        raise InputError(f"unsupported mask dtype {mask.dtype}", reason="bad_mask_encoding")
    return np.nan_to_num(mask) != 0


def decode_rgb(rgb: np.ndarray) -> np.ndarray:
    """The colour image in the one form the library uses.

    Args:
        rgb: (H, W, 3) RGB or (H, W, 4) RGBA (alpha dropped), or (H, W) grey (replicated); uint8, uint16
            (high byte kept) or float (in [0, 1] scaled to 255).

    Returns:
        (H, W, 3) uint8 RGB, C-contiguous.

    Raises:
        InputError: another shape ("bad_rgb_shape") or dtype ("bad_rgb_encoding").
    """
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
    """Pixel coordinate grids (pixel centres at integers, OpenCV).

    Args:
        height: H, pixels.
        width: W, pixels.

    Returns:
        (u, v): (H, W) float32 column and row coordinates.
    """
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    return u, v


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """The rows and columns that hold every True pixel of a mask.

    Per-object work indexes inside this box instead of scanning the whole frame: an object is a few per cent
    of a 640x480 image, and a full-frame ``np.nonzero`` costs more than the rest of its back-projection.

    Args:
        mask: (H, W) bool.

    Returns:
        (r0, r1, c0, c1): rows r0:r1 and columns c0:c1; None when the mask is empty.
    """
    m = np.ascontiguousarray(mask if mask.dtype == bool else mask != 0)
    c0, r0, w, h = cv2.boundingRect(m.view(np.uint8))
    return None if w == 0 else (r0, r0 + h, c0, c0 + w)


def backproject(depth_m: np.ndarray, K: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Back-project valid depth pixels to 3D camera points.

    Args:
        depth_m: (H, W) float depth, metres, 0 = invalid.
        K: (3, 3) intrinsics.
        mask: (H, W) bool; None = every pixel. A pixel is used when depth > 0 and mask[v, u].

    Returns:
        (points, pixels): (N, 3) float64 metres in the camera frame and (N, 2) int (v, u), row-major order.
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
    """Camera-frame points for every pixel, as an image.

    Args:
        depth_m: (H, W) float depth, metres, 0 = invalid.
        K: (3, 3) intrinsics.

    Returns:
        (H, W, 3) float32 metres in the camera frame; zeros where depth is invalid.
    """
    h, w = depth_m.shape
    u, v = pixel_grid(h, w)
    z = depth_m.astype(np.float32)
    x = (u - np.float32(K[0, 2])) * z / np.float32(K[0, 0])
    y = (v - np.float32(K[1, 2])) * z / np.float32(K[1, 1])
    return np.stack([x, y, z], axis=-1)


def project(points: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project camera points to pixels.

    Args:
        points: (..., 3) points, metres, camera frame.
        K: (3, 3) intrinsics.

    Returns:
        (uv, z): (..., 2) float pixel coordinates (NaN where z <= 0) and (...,) depths, metres.
    """
    z = points[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        zs = np.where(z > 1e-9, z, np.nan)
        u = K[0, 0] * points[..., 0] / zs + K[0, 2]
        v = K[1, 1] * points[..., 1] / zs + K[1, 2]
    return np.stack([u, v], axis=-1), z


def pixel_lookup(x: np.ndarray, y: np.ndarray, z: np.ndarray, K: np.ndarray, shape: tuple[int, ...]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pixel each camera point falls in, rounded to the nearest centre, for reading images there.

    Args:
        x, y, z: same-shaped (...) arrays, the points' camera coordinates, metres.
        K: (3, 3) intrinsics.
        shape: the image's shape, (H, W, ...).

    Returns:
        (rows, cols, inside): (...) int64 indices that are safe to use everywhere (0 where the point is behind
        the camera or off the image) and the (...) bool mask of the points that really land inside.
    """
    h, w = shape[:2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.rint(K[0, 0] * x / z + K[0, 2])
        v = np.rint(K[1, 1] * y / z + K[1, 2])
    inside = (z > 1e-6) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    return np.where(inside, v, 0).astype(np.int64), np.where(inside, u, 0).astype(np.int64), inside


def crop_box(mask: np.ndarray, *, pad: float = 1.2) -> tuple[int, int, int]:
    """The crop rule (fixed: the network is trained on it): a square box centred on the mask's bounding box.

    Args:
        mask: (H, W) bool, not empty.
        pad: side = ``pad`` x the larger bounding-box side.

    Returns:
        (u0, v0, side), pixels; the box may extend past the image (callers pad with zeros).
    """
    box = mask_box(mask)
    if box is None:
        raise InputError("mask is empty", reason="empty_mask")
    r0, r1, c0, c1 = box  # the mask's first and one-past-last rows and columns
    cu = 0.5 * (c0 + c1 - 1)
    cv = 0.5 * (r0 + r1 - 1)
    side = max(int(np.ceil(pad * max(c1 - c0, r1 - r0))), 8)
    return int(round(cu - side / 2)), int(round(cv - side / 2)), side


def object_depth_mask(depth_m: np.ndarray, K: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mask pixels whose depth belongs to the object: valid, and in the depth cluster around the median.

    Segmenter masks bleed over object edges onto the background (and thin objects are mostly edge), so a
    few per cent of "object" pixels can carry depth metres behind the object; they would wreck the
    reference's centroid and scale. The cluster is the run of sorted depths around the median whose gaps
    stay below max(1.5 cm, half the object's lateral radius), then bounded in 3D by 4 lateral radii.

    Args:
        depth_m: (H, W) float depth, metres, 0 = invalid.
        K: (3, 3) intrinsics.
        mask: (H, W) bool, the segmenter's object pixels.

    Returns:
        (H, W) bool, a subset of ``mask``.
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
