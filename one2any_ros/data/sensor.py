"""The depth camera's sensor model: its range limits and a RealSense/Kinect-like noise on depth and colour.
Pure numpy + OpenCV; every random draw comes from the ``rng`` passed in, so a seed keeps its images."""

from __future__ import annotations

import cv2
import numpy as np

MIN_RANGE_M = 0.1  # sensor minimum range: closer depth reads 0
MAX_RANGE_M = 4.0  # sensor maximum range (and far plane)


def depth_noise_sigma(z: np.ndarray, level: float = 1.0) -> np.ndarray:
    """Axial noise std (m) of a structured-light/stereo sensor at depth z (m): grows ~z² (Nguyen et al.)."""
    return level * (0.0012 + 0.0019 * (z - 0.4) ** 2)


def add_depth_noise(
    depth: np.ndarray,
    rng: np.random.Generator,
    *,
    K: np.ndarray | None = None,
    level: float | None = None,
    min_range: float = MIN_RANGE_M,
    max_range: float = MAX_RANGE_M,
) -> np.ndarray:
    """Return a noisy copy of a clean metric depth map (0 = invalid), RealSense/Kinect-like:
    z²-growing axial noise with a spatially correlated part, jittered and dropped depth edges, a stereo
    shadow band beside foreground edges, grazing-angle and random holes, mm quantisation, range limits.
    ``level`` scales the noise (random in [0.5, 2] if None); pixel sizes follow ``K`` (crops included)."""
    depth = np.asarray(depth, np.float32)
    z = depth.copy()
    h, w = z.shape
    valid = z > 0
    if not valid.any():
        return z
    level = float(rng.uniform(0.5, 2.0)) if level is None else level
    fx = float(K[0, 0]) if K is not None else 600.0
    px = float(np.clip(fx / 600.0, 0.25, 4.0))  # sensor artefact size in this image's pixels (crops scale it)
    sig = depth_noise_sigma(z, level)
    low = cv2.resize(
        rng.normal(0, 1, (max(h // 16, 2), max(w // 16, 2))).astype(np.float32),
        (w, h),
        interpolation=cv2.INTER_LINEAR,
    )
    z = z + sig * (0.8 * _normals(rng, z.shape) + 0.6 * low)
    edge = _jitter_edges(z, depth, valid, rng, px)
    if rng.random() < 0.6:
        _stereo_shadow(z, depth, valid, rng, fx)
    # grazing angles: surfaces seen edge-on return nothing
    gz_u = cv2.Sobel(depth, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gz_v = cv2.Sobel(depth, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    slope = np.sqrt(gz_u**2 + gz_v**2) * fx / np.maximum(depth, 1e-3)  # dz per metre laterally
    graze = valid & ~edge & (slope > rng.uniform(2.5, 5.0)) & (_normals(rng, z.shape) < 0.52)  # p = 0.7
    z[graze] = 0
    _random_holes(z, rng, px)
    z = np.round(z * 1000.0) / 1000.0
    z[~valid | (z < min_range) | (z > max_range)] = 0
    return z.astype(np.float32)


def _jitter_edges(z: np.ndarray, depth: np.ndarray, valid: np.ndarray, rng: np.random.Generator,
                  px: float) -> np.ndarray:
    """Depth discontinuities, in place in ``z``: jitter (lateral noise) and drop some edge pixels.
    Returns the (H,W) bool edge mask (grazing-angle holes spare it)."""
    h, w = z.shape
    k3 = np.ones((3, 3), np.uint8)
    zmax = cv2.dilate(depth, k3)
    zmin = cv2.erode(np.where(valid, depth, 1e3).astype(np.float32), k3)
    edge = valid & ((zmax - zmin) > 0.02 + 0.02 * depth)
    if edge.any():
        band = cv2.dilate(edge.astype(np.uint8), k3, iterations=max(1, int(round(px)))).astype(bool) & valid
        vv, uu = np.nonzero(band)
        dv = np.clip(vv + rng.integers(-1, 2, len(vv)), 0, h - 1)
        du = np.clip(uu + rng.integers(-1, 2, len(uu)), 0, w - 1)
        z[vv, uu] = z[dv, du]
        z[vv, uu] *= valid[dv, du]
        drop = rng.random(len(vv)) < rng.uniform(0.1, 0.5)
        z[vv[drop], uu[drop]] = 0
    return edge


def _stereo_shadow(z: np.ndarray, depth: np.ndarray, valid: np.ndarray, rng: np.random.Generator, fx: float) -> None:
    """In place in ``z``: background pixels left of a foreground edge are seen by one imager only."""
    w = z.shape[1]
    baseline = float(rng.uniform(0.015, 0.055))
    disp = np.where(valid, fx * baseline / np.maximum(depth, 1e-3), 0).astype(np.float32)
    shadow = np.zeros_like(valid)
    max_shift = int(min(np.ceil(disp.max() - disp[valid].min()), w // 4, 64))
    for s in range(1, max_shift + 1):
        shadow[:, :-s] |= (disp[:, s:] - disp[:, :-s]) > s
    z[shadow] = 0


def _random_holes(z: np.ndarray, rng: np.random.Generator, px: float) -> None:
    """In place in ``z``: random small holes (dark or specular patches)."""
    h, w = z.shape
    for _ in range(int(rng.poisson(1.5))):
        c = (int(rng.integers(w)), int(rng.integers(h)))
        ax = (max(1, int(rng.uniform(1, 6) * px)), max(1, int(rng.uniform(1, 6) * px)))
        hole = np.zeros((h, w), np.uint8)
        cv2.ellipse(hole, c, ax, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        z[hole.astype(bool)] = 0


def _normal_bank() -> np.ndarray:
    """2^21 standard normals (float32), made once: slices of it are the per-pixel noise (drawing a new
    normal per pixel costs ~10 ms at 640x480; a random slice is as good for sensor noise)."""
    global _BANK
    if _BANK is None:
        _BANK = np.random.default_rng(20240601).standard_normal(1 << 21, dtype=np.float32)
    return _BANK


_BANK: np.ndarray | None = None


def _normals(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    n = int(np.prod(shape))
    bank = _normal_bank()
    if n > len(bank) // 2:
        return rng.standard_normal(shape, dtype=np.float32)
    start = int(rng.integers(0, len(bank) - n))
    out = bank[start : start + n].reshape(shape)
    return out if rng.random() < 0.5 else -out


def add_rgb_noise(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sensor noise, slight blur and exposure/white-balance jitter."""
    gain = (rng.uniform(0.85, 1.15) * rng.uniform(0.93, 1.07, 3)).astype(np.float32)
    img = cv2.multiply(
        rgb.astype(np.float32), cv2.merge([np.full(rgb.shape[:2], g, np.float32) for g in gain])
    )
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.3, 0.9)))
    img += _normals(rng, img.shape) * np.float32(rng.uniform(1.0, 4.0)) + np.float32(rng.uniform(-10, 10))
    return np.clip(img, 0, 255).astype(np.uint8)
