"""Rigid geometry: transforms, weighted Umeyama, RANSAC, batched multi-start ICP, rotation grids.

All transforms are (4,4) float64 arrays; points are (N,3) metres. Batched functions take a leading batch
dimension B. Nearest neighbours use scipy's cKDTree (no O(N^2)).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree


def make_transform(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(...,3,3), (...,3) -> (...,4,4)."""
    R = np.asarray(R, dtype=np.float64)
    T = np.zeros(R.shape[:-2] + (4, 4))
    T[..., :3, :3] = R
    T[..., :3, 3] = t
    T[..., 3, 3] = 1.0
    return T


def invert_transform(T: np.ndarray) -> np.ndarray:
    """Inverse of rigid (...,4,4) transforms."""
    R = T[..., :3, :3]
    t = T[..., :3, 3]
    Rt = np.swapaxes(R, -1, -2)
    return make_transform(Rt, -np.einsum("...ij,...j->...i", Rt, t))


def transform_points(T: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply (4,4) to (N,3) -> (N,3), or (B,4,4) to (N,3)/(B,N,3) -> (B,N,3)."""
    R = T[..., :3, :3]
    t = T[..., :3, 3]
    if T.ndim == 2:
        return pts @ R.T + t
    # matmul, not einsum: for hundreds of small (3,3) products numpy's stacked matmul is ~6x faster (measured
    # here: 0.24 vs 2.1 ms for 100 hypotheses x 150 points), and the multi-start ICP calls this every step
    return pts @ np.swapaxes(R, -1, -2) + t[:, None, :]


def is_rigid(T: np.ndarray, *, tol: float = 1e-3) -> bool:
    """True for a finite real (4,4) rotation + translation (orthonormal, det +1, last row 0 0 0 1) within
    ``tol``: datasets store rotations with 6-8 digits, which must still pass (see ``orthonormalize``)."""
    T = np.asarray(T)
    if T.shape != (4, 4) or not np.issubdtype(T.dtype, np.number) or np.iscomplexobj(T):
        return False
    T = T.astype(np.float64)
    if not np.all(np.isfinite(T)):
        return False
    R = T[:3, :3]
    return bool(np.allclose(R @ R.T, np.eye(3), atol=tol) and np.linalg.det(R) > 0 and np.allclose(T[3], [0, 0, 0, 1]))


def orthonormalize(T: np.ndarray) -> np.ndarray:
    """The nearest proper rotation (SVD projection) with the same translation: rounding in files removed."""
    U, _, Vt = np.linalg.svd(T[:3, :3])
    out = np.array(T, dtype=np.float64, copy=True)
    out[:3, :3] = U @ np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))]) @ Vt
    out[3] = [0.0, 0.0, 0.0, 1.0]
    return out


def rotation_angle_deg(R: np.ndarray) -> np.ndarray:
    """Rotation angle(s) of (...,3,3) matrices in degrees, in [0, 180]."""
    tr = np.trace(R, axis1=-2, axis2=-1)
    return np.degrees(np.arccos(np.clip((tr - 1.0) / 2.0, -1.0, 1.0)))


def umeyama_batched(src: np.ndarray, dst: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """Weighted least-squares rigid fit (Umeyama 1991 without scale) for each batch element.

    src, dst: (B,N,3) corresponding points; w: (B,N) non-negative weights (None = uniform).
    Returns T (B,4,4) with dst ~ R src + t. Batches with (near) zero total weight return identity.
    Written by hand because it must run batched over hundreds of hypotheses at once (no library does).
    """
    B, N, _ = src.shape
    if w is None:
        w = np.ones((B, N))
    wsum = w.sum(axis=1, keepdims=True)  # (B,1)
    ok = wsum[:, 0] > 1e-12
    wn = w / np.where(wsum > 1e-12, wsum, 1.0)
    mu_s = (wn[:, None, :] @ src)[:, 0]  # stacked matmul rather than einsum: several times faster here
    mu_d = (wn[:, None, :] @ dst)[:, 0]
    S = np.swapaxes((dst - mu_d[:, None]) * wn[:, :, None], 1, 2) @ (src - mu_s[:, None])  # (B,3,3) cross-covariance
    U, _, Vt = np.linalg.svd(S)
    d = np.sign(np.linalg.det(U @ Vt))
    D = np.zeros((B, 3, 3))
    D[:, 0, 0] = 1.0
    D[:, 1, 1] = 1.0
    D[:, 2, 2] = np.where(d == 0, 1.0, d)
    R = U @ D @ Vt
    t = mu_d - (R @ mu_s[:, :, None])[:, :, 0]
    T = make_transform(R, t)
    T[~ok] = np.eye(4)
    return T


def umeyama(src: np.ndarray, dst: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """Weighted rigid fit of (N,3) -> (N,3); returns (4,4) with dst ~ R src + t."""
    return umeyama_batched(src[None], dst[None], None if w is None else w[None])[0]


@dataclass
class RansacResult:
    T: np.ndarray  # (4,4)
    inliers: np.ndarray  # (N,) bool
    num_inliers: int
    rmse: float  # RMS residual of the inliers, metres


def ransac_rigid(
    src: np.ndarray,
    dst: np.ndarray,
    w: np.ndarray | None = None,
    *,
    threshold: float,
    iterations: int = 256,
    rng: np.random.Generator | None = None,
    refine_rounds: int = 2,
) -> RansacResult:
    """Robust rigid fit of correspondences src (N,3) -> dst (N,3) with optional confidences w (N,).

    Minimal 3-point samples (drawn with probability proportional to w) are all fitted at once; the
    hypothesis with the largest weighted inlier count (residual < threshold, metres — callers pass a
    fraction of the object scale) is refitted with weighted Umeyama on its inliers.
    """
    return ransac_rigid_thresholds(src, dst, w, thresholds=(threshold,), iterations=iterations, rng=rng,
                                   refine_rounds=refine_rounds)[0]


def ransac_rigid_thresholds(
    src: np.ndarray,
    dst: np.ndarray,
    w: np.ndarray | None = None,
    *,
    thresholds: tuple[float, ...],
    iterations: int = 256,
    rng: np.random.Generator | None = None,
    refine_rounds: int = 2,
) -> list[RansacResult]:
    """``ransac_rigid`` at several inlier thresholds from ONE set of minimal samples: the samples, their fits
    and residuals (the cost) are shared, only the vote and the refit differ. One result per threshold."""
    n = len(src)
    if n < 3:
        raise ValueError(f"RANSAC needs >= 3 correspondences, got {n}")
    rng = rng or np.random.default_rng(0)
    w = np.ones(n) if w is None else np.clip(np.asarray(w, dtype=np.float64), 0.0, None)
    p = w / w.sum() if w.sum() > 0 else None
    idx = np.stack([rng.choice(n, 3, replace=False, p=p) for _ in range(iterations)]) if n <= 64 else \
        rng.choice(n, size=(iterations, 3), p=p)
    Ts = umeyama_batched(src[idx], dst[idx])
    res = np.linalg.norm(transform_points(Ts, src) - dst[None], axis=2)  # (I,N)
    out = []
    for threshold in thresholds:
        score = ((res < threshold) * w[None]).sum(axis=1)
        best = int(np.argmax(score))
        inl = res[best] < threshold
        T = Ts[best]
        for _ in range(refine_rounds):
            if inl.sum() < 3:
                break
            T = umeyama(src[inl], dst[inl], w[inl])
            inl = np.linalg.norm(transform_points(T, src) - dst, axis=1) < threshold
        r = np.linalg.norm(transform_points(T, src) - dst, axis=1)
        rmse = float(np.sqrt(np.mean(r[inl] ** 2))) if inl.any() else float("inf")
        out.append(RansacResult(T=T, inliers=inl, num_inliers=int(inl.sum()), rmse=rmse))
    return out


def super_fibonacci_rotations(n: int) -> np.ndarray:
    """n near-uniformly spread rotations (n,3,3) by Alexa's super-Fibonacci spirals (CVPR 2022).

    Written by hand: scipy only offers random or group rotations, not a uniform deterministic grid.
    """
    phi = np.sqrt(2.0)
    psi = 1.533751168755204288118041
    i = np.arange(n, dtype=np.float64) + 0.5
    s = i / n
    r = np.sqrt(s)
    R_ = np.sqrt(1.0 - s)
    alpha = 2.0 * np.pi * i / phi
    beta = 2.0 * np.pi * i / psi
    q = np.stack([r * np.sin(alpha), r * np.cos(alpha), R_ * np.sin(beta), R_ * np.cos(beta)], axis=1)  # (x,y,z,w)
    from scipy.spatial.transform import Rotation

    return Rotation.from_quat(q).as_matrix()


@dataclass
class IcpResult:
    T: np.ndarray  # (B,4,4) refined transforms (src -> dst frame)
    fitness: np.ndarray  # (B,) fraction of src points with a neighbour within the final threshold
    rmse: np.ndarray  # (B,) RMS distance of those inliers, metres


# KD-tree queries of at least this many points use all cores (cKDTree workers; exact, so the result is the same).
# Measured with `one2any bench` on 2 cores: the classic global search 224 ms at 8192 (the 5 refined candidates,
# 4000 queries, and the 50 pruned starts, 7500, stayed on one core), 171-176 ms at 1024-2048, 178 ms at 256.
PARALLEL_MIN_QUERIES = 1024


def icp_batched(
    src: np.ndarray,
    dst_tree: cKDTree,
    T0: np.ndarray,
    *,
    thresholds: tuple[float, ...],
    iterations: int = 8,
    min_inlier_frac: float = 0.05,
    workers: int = -1,
    src_feat: np.ndarray | None = None,
    prune_to: int | None = None,
    eps: float = 0.0,
) -> IcpResult:
    """Point-to-point ICP from many starts at once (trimmed by a distance threshold stepped coarse to fine).

    src (M,3): points to move (e.g. the reference cloud in C); dst_tree: KD-tree of the target points
    (e.g. the query cloud in the query camera); T0 (B,4,4) initial src->dst transforms; thresholds:
    inlier distances in metres, each used for ``iterations`` steps. Point-to-point rather than
    point-to-plane: point-to-plane was measured diverging from 25-35 deg off, useless for multi-start
    (docs/architecture.md, Learning).
    With ``src_feat`` (M,F) the tree holds (3+F)-dim points [xyz, features] (coloured ICP in the spirit of
    Park et al. 2017): neighbours are chosen by position and colour, which gives shapes with a symmetry
    (bottles, boxes) a pull towards the texture-consistent pose; the fit itself uses positions only.
    ``prune_to``: after the first (coarsest) threshold keep only that many starts, those with the most
    inliers; starts that found no surface by then rarely win and cost as much as the rest.
    ``eps``: approximate neighbours (cKDTree's eps: within (1 + eps) x the true nearest distance), which
    prunes the 6-D coloured search hard; a multi-start search that only has to land near the right pose
    before the exact refinement loses nothing by it.
    """
    T = np.array(T0, dtype=np.float64, copy=True)
    B, M = T.shape[0], src.shape[0]
    dst = dst_tree.data[:, :3]
    feat = None if src_feat is None else np.broadcast_to(src_feat, (B,) + src_feat.shape).reshape(B * M, -1)

    def query(X: np.ndarray, thr: float):
        q = X.reshape(-1, 3) if feat is None else np.concatenate([X.reshape(-1, 3), feat], axis=1)
        # threads pay off only for big batches: below PARALLEL_MIN_QUERIES their start-up costs more than the search
        return dst_tree.query(q, k=1, eps=eps, workers=workers if len(q) >= PARALLEL_MIN_QUERIES else 1,
                              distance_upper_bound=thr)

    for stage, thr in enumerate(thresholds):
        if stage == 1 and prune_to is not None and prune_to < B:
            d, _ = query(transform_points(T, src), thr)
            keep = np.argsort(-np.isfinite(d.reshape(B, M)).sum(axis=1), kind="stable")[:prune_to]
            T, B = T[keep], prune_to
            if feat is not None:
                feat = feat[: B * M]
        for _ in range(iterations):
            X = transform_points(T, src)  # (B,M,3)
            d, j = query(X, thr)
            d = d.reshape(B, M)
            inl = np.isfinite(d)
            j = np.where(inl.reshape(-1), j, 0).reshape(B, M)
            enough = inl.sum(axis=1) >= max(3, int(min_inlier_frac * M))
            dT = umeyama_batched(X, dst[j], inl.astype(np.float64))
            dT[~enough] = np.eye(4)
            T = dT @ T
    X = transform_points(T, src)
    d, _ = query(X, thresholds[-1])
    d = d.reshape(B, M)
    inl = np.isfinite(d)
    fitness = inl.mean(axis=1)
    with np.errstate(invalid="ignore"):
        rmse = np.sqrt(np.where(inl, d, 0.0).__pow__(2).sum(axis=1) / np.maximum(inl.sum(axis=1), 1))
    rmse[~inl.any(axis=1)] = np.inf
    return IcpResult(T=T, fitness=fitness, rmse=rmse)


def subsample(pts: np.ndarray, n: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Sorted indices of at most ``n`` of ``pts`` (N,3): all of them when N <= n, else a uniform random draw
    without replacement (``rng``, default seeded 0, so the same call gives the same subset)."""
    if len(pts) <= n:
        return np.arange(len(pts))
    rng = rng or np.random.default_rng(0)
    return np.sort(rng.choice(len(pts), n, replace=False))
