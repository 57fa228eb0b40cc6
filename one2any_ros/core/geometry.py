"""Rigid geometry: transforms, weighted Umeyama, RANSAC, batched multi-start ICP, rotation grids.

All transforms are (4,4) float64 arrays; points are (N,3) metres. Batched functions take a leading batch
dimension B. Nearest neighbours use scipy's cKDTree (no O(N^2)).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import numpy as np
from scipy.spatial import cKDTree

from one2any_ros.core import icp_kernels
from one2any_ros.core.query_threads import PARALLEL_MIN_QUERIES


def make_transform(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Stack rotations and translations into homogeneous transforms.

    Args:
        R: (..., 3, 3) rotations.
        t: (..., 3) translations, metres.

    Returns:
        (..., 4, 4) float64 transforms ``[R t; 0 0 0 1]``.
    """
    R = np.asarray(R, dtype=np.float64)
    T = np.zeros(R.shape[:-2] + (4, 4))
    T[..., :3, :3] = R
    T[..., :3, 3] = t
    T[..., 3, 3] = 1.0
    return T


def invert_transform(T: np.ndarray) -> np.ndarray:
    """Inverse of rigid transforms in closed form (``R^T, -R^T t``), cheaper and exacter than ``np.linalg.inv``.

    Args:
        T: (..., 4, 4) rigid transforms ``T_a_b``.

    Returns:
        (..., 4, 4) float64 ``T_b_a``.
    """
    R = T[..., :3, :3]
    t = T[..., :3, 3]
    Rt = np.swapaxes(R, -1, -2)
    return make_transform(Rt, -np.einsum("...ij,...j->...i", Rt, t))


def transform_points(T: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Map points through one transform or a batch of them.

    Args:
        T: (4, 4) or (B, 4, 4) transforms ``T_to_from``.
        pts: (N, 3) points in the ``from`` frame, metres; with a batch of T also (B, N, 3).

    Returns:
        (N, 3) for one T, (B, N, 3) for a batch: the points in the ``to`` frame.
    """
    R = T[..., :3, :3]
    t = T[..., :3, 3]
    if T.ndim == 2:
        return pts @ R.T + t
    # stacked matmul, not einsum: several times faster for hundreds of small (3,3) products, and the multi-start
    # ICP calls this every step (docs/architecture.md, Choices measured in the code)
    return pts @ np.swapaxes(R, -1, -2) + t[:, None, :]


def is_rigid(T: np.ndarray, *, tol: float = 1e-3) -> bool:
    """Whether ``T`` is a finite real rotation + translation (orthonormal, det +1, last row 0 0 0 1).

    Tolerant because datasets store rotations with 6-8 digits, which must still pass (see ``orthonormalize``).

    Args:
        T: any array; a rigid transform is (4, 4).
        tol: absolute tolerance on ``R R^T = I`` and the last row.

    Returns:
        True when ``T`` is rigid within ``tol``.
    """
    T = np.asarray(T)
    if T.shape != (4, 4) or not np.issubdtype(T.dtype, np.number) or np.iscomplexobj(T):
        return False
    T = T.astype(np.float64)
    if not np.all(np.isfinite(T)):
        return False
    R = T[:3, :3]
    return bool(np.allclose(R @ R.T, np.eye(3), atol=tol) and np.linalg.det(R) > 0 and np.allclose(T[3], [0, 0, 0, 1]))


def orthonormalize(T: np.ndarray) -> np.ndarray:
    """The nearest rigid transform: rounding in files removed, so products of many stay rigid.

    Args:
        T: (4, 4) nearly rigid transform.

    Returns:
        (4, 4) float64 with the nearest proper rotation (SVD projection), the same translation and the
        last row 0 0 0 1.
    """
    U, _, Vt = np.linalg.svd(T[:3, :3])
    out = np.array(T, dtype=np.float64, copy=True)
    out[:3, :3] = U @ np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))]) @ Vt
    out[3] = [0.0, 0.0, 0.0, 1.0]
    return out


def rotation_angle_deg(R: np.ndarray) -> np.ndarray:
    """The angle of rotations: the one home of the formula (the angle between two rotations A and B is
    ``rotation_angle_deg(A.T @ B)``; ``metrics.rotation_errors_deg`` and ``data.poses.rotation_angle`` use it).

    ``atan2(sin, cos)`` from the trace and the antisymmetric part, not ``arccos`` of the trace: accurate
    near 0 and 180 deg alike, where arccos loses half the digits.

    Args:
        R: (..., 3, 3) rotation matrices.

    Returns:
        (...,) float64 angles in degrees, in [0, 180] (a 0-d array for one matrix).
    """
    R = np.asarray(R, np.float64)
    cos = 0.5 * (np.trace(R, axis1=-2, axis2=-1) - 1.0)
    w = np.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], axis=-1)
    sin = 0.5 * np.linalg.norm(w, axis=-1)
    return np.degrees(np.arctan2(sin, cos))


def umeyama_batched(src: np.ndarray, dst: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """Weighted least-squares rigid fit (Umeyama 1991 without scale) for each batch element.

    Written by hand because it must run batched over hundreds of hypotheses at once (no library does).

    Args:
        src: (B, N, 3) points to move, metres.
        dst: (B, N, 3) corresponding target points, metres.
        w: (B, N) non-negative weights; None = uniform.

    Returns:
        (B, 4, 4) transforms T with ``dst ~ R src + t``; identity where the total weight is (near) zero.
    """
    B, N, _ = src.shape
    if w is None:
        w = np.ones((B, N))
    if icp_kernels.AVAILABLE:  # compiled: one pass per problem, Horn's closed form (the same fit to ~1e-12 m)
        f64 = np.float64
        return icp_kernels.weighted_fits(np.ascontiguousarray(src, f64), np.ascontiguousarray(dst, f64),
                                         np.ascontiguousarray(w, f64))
    wsum = w.sum(axis=1)
    ok = wsum > 1e-12
    wn = w / np.where(ok, wsum, 1.0)[:, None]
    mu_s = (wn[:, None, :] @ src)[:, 0]  # stacked matmul rather than einsum: several times faster here
    mu_d = (wn[:, None, :] @ dst)[:, 0]
    # cross-covariance sum_n w_n d_n s_n^T - mu_d mu_s^T, not sum_n w_n (d_n - mu_d)(s_n - mu_s)^T: the same matrix to
    # ~1e-13 relative for objects in front of a camera, without two (B,N,3) subtractions broadcast over their last axis
    # of 3 (numpy's slowest case): the fit 0.15 -> 0.09 ms for 6 starts x 800 points, 0.56 -> 0.39 ms for 100 x 150
    S = (np.swapaxes(dst, 1, 2) * wn[:, None, :]) @ src - mu_d[:, :, None] * mu_s[:, None, :]  # (B,3,3)
    U, _, Vt = np.linalg.svd(S)
    R = U @ Vt
    flip = np.linalg.det(R) < 0  # a reflection: the rotation nearest to it turns the weakest direction back
    if flip.any():
        U[flip, :, 2] *= -1.0
        R[flip] = U[flip] @ Vt[flip]
    t = mu_d - (R @ mu_s[:, :, None])[:, :, 0]
    T = make_transform(R, t)
    T[~ok] = np.eye(4)
    return T


def umeyama(src: np.ndarray, dst: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """``umeyama_batched`` for one problem.

    Args:
        src: (N, 3) points to move, metres.
        dst: (N, 3) corresponding target points, metres.
        w: (N,) non-negative weights; None = uniform.

    Returns:
        (4, 4) transform with ``dst ~ R src + t``.
    """
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
    """Robust rigid fit of correspondences with optional confidences.

    Minimal 3-point samples (drawn with probability proportional to w) are all fitted at once; the
    hypothesis with the largest weighted inlier count is refitted with weighted Umeyama on its inliers.

    Args:
        src: (N, 3) points to move, metres (N >= 3).
        dst: (N, 3) corresponding target points, metres.
        w: (N,) non-negative confidences; None = uniform.
        threshold: inlier residual, metres (callers pass a fraction of the object scale).
        iterations: number of minimal samples.
        rng: random generator (default seeded 0).
        refine_rounds: refits on the inliers.

    Returns:
        A ``RansacResult``: T (4, 4), inliers (N,) bool, their count and RMS residual (metres).

    Raises:
        ValueError: fewer than 3 correspondences.
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
    and residuals (the cost) are shared, only the vote and the refit differ.

    Args:
        src, dst, w, iterations, rng, refine_rounds: as in ``ransac_rigid``.
        thresholds: inlier residuals, metres.

    Returns:
        One ``RansacResult`` per threshold, in order.

    Raises:
        ValueError: fewer than 3 correspondences.
    """
    n = len(src)
    if n < 3:
        raise ValueError(f"RANSAC needs >= 3 correspondences, got {n}")
    rng = rng or np.random.default_rng(0)
    w = np.ones(n) if w is None else np.clip(np.asarray(w, dtype=np.float64), 0.0, None)
    p = w / w.sum() if w.sum() > 0 else None
    idx = np.stack([rng.choice(n, 3, replace=False, p=p) for _ in range(iterations)]) if n <= 64 else \
        rng.choice(n, size=(iterations, 3), p=p)
    Ts = umeyama_batched(src[idx], dst[idx])
    res = _residuals(Ts, src, dst)  # (I,N)
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


def _residuals(T: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(I,N) distances |R_i src_n + t_i - dst_n| for I transforms and N correspondences, by one matrix product:
    |Rp + t - q|^2 = |p|^2 + |t - q|^2 + 2 (R^T t).p - 2 vec(R).vec(q p^T). A batch of (I,N,3) moved points cost ~9
    of RANSAC's ~17 ms here (600 correspondences); the product's rounding (~1e-8 m on a distance near 0, at half a
    metre from the camera) is far below any inlier threshold."""
    if icp_kernels.AVAILABLE:  # compiled: each distance directly, no (I,N,3) batch and no product's rounding
        f64 = np.float64
        return icp_kernels.residuals(np.ascontiguousarray(T, f64), np.ascontiguousarray(src, f64),
                                     np.ascontiguousarray(dst, f64))
    R, t = T[:, :3, :3], T[:, :3, 3]
    left = np.concatenate([R.reshape(len(T), 9), (np.swapaxes(R, 1, 2) @ t[:, :, None])[:, :, 0], t], axis=1)  # (I,15)
    right = np.concatenate([-2.0 * (dst[:, :, None] * src[:, None, :]).reshape(len(src), 9).T,
                            2.0 * src.T, -2.0 * dst.T], axis=0)  # (15,N)
    # einsum, not @: a product this size runs on OpenBLAS's threads, which keep spinning after it and took the cores
    # from the next KD-tree queries (the multi-start ICP: 88 -> 132 ms on the bundled sample); einsum stays on this
    # thread
    sq = np.einsum("ik,kn->in", left, right) + ((src * src).sum(axis=1) + (dst * dst).sum(axis=1))[None] \
        + (t * t).sum(axis=1)[:, None]
    return np.sqrt(np.maximum(sq, 0.0))


def super_fibonacci_rotations(n: int) -> np.ndarray:
    """Near-uniformly spread rotations by Alexa's super-Fibonacci spirals (CVPR 2022).

    Written by hand: scipy only offers random or group rotations, not a uniform deterministic grid.

    Args:
        n: number of rotations.

    Returns:
        (n, 3, 3) rotation matrices, the same for the same n.
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


class IcpResult:
    """``T`` (B,4,4): the refined transforms (src -> dst frame); ``fitness`` (B,): the fraction of src points with a
    neighbour within the final threshold, ``rmse`` (B,): their RMS distance, metres. The two scores cost one more
    nearest-neighbour query over every start and the estimator asks for neither (the verifier decides), so they are
    computed on first use."""

    def __init__(self, T: np.ndarray, score: Callable[[], tuple[np.ndarray, np.ndarray]]) -> None:
        self.T = T
        self._score = score

    @cached_property
    def _scores(self) -> tuple[np.ndarray, np.ndarray]:
        return self._score()

    @property
    def fitness(self) -> np.ndarray:
        return self._scores[0]

    @property
    def rmse(self) -> np.ndarray:
        return self._scores[1]


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
    converged: float = 1e-6,
) -> IcpResult:
    """Point-to-point ICP from many starts at once, trimmed by a distance threshold stepped coarse to fine.

    Point-to-point rather than point-to-plane: point-to-plane diverges from 25-35 deg off, useless for
    multi-start (docs/architecture.md, Learning). With ``src_feat`` the tree holds (3+F)-dim points
    [xyz, features] (coloured ICP in the spirit of Park et al. 2017): neighbours are chosen by position and
    colour, which gives shapes with a symmetry (bottles, boxes) a pull towards the texture-consistent pose;
    the fit itself uses positions only.

    Args:
        src: (M, 3) points to move, metres (e.g. the reference cloud in C).
        dst_tree: KD-tree of the (K, 3) or (K, 3+F) target points (e.g. the query cloud in the query camera).
        T0: (B, 4, 4) initial src -> dst transforms.
        thresholds: inlier distances, metres, each used for ``iterations`` steps.
        iterations: steps per threshold.
        min_inlier_frac: a start with fewer inliers (fraction of M, at least 3) does not move in that step.
        workers: cKDTree workers for queries of at least ``PARALLEL_MIN_QUERIES`` points.
        src_feat: (M, F) features of ``src`` (scaled like the tree's extra dimensions), or None.
        prune_to: after the first (coarsest) threshold keep only that many starts, those with the most
            inliers; starts that found no surface by then rarely win and cost as much as the rest.
        eps: approximate neighbours (cKDTree's eps: within (1 + eps) x the true nearest distance), which
            prunes the 6-D coloured search hard; a multi-start search that only has to land near the right
            pose before the exact refinement loses nothing by it.
        converged: a start whose step moved no source point more than this x the threshold stops for the rest of
            that threshold's steps. Such a step left every correspondence as it was, so every further step at that
            threshold would repeat it (ICP's fixed point); converged starts leave the batch, so a batch costs what
            its moving starts cost (0 = every start takes every step).

    Returns:
        An ``IcpResult``: T (B', 4, 4) refined src -> dst, fitness (B',) and rmse (B',) metres at the last
        threshold; B' = min(B, prune_to) when pruned after the first threshold, else B.
    """
    T = np.array(T0, dtype=np.float64, copy=True)
    src = np.ascontiguousarray(src, dtype=np.float64)
    B, M = T.shape[0], src.shape[0]
    query = _IcpQuery(dst_tree, src_feat, B, workers=workers, eps=eps)
    src_reach = float(np.sqrt(np.einsum("ij,ij->i", src, src).max()))  # the source's largest norm (_icp_step)
    for stage, thr in enumerate(thresholds):
        if stage == 1 and prune_to is not None and prune_to < B:
            d, _ = query(transform_points(T, src), thr)
            keep = np.argsort(-np.isfinite(d.reshape(B, M)).sum(axis=1), kind="stable")[:prune_to]
            T, B = T[keep], prune_to
            query.keep_first(B * M)
        _icp_stage(T, src, query, thr, iterations, max(3, int(min_inlier_frac * M)), converged * thr, src_reach)
    return IcpResult(T, lambda: _icp_score(T, src, query, thresholds[-1]))


class _IcpQuery:
    """Nearest target of each moved source point, with its features appended when the ICP is coloured."""

    def __init__(self, dst_tree: cKDTree, src_feat: np.ndarray | None, starts: int, *, workers: int, eps: float) -> None:
        """``src_feat``: (M, F) features of the source points (coloured ICP) or None; ``starts``: B."""
        self.tree, self.workers, self.eps = dst_tree, workers, eps
        self.dst = np.ascontiguousarray(dst_tree.data[:, :3])  # one layout for the compiled step (icp_kernels)
        # coloured: one (B*M, 3+F) array of queries whose feature columns are written once; each step writes only the
        # positions (a fresh concatenation per step copied the features again: 6-D batches of up to 15,000 rows)
        self.buf = None
        if src_feat is not None:
            M, F = src_feat.shape
            self.buf = np.zeros((starts * M, 3 + F))
            self.buf.reshape(starts, M, 3 + F)[:, :, 3:] = src_feat

    def keep_first(self, n: int) -> None:
        """Drop the features of pruned starts (every start carries the same features, so the first n do)."""
        if self.buf is not None:
            self.buf = self.buf[:n]

    def __call__(self, X: np.ndarray, thr: float) -> tuple[np.ndarray, np.ndarray]:
        q = X.reshape(-1, 3)
        if self.buf is not None:  # every start carries the same features: the first rows fit any subset of starts
            self.buf[:len(q), :3] = q
            q = self.buf[:len(q)]
        # threads pay off only for big batches: below PARALLEL_MIN_QUERIES their start-up costs more than the search
        return self.tree.query(q, k=1, eps=self.eps, workers=self.workers if len(q) >= PARALLEL_MIN_QUERIES else 1,
                               distance_upper_bound=thr)


def _icp_stage(T: np.ndarray, src: np.ndarray, query: _IcpQuery, thr: float, iterations: int, min_inliers: int,
               still: float, src_reach: float) -> None:
    """Up to ``iterations`` ICP steps at threshold ``thr``, in place on T (B,4,4); a start whose step moved no point
    more than ``still`` metres leaves the batch (its next step would repeat it)."""
    moving = np.arange(T.shape[0])
    for _ in range(iterations):
        T[moving], moved = _icp_step(T[moving], src, query, thr, min_inliers, src_reach)
        moving = moving[moved > still]
        if not len(moving):
            break


def _icp_step(T: np.ndarray, src: np.ndarray, query: _IcpQuery, thr: float,
              min_inliers: int, src_reach: float) -> tuple[np.ndarray, np.ndarray]:
    """One ICP step for every start: (B,4,4) -> (B,4,4), and how far it moved each start's farthest-moved point
    (B,), metres (a bound: |dR - I|_F x the moved points' largest distance from the origin, itself bounded by
    ``src_reach`` (the source's) + |t|, + |dt|); a start with too few inliers stays where it is (moved 0).
    Compiled (``icp_kernels``) where numba is installed, else this NumPy step: the same fit to ~1e-12 m."""
    if icp_kernels.AVAILABLE:
        X = icp_kernels.transform_batch(T, src)
        d, j = query(X, thr)
        return icp_kernels.fit_steps(T, X, query.dst, d, j.astype(np.int64, copy=False), min_inliers, src_reach)
    return _icp_step_numpy(T, src, query, thr, min_inliers, src_reach)


def _icp_step_numpy(T: np.ndarray, src: np.ndarray, query: _IcpQuery, thr: float,
                    min_inliers: int, src_reach: float) -> tuple[np.ndarray, np.ndarray]:
    """``_icp_step`` without numba: transform, query, ``umeyama_batched``."""
    B, M = T.shape[0], src.shape[0]
    X = transform_points(T, src)  # (B,M,3)
    d, j = query(X, thr)
    d = d.reshape(B, M)
    inl = np.isfinite(d)
    j = np.where(inl.reshape(-1), j, 0).reshape(B, M)
    enough = inl.sum(axis=1) >= min_inliers
    dT = umeyama_batched(X, query.dst[j], inl.astype(np.float64))
    dT[~enough] = np.eye(4)
    reach = src_reach + np.linalg.norm(T[:, :3, 3], axis=1)  # rotations keep norms; max |X| cost 10 % of a step
    moved = np.sqrt(((dT[:, :3, :3] - np.eye(3)) ** 2).sum(axis=(1, 2))) * reach + np.linalg.norm(dT[:, :3, 3], axis=1)
    return dT @ T, moved


def _icp_score(T: np.ndarray, src: np.ndarray, query: _IcpQuery, thr: float) -> tuple[np.ndarray, np.ndarray]:
    """Fitness and inlier RMSE of the final transforms at threshold ``thr``."""
    B, M = T.shape[0], src.shape[0]
    d, _ = query(transform_points(T, src), thr)
    d = d.reshape(B, M)
    inl = np.isfinite(d)
    fitness = inl.mean(axis=1)
    with np.errstate(invalid="ignore"):
        rmse = np.sqrt(np.where(inl, d, 0.0).__pow__(2).sum(axis=1) / np.maximum(inl.sum(axis=1), 1))
    rmse[~inl.any(axis=1)] = np.inf
    return fitness, rmse


SUBSAMPLE_SEED = 0
"""The seed of ``subsample``'s default draw. Only evaluation changes it: tracking is chaotic in which of the reference's
and the query's points are drawn (another equally good draw moves a bin of ``compare_tracking`` by up to 0.04), so a
change is measured over several draws (``tools/compare_tracking.py run --draw``; docs/tracking.md, "How wide a
tracking comparison's interval is")."""


def subsample(pts: np.ndarray, n: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Sorted indices of at most ``n`` points: all when N <= n, else a uniform draw without replacement
    (``rng`` default seeded ``SUBSAMPLE_SEED``, 0: the same call gives the same subset).

    Args:
        pts: (N, 3) points.
        n: the most indices to return.
        rng: random generator.

    Returns:
        (min(N, n),) int indices into ``pts``, ascending.
    """
    if len(pts) <= n:
        return np.arange(len(pts))
    rng = rng or np.random.default_rng(SUBSAMPLE_SEED)
    return np.sort(rng.choice(len(pts), n, replace=False))
