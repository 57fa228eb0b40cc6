"""Appearance decides (issue 16): a lighting-robust texture correlation that tells geometric twins apart.

Geometry finds the pose of a (nearly) symmetric shape only up to its twins (180-degree flips, quarter turns,
spins about an axis of revolution); the verifier's colour term counts points that agree in depth *and*
loosely in colour, which rewards the twin with the larger co-visible area. This module scores a pose by how
well the *pattern* matches instead:

- once per reference (``build_appearance``): a dense sample of the reference's masked pixels, at full image
  resolution, as points in the canonical frame C, each with an appearance signal: the grey level, lightly
  smoothed (tolerates a pixel or two of misalignment and resampling) and normalised by the local mean and
  contrast of the object's own pixels (a window that scales with the object's size in the image), so slow
  shading and the light's intensity drop out;
- per query and candidate pose T_query_C (``appearance_scores``, batched): those points are projected into
  the query image; the ones inside the query mask whose depth agrees with the query's depth (the verifier's
  tau band) are co-visible; the score is the zero-mean normalised cross-correlation (ZNCC) of the reference
  and query signals over them, shrunk toward 0 when few points are co-visible (``zncc * n / (n + n0)``), so
  a twin seen over 70x less area cannot win on a lucky handful of pixels, while the size of the overlap
  beyond that does not count.

Pure numpy/OpenCV, no ROS; the estimator's opt-in hook (``EstimatorSettings.appearance_weight``,
``twin_top_k``) uses it.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from one2any_ros.core.camera import backproject, pixel_lookup
from one2any_ros.core.geometry import invert_transform, transform_points
from one2any_ros.core.metrics import rotation_errors_deg


@dataclass(frozen=True)
class AppearanceSettings:
    max_points: int = 4000  # reference pixels sampled (full resolution, evenly over the mask)
    smooth: float = 0.01  # pre-smoothing sigma, x the object's size in pixels (sqrt of mask area); >= 0.7 px
    window: float = 0.10  # local mean / contrast normalisation sigma, x the object's size in pixels. Narrow enough
    # that a turning body's shading (fixed to the light, not the texture) drops out: at 0.15 it pulled tracking's
    # choice toward the pose that lags the turn (docs/tracking.md, "Shading in the appearance signal")
    n0: float = 50.0  # shrinkage: zncc * n / (n + n0), n = co-visible points
    min_points: int = 10  # fewer co-visible points than this: score 0


@dataclass
class AppearanceModel:
    """Per reference: points in C (M,3) metres and their appearance signal (M,) float32."""

    points_C: np.ndarray
    signal: np.ndarray


def appearance_image(rgb: np.ndarray, mask: np.ndarray,
                     settings: AppearanceSettings = AppearanceSettings()) -> np.ndarray:
    """(H,W) float32 lighting-robust signal of the object's pixels (0 outside the mask's box): grey level,
    smoothed, minus the masked local mean, over the masked local standard deviation. Windows scale with the
    object's image size, so a near and a far view of the same texture give the same signal.

    Args:
        rgb: (H, W, 3) uint8 RGB.
        mask: (H, W) bool object mask.
        settings: smoothing and normalisation windows.

    Returns:
        (H, W) float32 normalised signal (about zero-mean, unit contrast); all 0 for an empty mask.
    """
    h, w = mask.shape
    out = np.zeros((h, w), np.float32)
    if not mask.any():
        return out
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    size = float(np.sqrt(mask.sum()))
    pad = int(np.ceil(3 * settings.window * size)) + 2
    r0, r1 = max(0, rows[0] - pad), min(h, rows[-1] + pad + 1)
    c0, c1 = max(0, cols[0] - pad), min(w, cols[-1] + pad + 1)
    g = cv2.cvtColor(np.ascontiguousarray(rgb[r0:r1, c0:c1]), cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    m = mask[r0:r1, c0:c1].astype(np.float32)
    s_sm = max(0.7, settings.smooth * size)
    s_win = max(2.0, settings.window * size)

    weights: dict[float, np.ndarray] = {}  # the mask's own blur, once per sigma (the two window blurs share it)

    def mblur(x: np.ndarray, s: float) -> np.ndarray:  # masked Gaussian mean (background never leaks in)
        if s not in weights:
            weights[s] = np.maximum(cv2.GaussianBlur(m, (0, 0), s), 1e-6)
        return cv2.GaussianBlur(x * m, (0, 0), s) / weights[s]

    gs = mblur(g, s_sm)
    mu = mblur(gs, s_win)
    var = np.maximum(mblur(gs * gs, s_win) - mu * mu, 0.0)
    sig = (gs - mu) / (np.sqrt(var) + 0.02)
    out[r0:r1, c0:c1] = np.where(m > 0, sig, 0.0)
    return out


def build_appearance(rgb: np.ndarray, depth: np.ndarray, mask: np.ndarray, K: np.ndarray, T_cam_C: np.ndarray,
                     settings: AppearanceSettings = AppearanceSettings(), *,
                     seed: int = 0) -> AppearanceModel:
    """The reference's appearance model: up to ``max_points`` masked pixels with depth, as points in C
    (``T_cam_C``: C in that camera), with their signal.

    Args:
        rgb: (H, W, 3) uint8 RGB.
        depth: (H, W) float depth, metres, 0 = invalid.
        mask: (H, W) bool object mask.
        K: (3, 3) intrinsics, pixels.
        T_cam_C: (4, 4) C -> this camera, metres.
        settings: ``max_points`` and the signal's windows.
        seed: seed of the subsample when the mask holds more than ``max_points`` pixels with depth.

    Returns:
        AppearanceModel with points_C (M, 3) float64 metres in C and signal (M,) float32, M <= ``max_points``.
    """
    img = appearance_image(rgb, mask, settings)
    pts, pix = backproject(depth, K, mask)
    if len(pts) > settings.max_points:
        idx = np.sort(np.random.default_rng(seed).choice(len(pts), settings.max_points, replace=False))
        pts, pix = pts[idx], pix[idx]
    return AppearanceModel(points_C=transform_points(invert_transform(T_cam_C), pts),
                           signal=img[pix[:, 0], pix[:, 1]].astype(np.float32))


def reference_appearance(ref, settings: AppearanceSettings = AppearanceSettings()) -> AppearanceModel:
    """``build_appearance`` for a ``reference.Reference``.

    Args:
        ref: a ``reference.Reference`` (its view's rgb, depth, mask, K and ``T_refcam_C``).
        settings: as for ``build_appearance``.

    Returns:
        AppearanceModel: points (M, 3) float64 metres in C, signal (M,) float32.
    """
    v = ref.view
    return build_appearance(v.rgb, v.depth, v.mask, v.K, ref.T_refcam_C, settings)


@dataclass
class AppearanceResult:
    score: np.ndarray  # (B,) shrunk ZNCC, -1..1 (0 = no evidence)
    zncc: np.ndarray  # (B,) raw ZNCC over the co-visible points (0 when too few)
    n: np.ndarray  # (B,) co-visible points


def appearance_scores(model: AppearanceModel, T_query_C: np.ndarray, query_image: np.ndarray,
                      depth: np.ndarray, mask: np.ndarray, K: np.ndarray, tau: float,
                      settings: AppearanceSettings = AppearanceSettings()) -> AppearanceResult:
    """Score poses T_query_C (B,4,4) (or one (4,4)): ZNCC between the reference's signal and the query's
    (``query_image`` = ``appearance_image`` of the query) at the pixels the reference points land on, over
    the points that land inside the query mask with depth within ``tau`` metres of the query's.

    Args:
        model: the reference's ``AppearanceModel`` (M points).
        T_query_C: (B, 4, 4) or (4, 4) float poses, C -> query camera, metres.
        query_image: (H, W) float32 ``appearance_image`` of the query.
        depth: (H, W) float query depth, metres, 0 = invalid.
        mask: (H, W) bool query object mask.
        K: (3, 3) query intrinsics, pixels.
        tau: depth agreement band, metres.
        settings: ``n0`` (shrinkage) and ``min_points``.

    Returns:
        AppearanceResult of (B,) arrays (B = 1 for one pose): score float64 shrunk ZNCC in [-1, 1] (0 = no
        evidence), zncc float64 raw, n int64 co-visible points.
    """
    T = np.asarray(T_query_C, np.float64)
    if T.ndim == 2:
        T = T[None]
    P = transform_points(T, model.points_C)  # (B,M,3)
    z = P[..., 2]
    vi, ui, inside = pixel_lookup(P[..., 0], P[..., 1], z, K, depth.shape)
    flat = vi * depth.shape[1] + ui  # one flat index for the three lookups
    zt = depth.ravel()[flat]
    ok = inside & mask.ravel()[flat] & (zt > 0) & (np.abs(z - zt) < tau)
    w = ok.astype(np.float64)
    wq = w * query_image.ravel()[flat]  # (B,M) the query's signal where co-visible, else 0
    r = model.signal.astype(np.float64)  # (M,) the same for every pose: its sums are one product per pose batch
    n = w.sum(axis=1)
    nn = np.maximum(n, 1.0)
    mr, mq = np.einsum("bm,m->b", w, r) / nn, wq.sum(axis=1) / nn
    # the centred sums from raw ones (both signals are about zero-mean and unit contrast: no cancellation to fear),
    # four passes over (B,M) instead of ten; einsum rather than @, which would wake OpenBLAS's threads (they keep
    # spinning after a call and take the cores from the KD-tree queries that follow: geometry._residuals)
    num = np.einsum("bm,m->b", wq, r) - n * mr * mq
    den = np.sqrt(np.maximum(np.einsum("bm,m->b", w, r * r) - n * mr * mr, 0.0)
                  * np.maximum((wq * wq).sum(axis=1) - n * mq * mq, 0.0))
    zncc = np.where((n >= settings.min_points) & (den > 1e-9), num / np.maximum(den, 1e-12), 0.0)
    score = zncc * n / (n + settings.n0)
    return AppearanceResult(score=score, zncc=zncc, n=n.astype(np.int64))


def margin_factor(scores: np.ndarray, T: np.ndarray, best: int, *, margin: float,
                  min_deg: float = 15.0) -> float:
    """Honest confidence: 1 when no substantially different pose (rotation > ``min_deg`` from the winner)
    scores within ``margin`` of the winner, falling linearly to 0 as such a rival's score reaches the
    winner's. ``margin`` <= 0: always 1.

    Args:
        scores: (B,) float scores of the candidates (non-finite ones are no rivals).
        T: (B, 4, 4) float candidate poses.
        best: index of the winner in ``scores``.
        margin: score gap at which a rival no longer lowers the confidence.
        min_deg: rotation, degrees, beyond which a candidate is a different pose.

    Returns:
        float in [0, 1].
    """
    if margin <= 0 or len(scores) < 2:
        return 1.0
    d = rotation_errors_deg(T[:, :3, :3], T[best, :3, :3])
    rivals = (d > min_deg) & np.isfinite(scores)
    rivals[best] = False
    if not rivals.any():
        return 1.0
    gap = float(scores[best] - scores[rivals].max())
    return float(np.clip(gap / margin, 0.0, 1.0))
