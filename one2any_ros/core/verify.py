"""The one hypothesis scorer every backend's proposals go through (docs/architecture.md, One frame).

For a hypothesis T_query_C it checks, in both directions, that the two views agree:
- reference -> query: the reference cloud placed by T and projected into the query camera should land
  on the query's object surface (|dz| < tau inside the mask) and never in front of what the query camera
  sees (free space: closer than the observed depth by more than tau, inside or outside the mask);
- query -> reference: the query cloud mapped back into the reference camera, the same tests.
Points hidden behind an observed surface (self-occlusion, occluders) are neutral, so partial overlap
is not punished. With a learned backend, the predicted ROC adds an agreement term: the query points
mapped by T into C (divided by the scale) should match the network's ROC — the term that separates
near-symmetric flips that depth and silhouette cannot. (The learned backend's second term, its hypothesis
scorer, is added to the few refined candidates only: ``Backend.candidate_term``, docs/hypothesis_scorer.md.)
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from one2any_ros.core.camera import pixel_lookup
from one2any_ros.core.colour import colour_features
from one2any_ros.core.geometry import invert_transform, transform_points


@dataclass(frozen=True)
class VerifierWeights:
    """score = agree * depth agreement + colour * (depth and colour agreement) - violation * free space.

    Tuned on validation objects (never the test split): a symmetric shape fits its own visible surface
    best at the wrong spin (front onto front, full overlap), while the true pose of a view 90 deg away
    overlaps half; only the texture says so. So only points that agree in depth *and* colour count
    (agree 0, colour 1): it picked the right pose most often (docs/architecture.md, Choices measured in the
    code, "Counting depth *and* colour agreement").
    """

    tau: float = 0.03  # depth agreement band, x object diameter (docs/architecture.md, Learning) ...
    tau_min_m: float = 0.008  # ... but never tighter than depth noise (RGB-D at ~1 m: a few mm)
    agree: float = 0.0  # weight of depth agreement alone
    colour: float = 1.0  # weight of agreement in depth and colour
    violation: float = 2.0  # weight of free-space violations
    roc: float = 1.0  # weight of the learned ROC agreement term (when present)
    roc_tau: float = 0.15  # ROC agreement band, reference-radius units
    colour_tau: float = 0.12  # chromaticity + brightness distance band


@dataclass
class DepthTarget:
    """What one camera saw, prepared once: depth (H,W) m, mask (H,W) bool, K (3,3), rgb features."""

    depth: np.ndarray
    mask: np.ndarray
    K: np.ndarray
    colour: np.ndarray  # (H,W,3) float32 normalised colour features
    near_depth: np.ndarray  # (H,W) nearest valid depth in a small window (0 = none): the free-space test


@dataclass
class VerifyResult:
    score: np.ndarray  # (B,) higher is better
    confidence: np.ndarray  # (B,) 0..1
    agree: np.ndarray  # (B,) mean agreement fraction of the two directions
    violation: np.ndarray  # (B,) mean free-space violation fraction

    def __add__(self, other: "VerifyResult") -> "VerifyResult":
        """The two batches' results one after the other (as if verified in one batch: each pose is scored alone)."""
        return VerifyResult(*(np.concatenate([a, b]) for a, b in zip(
            (self.score, self.confidence, self.agree, self.violation),
            (other.score, other.confidence, other.agree, other.violation))))


def near_depth(depth: np.ndarray, *, window: int = 5) -> np.ndarray:
    """(H,W) nearest valid depth in a ``window`` x ``window`` neighbourhood (0 = none): the free-space test's
    view of a frame. It depends on the depth alone, so several objects in one frame share it.

    Args:
        depth: (H, W) float depth, metres, 0 = invalid.
        window: side of the square neighbourhood, pixels.

    Returns:
        (H, W) float32 nearest valid depth, metres, 0 where the window holds no valid depth.
    """
    far = np.where(depth > 0, depth, np.float32(np.inf)).astype(np.float32, copy=False)
    near = cv2.erode(far, np.ones((window, window), np.uint8))
    near[~np.isfinite(near)] = 0.0
    return near


def make_target(depth: np.ndarray, mask: np.ndarray, K: np.ndarray, rgb: np.ndarray, *, window: int = 5,
                near: np.ndarray | None = None) -> DepthTarget:
    """Prepare a camera's observation once. The free-space test uses the nearest depth in a small window:
    a point counts as seen-through only if it is in front of every surface around its pixel, so a pose a
    pixel off at a depth edge (or a mask bleeding onto the background) is not punished. ``near``: that
    frame's ``near_depth`` when already computed (other objects of the same frame).

    Args:
        depth: (H, W) float depth, metres, 0 = invalid.
        mask: (H, W) bool object mask.
        K: (3, 3) intrinsics, pixels.
        rgb: (H, W, 3) uint8 RGB.
        window: ``near_depth``'s window, pixels (ignored when ``near`` is given).
        near: (H, W) float32 ``near_depth(depth)`` of this frame, or None to compute it.

    Returns:
        DepthTarget holding the arrays as given plus (H, W, 3) float32 ``colour_features`` and the near depth.
    """
    near = near_depth(depth, window=window) if near is None else near
    return DepthTarget(depth=depth, mask=mask, K=K, colour=colour_features(rgb, mask), near_depth=near)


def _check_against(points_cam: np.ndarray, colours: np.ndarray | None, target: DepthTarget, tau: float, colour_tau: float):
    """points_cam (B,M,3) in the target camera. Returns agree, violation, colour-agree fractions (B,)."""
    z = points_cam[..., 2]
    vi, ui, inside = pixel_lookup(points_cam[..., 0], points_cam[..., 1], z, target.K, target.depth.shape)
    zt = target.depth[vi, ui]
    zn = target.near_depth[vi, ui]
    mt = target.mask[vi, ui]
    has = inside & (zt > 0)
    agree = has & mt & (np.abs(z - zt) < tau)
    # free space: in front of every surface the target camera observed around that pixel (inside the
    # mask or not). Where the target has no depth (dropouts, beyond range) nothing is known: neutral.
    viol = inside & (zn > 0) & (z < zn - tau)
    M = points_cam.shape[1]
    col = np.zeros(points_cam.shape[0])
    if colours is not None:
        ct = target.colour[vi, ui]
        close = np.linalg.norm(ct - colours[None], axis=2) < colour_tau
        col = (agree & close).sum(axis=1) / M
    return agree.sum(axis=1) / M, viol.sum(axis=1) / M, col


def verify(
    T_query_C: np.ndarray,
    *,
    ref_points_C: np.ndarray,
    ref_colours: np.ndarray | None,
    ref_target: DepthTarget,
    T_refcam_C: np.ndarray,
    query_points: np.ndarray,
    query_colours: np.ndarray | None,
    query_target: DepthTarget,
    diameter: float,
    weights: VerifierWeights = VerifierWeights(),
    roc_pred: np.ndarray | None = None,
    roc_weight: np.ndarray | None = None,
    scale: float = 1.0,
) -> VerifyResult:
    """Score hypotheses T_query_C (B,4,4).

    ref_points_C (M,3) m in C with colours (M,3) features; query_points (N,3) m in the query camera with
    colours (N,3); roc_pred (N,3) the network's ROC for those query points with weights (N,) 0..1.

    Args:
        T_query_C: (B, 4, 4) float hypotheses, C -> query camera, metres.
        ref_points_C: (M, 3) float reference points in C, metres.
        ref_colours: (M, 3) float32 ``colour_features`` of those points, or None (no colour term).
        ref_target: the reference camera's ``make_target``.
        T_refcam_C: (4, 4) C -> reference camera, metres.
        query_points: (N, 3) float query object points in the query camera, metres.
        query_colours: (N, 3) float32 ``colour_features`` of those points, or None.
        query_target: the query camera's ``make_target``.
        diameter: object diameter, metres (the depth band is ``weights.tau`` x diameter, at least ``tau_min_m``).
        weights: the score's weights and bands.
        roc_pred: (N, 3) float the network's ROC for the query points, reference-radius units, or None.
        roc_weight: (N,) float weights in [0, 1] of those predictions; None = all 1.
        scale: the ROC's scale, metres per ROC unit (query points in C are divided by it).

    Returns:
        VerifyResult of (B,) float64 arrays: score (higher is better), confidence in [0, 1], agreement and
        free-space violation fractions averaged over the two directions.
    """
    tau = max(weights.tau * diameter, weights.tau_min_m)
    a_fw, v_fw, c_fw = _check_against(transform_points(T_query_C, ref_points_C), ref_colours, query_target, tau, weights.colour_tau)
    T_refcam_query = T_refcam_C[None] @ invert_transform(T_query_C)
    a_bw, v_bw, c_bw = _check_against(transform_points(T_refcam_query, query_points), query_colours, ref_target, tau, weights.colour_tau)
    agree = 0.5 * (a_fw + a_bw)
    viol = 0.5 * (v_fw + v_bw)
    colour = 0.5 * (c_fw + c_bw)
    score = weights.agree * agree + weights.colour * colour - weights.violation * viol
    confidence = np.clip(agree - viol, 0.0, 1.0)
    if roc_pred is not None:
        q_C = transform_points(invert_transform(T_query_C), query_points) / scale  # (B,N,3) ROC under T
        wr = np.ones(len(query_points)) if roc_weight is None else roc_weight
        ok = np.linalg.norm(q_C - roc_pred[None], axis=2) < weights.roc_tau
        roc_agree = (ok * wr[None]).sum(axis=1) / max(wr.sum(), 1e-9)
        score = score + weights.roc * roc_agree
        confidence = np.clip(0.5 * confidence + 0.5 * roc_agree, 0.0, 1.0)
    return VerifyResult(score=score, confidence=confidence, agree=agree, violation=viol)
