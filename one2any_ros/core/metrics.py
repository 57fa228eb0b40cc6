"""Pose-error metrics: ADD, ADD-S, rotation/translation error, 5°5cm, recall-vs-threshold AUC.

Pure numpy (scipy: cKDTree for ADD-S, Rotation for continuous symmetries). Conventions, as in the rest of the
library (docs/architecture.md, Conventions):
- poses are (4,4) float64 ``T_cam_obj`` (object frame -> camera frame), metres;
- model points are ``pts (N,3)`` metres in the object frame;
- errors are metres and degrees; a failed estimate is an infinite error (BOP / YCB-Video convention).

Symmetries come from BOP ``models_info.json`` (millimetres): ``symmetries_discrete`` is a list of 4x4
row-major transforms, ``symmetries_continuous`` a list of ``{"axis": [3], "offset": [3] mm}``.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from one2any_ros.core.geometry import rotation_angle_deg, transform_points
from one2any_ros.core.protocol import is_hit

DEFAULT_AUC_MAX_THRESHOLD = 0.10  # metres: the YCB-Video ADD(-S) AUC integrates recall over 0..10 cm
_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 (a ROS distro's python3-numpy) has only trapz


def _pose(T: np.ndarray, name: str) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise ValueError(f"{name} must be a (4,4) transform, got shape {T.shape}")
    return T


def _points(pts: np.ndarray) -> np.ndarray:
    pts = np.asarray(pts, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) == 0:
        raise ValueError(f"pts must be a non-empty (N,3) array, got shape {pts.shape}")
    return pts


def _moved(T: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """(N,3) points moved by a (4,4) transform, both checked (geometry.transform_points does the moving)."""
    return transform_points(_pose(T, "T"), _points(pts))


def add(T_est: np.ndarray, T_gt: np.ndarray, pts: np.ndarray) -> float:
    """ADD: mean distance between model points moved by the estimate and by the ground truth (asymmetric objects).

    Args:
        T_est: (4, 4) estimated T_cam_obj, metres.
        T_gt: (4, 4) true T_cam_obj, metres.
        pts: (N, 3) model points, metres, object frame.

    Returns:
        The mean distance, metres.
    """
    d = _moved(T_est, pts) - _moved(T_gt, pts)
    return float(np.linalg.norm(d, axis=1).mean())


def add_s(T_est: np.ndarray, T_gt: np.ndarray, pts: np.ndarray) -> float:
    """ADD-S: mean distance from each estimated model point to the closest ground-truth model point.

    Symmetry-agnostic, so the score of symmetric objects (a KD-tree: O(N log N)).

    Args:
        T_est: (4, 4) estimated T_cam_obj, metres.
        T_gt: (4, 4) true T_cam_obj, metres.
        pts: (N, 3) model points, metres, object frame.

    Returns:
        The mean closest-point distance, metres.
    """
    p_gt = _moved(T_gt, pts)
    p_est = _moved(T_est, pts)
    dist, _ = cKDTree(p_gt).query(p_est, k=1)
    return float(np.mean(dist))


def rotation_error_deg(R_est: np.ndarray, R_gt: np.ndarray) -> float:
    """Angle of the relative rotation R_est^T R_gt (``geometry.rotation_angle_deg``: accurate near 0 and 180 deg).

    Args:
        R_est: (3, 3) estimated rotation, or a (4, 4) pose.
        R_gt: (3, 3) true rotation, or a (4, 4) pose.

    Returns:
        Degrees in [0, 180].
    """
    return float(rotation_errors_deg(np.asarray(R_est, np.float64)[None, :3, :3], np.asarray(R_gt, np.float64)[:3, :3])[0])


def rotation_errors_deg(R_est: np.ndarray, R_gt: np.ndarray) -> np.ndarray:
    """Vectorised ``rotation_error_deg``: the angle of ``R_est^T R_gt`` (``geometry.rotation_angle_deg``).

    Args:
        R_est: (K, 3, 3) estimated rotations.
        R_gt: (3, 3) or (K, 3, 3) true rotations.

    Returns:
        (K,) float64 degrees in [0, 180].

    Raises:
        ValueError: an input that is not (..., 3, 3).
    """
    R_est = np.asarray(R_est, np.float64)
    R_gt = np.asarray(R_gt, np.float64)
    if R_est.shape[-2:] != (3, 3) or R_gt.shape[-2:] != (3, 3):
        raise ValueError(f"rotations must be (...,3,3), got {R_est.shape} and {R_gt.shape}")
    return rotation_angle_deg(np.swapaxes(R_est, -1, -2) @ R_gt)


def translation_error(t_est: np.ndarray, t_gt: np.ndarray) -> float:
    """Euclidean distance between two translations.

    Args:
        t_est: (3,) estimated translation, metres (or any unit shared with ``t_gt``).
        t_gt: (3,) true translation.

    Returns:
        The distance, in the inputs' unit.

    Raises:
        ValueError: an input without exactly 3 elements.
    """
    t_est = np.asarray(t_est, np.float64).reshape(-1)
    t_gt = np.asarray(t_gt, np.float64).reshape(-1)
    if t_est.shape != (3,) or t_gt.shape != (3,):
        raise ValueError(f"translations must have 3 elements, got {t_est.shape} and {t_gt.shape}")
    return float(np.linalg.norm(t_est - t_gt))


def add_s_01d_hit(err: float, diameter: float) -> bool:
    """The BOP/LINEMOD "ADD(-S) @ 0.1d" criterion (``protocol.is_hit``, its one home): err < 0.1 * diameter.

    Args:
        err: ADD or ADD-S error; infinite or NaN (a failed estimate) is a miss.
        diameter: object diameter, in the unit of ``err`` (e.g. metres).

    Returns:
        True for a hit.
    """
    return bool(is_hit(float(err), float(diameter)))


def recall_curve(
    errors: Iterable[float], max_threshold: float = DEFAULT_AUC_MAX_THRESHOLD, steps: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """Recall (fraction of errors < threshold) at ``steps + 1`` thresholds evenly spaced in [0, max_threshold].

    Args:
        errors: (N,) per-query errors, metres; inf/NaN = failure.
        max_threshold: the largest threshold, metres.
        steps: intervals between thresholds.

    Returns:
        (thresholds, recall): (steps + 1,) float64 metres and (steps + 1,) float64 in [0, 1] (all 0 for no errors).
    """
    e = _errors(errors)
    thr = np.linspace(0.0, float(max_threshold), int(steps) + 1)
    if e.size == 0:
        return thr, np.zeros_like(thr)
    return thr, (e[None, :] < thr[:, None]).mean(axis=1)


def auc(errors: Iterable[float], max_threshold: float = DEFAULT_AUC_MAX_THRESHOLD, steps: int | None = None) -> float:
    """Area under the recall-vs-threshold curve over [0, max_threshold], normalised to [0, 1].

    The YCB-Video (PoseCNN) ADD / ADD-S AUC with the 10 cm default. errors (m); inf/NaN = failure
    (contributes 0). ``steps=None`` integrates the step-function curve exactly: each query contributes
    max(0, 1 - e / max_threshold). An integer ``steps`` uses the trapezoid rule over ``recall_curve``
    instead (what plots show). An empty list gives 0.

    Args:
        errors: (N,) per-query errors, metres; inf/NaN = failure.
        max_threshold: the curve's end, metres, > 0.
        steps: None (exact) or the trapezoid rule's intervals.

    Returns:
        float in [0, 1].

    Raises:
        ValueError: ``max_threshold`` <= 0 (with errors given).
    """
    e = _errors(errors)
    if e.size == 0:
        return 0.0
    if max_threshold <= 0:
        raise ValueError("max_threshold must be positive")
    if steps is None:
        with np.errstate(invalid="ignore"):
            contrib = np.clip(1.0 - e / float(max_threshold), 0.0, 1.0)
        return float(np.where(np.isfinite(e), contrib, 0.0).mean())
    thr, rec = recall_curve(e, max_threshold, steps)
    return float(_trapezoid(rec, thr) / float(max_threshold))


def recall_5deg_5cm(rot_err_deg: float | Iterable[float], trans_err_m: float | Iterable[float]) -> float:
    """Fraction of queries with rotation error < 5° and translation error < 5 cm (strict, like 0.1d).

    Args:
        rot_err_deg: scalar or (N,) rotation errors, degrees; failures (180°, inf, NaN) are misses.
        trans_err_m: scalar or (N,) translation errors, metres, the same length.

    Returns:
        float in [0, 1]; 0 for empty input.

    Raises:
        ValueError: the two differ in length.
    """
    r = np.atleast_1d(np.asarray(rot_err_deg, np.float64))
    t = np.atleast_1d(np.asarray(trans_err_m, np.float64))
    if r.shape != t.shape:
        raise ValueError(f"rotation and translation errors differ in length: {r.shape} vs {t.shape}")
    if r.size == 0:
        return 0.0
    with np.errstate(invalid="ignore"):
        ok = (r < 5.0) & (t < 0.05)
    return float(ok.mean())


def _errors(errors: Iterable[float]) -> np.ndarray:
    e = np.asarray(list(errors) if not isinstance(errors, np.ndarray) else errors, dtype=np.float64).reshape(-1)
    return np.where(np.isnan(e), np.inf, e)


# --- symmetries --------------------------------------------------------------------------------------

def symmetry_transforms(info: Mapping | None, *, continuous_steps: int = 360) -> np.ndarray:
    """Symmetry transforms S (object frame -> object frame) of a BOP model, in metres. Returns (K,4,4).

    Always includes the identity. Discrete symmetries are combined with each continuous one sampled at
    ``continuous_steps`` angles over 360° (identity included), as bop_toolkit's ``get_symmetry_transformations``
    does. A pose T and T @ S look the same.

    Args:
        info: one ``models_info.json`` entry (``symmetries_discrete``: row-major 4x4 lists, translation in mm;
            ``symmetries_continuous``: ``{"axis": [3], "offset": [3] mm}``), or None (asymmetric).
        continuous_steps: samples of each continuous symmetry over 360°.

    Returns:
        (K, 4, 4) float64 transforms, metres: K = 1 + number of discrete ones, times ``continuous_steps`` per
        continuous one.
    """
    disc = [np.eye(4)]
    for sym in (info or {}).get("symmetries_discrete", []) or []:
        S = np.asarray(sym, np.float64).reshape(4, 4).copy()
        S[:3, 3] *= 1e-3
        S[3] = (0.0, 0.0, 0.0, 1.0)
        if not np.allclose(S, np.eye(4), atol=1e-9):
            disc.append(S)
    cont = []
    for sym in (info or {}).get("symmetries_continuous", []) or []:
        axis = np.asarray(sym["axis"], np.float64)
        axis = axis / np.linalg.norm(axis)
        offset = np.asarray(sym.get("offset", (0.0, 0.0, 0.0)), np.float64) * 1e-3
        for R in Rotation.from_rotvec(np.linspace(0.0, 2.0 * np.pi, int(continuous_steps), endpoint=False)[:, None]
                                      * axis).as_matrix():
            S = np.eye(4)
            S[:3, :3] = R
            S[:3, 3] = offset - R @ offset  # rotation about the axis through ``offset``
            cont.append(S)
    if not cont:
        return np.stack(disc)
    return np.stack([C @ D for D in disc for C in cont])


def pose_error_sym(T_est: np.ndarray, T_gt: np.ndarray, syms: np.ndarray | None = None) -> tuple[float, float]:
    """Rotation and translation error of T_est against the closest symmetric twin T_gt @ S.

    S is chosen by the smallest rotation error (ties: smallest translation error).

    Args:
        T_est: (4, 4) estimated T_cam_obj, metres.
        T_gt: (4, 4) true T_cam_obj, metres.
        syms: (K, 4, 4) object-frame symmetries from ``symmetry_transforms``; None = asymmetric (identity only).

    Returns:
        (rotation error in degrees, translation error in metres).
    """
    T_est = _pose(T_est, "T_est")
    T_gt = _pose(T_gt, "T_gt")
    if syms is None or len(syms) == 0:
        syms = np.eye(4)[None]
    T_cand = T_gt[None] @ np.asarray(syms, np.float64)
    rot = rotation_errors_deg(np.broadcast_to(T_est[:3, :3], T_cand[:, :3, :3].shape), T_cand[:, :3, :3])
    tra = np.linalg.norm(T_cand[:, :3, 3] - T_est[:3, 3], axis=1)
    i = int(np.lexsort((tra, np.round(rot, 9)))[0])
    return float(rot[i]), float(tra[i])


def rotation_error_sym_deg(R_est: np.ndarray, R_gt: np.ndarray, syms: np.ndarray | None = None) -> float:
    """The least rotation error over the object's symmetries: min over S of rotation_error_deg(R_est, R_gt S_R).

    Args:
        R_est: (3, 3) estimated rotation (or a (4, 4) pose).
        R_gt: (3, 3) true rotation (or a (4, 4) pose).
        syms: (K, 4, 4) object-frame symmetries; None = asymmetric.

    Returns:
        Degrees in [0, 180].
    """
    R_gt = np.asarray(R_gt, np.float64)[:3, :3]
    if syms is None or len(syms) == 0:
        return rotation_error_deg(R_est, R_gt)
    cand = R_gt[None] @ np.asarray(syms, np.float64)[:, :3, :3]
    R_est = np.asarray(R_est, np.float64)[:3, :3]
    return float(rotation_errors_deg(np.broadcast_to(R_est, cand.shape), cand).min())


# --- how well a confidence ranks right poses above wrong ones -------------------------------------------------

def _scored(confidence: Iterable[float], right: Iterable[bool]) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(list(confidence), np.float64)
    y = np.asarray(list(right), bool)
    if c.shape != y.shape:
        raise ValueError(f"{c.size} confidences for {y.size} outcomes")
    keep = np.isfinite(c)
    return c[keep], y[keep]


def confidence_auroc(confidence: Iterable[float], right: Iterable[bool]) -> float | None:
    """Area under the ROC curve of ``confidence`` as a detector of right poses: the chance that a random right
    pose has a higher confidence than a random wrong one (ties count half). None without both kinds.
    (The Mann-Whitney U statistic through scipy's ranks; scikit-learn is not a dependency.)

    Args:
        confidence: (N,) float confidences; non-finite ones are left out.
        right: (N,) bool whether each pose is right.

    Returns:
        float in [0, 1], or None.

    Raises:
        ValueError: the two differ in length.
    """
    from scipy.stats import rankdata

    c, y = _scored(confidence, right)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(c)  # average ranks for ties
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def precision_at_recall(confidence: Iterable[float], right: Iterable[bool], recall: float = 0.8) -> tuple[float | None, float | None]:
    """(precision, threshold): keep poses with confidence >= the highest threshold that keeps ``recall`` of the
    right poses; precision = right share of the kept. A grasping pipeline's view: what thresholding buys.

    Args:
        confidence: (N,) float confidences; non-finite ones are left out.
        right: (N,) bool whether each pose is right.
        recall: the share of right poses to keep, in (0, 1].

    Returns:
        (precision in [0, 1], confidence threshold), or (None, None) without a right pose.

    Raises:
        ValueError: the two differ in length.
    """
    c, y = _scored(confidence, right)
    n_pos = int(y.sum())
    if n_pos == 0:
        return None, None
    thr = float(np.sort(c[y])[::-1][int(np.ceil(recall * n_pos)) - 1])  # the k-th highest right confidence
    kept = c >= thr
    return float(y[kept].mean()), thr


def reliability_bins(confidence: Iterable[float], right: Iterable[bool], bins: int = 10) -> dict:
    """Per confidence bin of [0, 1]: count, mean confidence and share of right poses (a reliability diagram).

    Args:
        confidence: (N,) float confidences in [0, 1]; non-finite ones are left out, others clipped into the end bins.
        right: (N,) bool whether each pose is right.
        bins: equal-width bins over [0, 1].

    Returns:
        dict: "edges" (bins + 1 floats), and per bin "n" (int), "mean_confidence" and "right_share" (float, None
        for an empty bin).

    Raises:
        ValueError: the two differ in length.
    """
    c, y = _scored(confidence, right)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(c, edges[1:-1]), 0, bins - 1)
    out = {"edges": edges.tolist(), "n": [], "mean_confidence": [], "right_share": []}
    for b in range(bins):
        m = idx == b
        out["n"].append(int(m.sum()))
        out["mean_confidence"].append(float(c[m].mean()) if m.any() else None)
        out["right_share"].append(float(y[m].mean()) if m.any() else None)
    return out
