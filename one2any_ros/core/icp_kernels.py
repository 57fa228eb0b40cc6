"""Compiled inner loops of the batched ICP (``geometry.icp_batched``) and of RANSAC (``geometry.ransac_rigid``):
moving the source points of every start, fitting every start's step to its nearest neighbours, weighted rigid fits
of many small problems at once (``geometry.umeyama_batched``), and RANSAC's residuals; one pass over the points each.

Why compiled: between two KD-tree queries a step of the multi-start ICP did ~20 NumPy operations on (B, M, 3)
arrays (the transform, masks, gathers, the Umeyama fit's means and covariance, a batched 3 x 3 SVD): ~25 % of the
ICP's time beside the queries, 0.95-1.5 ms per step for 100 starts x 150 points, 0.22 ms for 6 x 800. Here each is
one loop (0.16 / 0.03 ms; docs/tracking.md, "The ICP step compiled"). numba compiles them on first use and caches the
machine code beside this file (or in numba's user cache when the package is read-only). Without numba
(``AVAILABLE`` False) ``geometry`` keeps its NumPy code: the same fits to ~1e-12 m (tested to 1e-9; not where the
neighbours collapse onto a line and the best rotation is not unique).

The rotation of each step is Horn's closed form (1987): the unit quaternion that maximises the alignment is the
leading eigenvector of a symmetric 4 x 4 matrix built from the cross-covariance; a cyclic Jacobi sweep finds it.
Written by hand because a LAPACK call per start (numba's ``np.linalg.svd`` / ``eigh``) costs ~3.5 us, more than the
whole fit; the answer is the same proper rotation as Umeyama's SVD with its reflection fix. No ROS, no torch.
"""
from __future__ import annotations

import numpy as np

try:
    import numba
except Exception:  # optional at run time (missing, or built for another NumPy): geometry's NumPy step instead
    numba = None

AVAILABLE = numba is not None
_warm = False


def _njit(fn):
    """numba's compiler with its on-disk cache; where the install has no writable place for one (a read-only package
    and no user cache directory: numba refuses to decorate), compiled once per process instead."""
    if numba is None:
        return fn
    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError:
        return numba.njit(nogil=True)(fn)


@_njit
def transform_batch(T: np.ndarray, src: np.ndarray) -> np.ndarray:
    """(B, M, 3) ``src`` (M, 3) moved by each of T (B, 4, 4), as ``geometry.transform_points`` (same products)."""
    B, M = T.shape[0], src.shape[0]
    out = np.empty((B, M, 3))
    for b in range(B):
        for m in range(M):
            x, y, z = src[m, 0], src[m, 1], src[m, 2]
            for a in range(3):
                out[b, m, a] = x * T[b, a, 0] + y * T[b, a, 1] + z * T[b, a, 2] + T[b, a, 3]
    return out


@_njit
def _leading_quaternion(N: np.ndarray) -> np.ndarray:
    """Unit eigenvector (4,) of the largest eigenvalue of the symmetric 4 x 4 ``N`` (destroyed): cyclic Jacobi."""
    V = np.eye(4)
    for _ in range(50):
        off = 0.0
        diag = 0.0
        for p in range(4):
            diag += N[p, p] * N[p, p]
            for q in range(p + 1, 4):
                off += N[p, q] * N[p, q]
        if off <= 1e-32 * diag or off == 0.0:
            break
        for p in range(3):
            for q in range(p + 1, 4):
                apq = N[p, q]
                if apq == 0.0:
                    continue
                theta = (N[q, q] - N[p, p]) / (2.0 * apq)
                t = 1.0 / (abs(theta) + np.sqrt(theta * theta + 1.0))
                if theta < 0.0:
                    t = -t
                c = 1.0 / np.sqrt(t * t + 1.0)
                s = t * c
                for k in range(4):  # N's columns p, q rotated, then its rows, then V's columns
                    akp, akq = N[k, p], N[k, q]
                    N[k, p] = c * akp - s * akq
                    N[k, q] = s * akp + c * akq
                for k in range(4):
                    apk, aqk = N[p, k], N[q, k]
                    N[p, k] = c * apk - s * aqk
                    N[q, k] = s * apk + c * aqk
                for k in range(4):
                    vkp, vkq = V[k, p], V[k, q]
                    V[k, p] = c * vkp - s * vkq
                    V[k, q] = s * vkp + c * vkq
    best = 0
    for k in range(1, 4):
        if N[k, k] > N[best, best]:
            best = k
    qv = V[:, best].copy()
    return qv / np.sqrt(qv[0] * qv[0] + qv[1] * qv[1] + qv[2] * qv[2] + qv[3] * qv[3])


@_njit
def _horn_fit(sums: np.ndarray, out: np.ndarray) -> None:
    """The rigid fit from a weighted sample's sums, written into ``out`` (4, 4): ``sums`` = (total weight, the source's
    weighted sum (3), the target's (3), sum w * source_a * target_b (9, row-major)); Horn's M[a, b] = cov(source_a,
    target_b)."""
    w = 1.0 / sums[0]
    s0, s1, s2, d0, d1, d2 = sums[1] * w, sums[2] * w, sums[3] * w, sums[4] * w, sums[5] * w, sums[6] * w
    sxx, sxy, sxz = sums[7] * w - s0 * d0, sums[8] * w - s0 * d1, sums[9] * w - s0 * d2
    syx, syy, syz = sums[10] * w - s1 * d0, sums[11] * w - s1 * d1, sums[12] * w - s1 * d2
    szx, szy, szz = sums[13] * w - s2 * d0, sums[14] * w - s2 * d1, sums[15] * w - s2 * d2
    N = np.empty((4, 4))
    N[0, 0], N[0, 1], N[0, 2], N[0, 3] = sxx + syy + szz, syz - szy, szx - sxz, sxy - syx
    N[1, 1], N[1, 2], N[1, 3] = sxx - syy - szz, sxy + syx, szx + sxz
    N[2, 2], N[2, 3] = -sxx + syy - szz, syz + szy
    N[3, 3] = -sxx - syy + szz
    for p in range(4):
        for q in range(p + 1, 4):
            N[q, p] = N[p, q]
    qw, qx, qy, qz = _leading_quaternion(N)
    out[0, 0], out[0, 1], out[0, 2] = qw * qw + qx * qx - qy * qy - qz * qz, 2 * (qx * qy - qw * qz), 2 * (qx * qz + qw * qy)
    out[1, 0], out[1, 1], out[1, 2] = 2 * (qx * qy + qw * qz), qw * qw - qx * qx + qy * qy - qz * qz, 2 * (qy * qz - qw * qx)
    out[2, 0], out[2, 1], out[2, 2] = 2 * (qx * qz - qw * qy), 2 * (qy * qz + qw * qx), qw * qw - qx * qx - qy * qy + qz * qz
    out[0, 3] = d0 - (out[0, 0] * s0 + out[0, 1] * s1 + out[0, 2] * s2)
    out[1, 3] = d1 - (out[1, 0] * s0 + out[1, 1] * s1 + out[1, 2] * s2)
    out[2, 3] = d2 - (out[2, 0] * s0 + out[2, 1] * s1 + out[2, 2] * s2)
    out[3, 0], out[3, 1], out[3, 2], out[3, 3] = 0.0, 0.0, 0.0, 1.0


@_njit
def _accumulate(sums: np.ndarray, w: float, x0: float, x1: float, x2: float, y0: float, y1: float, y2: float) -> None:
    sums[0] += w
    sums[1] += w * x0
    sums[2] += w * x1
    sums[3] += w * x2
    sums[4] += w * y0
    sums[5] += w * y1
    sums[6] += w * y2
    sums[7] += w * x0 * y0
    sums[8] += w * x0 * y1
    sums[9] += w * x0 * y2
    sums[10] += w * x1 * y0
    sums[11] += w * x1 * y1
    sums[12] += w * x1 * y2
    sums[13] += w * x2 * y0
    sums[14] += w * x2 * y1
    sums[15] += w * x2 * y2


@_njit
def weighted_fits(src: np.ndarray, dst: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``geometry.umeyama_batched``: (B, 4, 4) rigid fits with ``dst ~ R src + t`` of (B, N, 3) pairs weighted by
    (B, N); identity where the total weight is (near) zero."""
    B, N = src.shape[0], src.shape[1]
    out = np.empty((B, 4, 4))
    sums = np.empty(16)
    for b in range(B):
        sums[:] = 0.0
        for n in range(N):
            if w[b, n] != 0.0:
                _accumulate(sums, w[b, n], src[b, n, 0], src[b, n, 1], src[b, n, 2], dst[b, n, 0], dst[b, n, 1],
                            dst[b, n, 2])
        if sums[0] > 1e-12:
            _horn_fit(sums, out[b])
        else:
            out[b] = np.eye(4)
    return out


@_njit
def fit_steps(T: np.ndarray, X: np.ndarray, dst: np.ndarray, dist: np.ndarray, nearest: np.ndarray,
              min_inliers: int, src_reach: float) -> tuple:
    """One ICP step of every start from its neighbours: (the moved T (B, 4, 4), how far each step moved the start's
    farthest point (B,), metres), as ``geometry._icp_step`` defines both; a start with fewer than ``min_inliers``
    finite distances stays (moved 0).

    Args: T (B, 4, 4) the starts; X (B, M, 3) the source under them; dst (K, 3) the target points; dist (B*M,) the
    nearest target's distance (inf = none within the band); nearest (B*M,) its index into dst.
    """
    B, M = X.shape[0], X.shape[1]
    out = T.copy()
    moved = np.zeros(B)
    sums = np.empty(16)
    dT = np.empty((4, 4))
    for b in range(B):
        sums[:] = 0.0
        for m in range(M):
            k = b * M + m
            if dist[k] < np.inf:
                j = nearest[k]
                _accumulate(sums, 1.0, X[b, m, 0], X[b, m, 1], X[b, m, 2], dst[j, 0], dst[j, 1], dst[j, 2])
        if sums[0] < min_inliers or sums[0] == 0.0:
            continue
        _horn_fit(sums, dT)
        dev = 0.0
        for a in range(3):
            for c in range(3):
                e = dT[a, c] - (1.0 if a == c else 0.0)
                dev += e * e
        reach = src_reach + np.sqrt(T[b, 0, 3] ** 2 + T[b, 1, 3] ** 2 + T[b, 2, 3] ** 2)
        moved[b] = np.sqrt(dev) * reach + np.sqrt(dT[0, 3] ** 2 + dT[1, 3] ** 2 + dT[2, 3] ** 2)
        for a in range(3):
            for c in range(4):
                out[b, a, c] = dT[a, 0] * T[b, 0, c] + dT[a, 1] * T[b, 1, c] + dT[a, 2] * T[b, 2, c]
            out[b, a, 3] += dT[a, 3]
    return out, moved


@_njit
def residuals(T: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """``geometry._residuals``: (I, N) distances |R_i src_n + t_i - dst_n|, computed directly."""
    I, N = T.shape[0], src.shape[0]
    out = np.empty((I, N))
    for i in range(I):
        for n in range(N):
            acc = 0.0
            for a in range(3):
                e = T[i, a, 0] * src[n, 0] + T[i, a, 1] * src[n, 1] + T[i, a, 2] * src[n, 2] + T[i, a, 3] - dst[n, a]
                acc += e * e
            out[i, n] = np.sqrt(acc)
    return out

def warm_up() -> None:
    """Compile the kernels (first use after an install: ~3 s) or load them from numba's cache (~0.2 s) now, once per
    process, with the argument types ``geometry._icp_step`` passes: called when a ``PoseEstimator`` is made (a node
    makes its estimators at start), so that no frame is the one that waits. A no-op without numba."""
    global _warm
    if _warm or not AVAILABLE:
        return
    T, src = np.eye(4)[None].copy(), np.eye(3)
    X = transform_batch(T, src)
    fit_steps(T, X, src, np.zeros(3), np.arange(3, dtype=np.int64), 3, 0.0)
    weighted_fits(X, X, np.ones((1, 3)))
    residuals(T, src, src)
    _warm = True
