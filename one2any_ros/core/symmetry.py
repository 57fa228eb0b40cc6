"""Geometric twins, once per reference (issue 16): the rotations under which the reference's observed shape is
(nearly) self-congruent, so the estimator can put each candidate's twins next to it and let appearance choose.

A single view shows part of the object, so self-congruence is tested on what the view does show:

- an axis of revolution (cylinders, bottles, cups, frustums, capsules): every surface normal line of a surface of
  revolution meets its axis, i.e. the normal lines lie in a linear line complex (Pottmann & Randrup, "Rotational
  and helical surface approximation for reverse engineering", 1998). With Plücker coordinates of the normal
  lines (n, x x n), the axis (a, p x a) solves a 6x6 least-squares eigenproblem - closed form, a few ms. The fit
  is kept when the normal lines pass within ``axis_tolerance`` x scale of the axis; its twins are turns about it.
- otherwise (boxes, ellipsoids, anything else): turns about the principal axes of the visible cloud through a
  centre behind its surface; the estimator's ICP settles them on each frame.

The fitted axis, not a principal axis of the visible half, because it is much closer to a body of revolution's true
axis (docs/architecture.md, Choices measured in the code, "Axis of revolution"; docs/benchmarks.md, Appearance).

Pure numpy/SciPy, no ROS. Hand-written: the line-complex fit (no library here fits rotational surfaces).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation


@dataclass(frozen=True)
class RevolutionAxis:
    direction: np.ndarray  # (3,) unit
    point: np.ndarray  # (3,) the axis point closest to the cloud's mean
    residual: float  # median distance of the normal lines to the axis, metres
    support: float  # share of points whose normal line passes within the tolerance


def estimate_normals(points: np.ndarray, viewpoint: np.ndarray, *, k: int = 16) -> np.ndarray:
    """(N,3) unit normals of a cloud from its k nearest neighbours (smallest principal direction), turned toward
    ``viewpoint`` (the camera centre in the cloud's frame).

    Args:
        points: (N, 3) float cloud, metres, N >= 1.
        viewpoint: (3,) float camera centre in the cloud's frame, metres.
        k: neighbours per point (at most N).

    Returns:
        (N, 3) float64 unit normals facing the viewpoint.
    """
    k = min(k, len(points))
    _, idx = cKDTree(points).query(points, k=k)
    nb = points[idx] - points[idx].mean(axis=1, keepdims=True)
    _, vecs = np.linalg.eigh(np.einsum("nki,nkj->nij", nb, nb))
    n = vecs[:, :, 0]
    flip = np.einsum("ni,ni->n", n, viewpoint - points) < 0
    n[flip] *= -1
    return n


def fit_revolution_axis(points: np.ndarray, normals: np.ndarray, *, iterations: int = 3,
                        tolerance: float | None = None) -> RevolutionAxis:
    """Least-squares axis of revolution of an oriented cloud (see the module docstring); re-fitted
    ``iterations`` times on the normal lines within 2.5x the median distance (robust to edges and noise).

    Args:
        points: (N, 3) float cloud, metres.
        normals: (N, 3) float unit normals of those points (``estimate_normals``).
        iterations: fits, each on the lines kept by the previous one (at least 1).
        tolerance: distance, metres, within which a normal line supports the axis; None = the median distance.

    Returns:
        RevolutionAxis: (3,) float64 unit direction, (3,) float64 point (metres, the axis point closest to the
        cloud's mean), median residual in metres and the supporting share in [0, 1].
    """
    m = np.cross(points, normals)
    w = np.ones(len(points))
    a = p = None
    for _ in range(max(1, iterations)):
        A = np.einsum("n,ni,nj->ij", w, m, m)
        B = np.einsum("n,ni,nj->ij", w, m, normals)
        C = np.einsum("n,ni,nj->ij", w, normals, normals) + 1e-9 * np.eye(3)
        Cinv = np.linalg.pinv(C, rcond=1e-6)
        S = A - B @ Cinv @ B.T  # min over abar of the quadratic form, for a fixed a
        _, vecs = np.linalg.eigh(S)
        a = vecs[:, 0]
        abar = -Cinv @ B.T @ a
        p = np.cross(a, abar)  # the axis point closest to the origin (abar = p x a, |a| = 1)
        d = _line_distances(points, normals, a, p)
        cut = 2.5 * float(np.median(d)) + 1e-9
        w = (d <= cut).astype(float)
    centre = points.mean(axis=0)
    p = p + a * float(a @ (centre - p))
    d = _line_distances(points, normals, a, p)
    res = float(np.median(d))
    tol = tolerance if tolerance is not None else res
    return RevolutionAxis(direction=a, point=p, residual=res, support=float(np.mean(d <= tol)))


def _line_distances(x: np.ndarray, n: np.ndarray, a: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Distance of each normal line (x, n) to the axis (p, a); a normal parallel to the axis counts by the
    distance of its foot point from the axis."""
    c = np.cross(n, a)
    cn = np.linalg.norm(c, axis=1)
    skew = np.abs(np.einsum("ni,ni->n", x - p, c)) / np.maximum(cn, 1e-9)
    off = x - p
    par = np.linalg.norm(off - np.outer(off @ a, a), axis=1)
    return np.where(cn > 0.1, skew, par)


def turns_about(axis: np.ndarray, point: np.ndarray, angles_rad: np.ndarray) -> np.ndarray:
    """(k,4,4) rigid turns by each angle about the line (point, axis).

    Args:
        axis: (3,) float unit direction.
        point: (3,) float a point on the line, metres.
        angles_rad: (k,) float angles, radians.

    Returns:
        (k, 4, 4) float64 rigid transforms.
    """
    return turns_by(np.outer(angles_rad, axis), point)


@dataclass(frozen=True)
class SphereFit:
    centre: np.ndarray  # (3,) the point nearest every normal line, metres
    residual: float  # median distance of the normal lines from it, metres


def sphere_fit(points: np.ndarray, normals: np.ndarray) -> SphereFit:
    """The point nearest all normal lines of an oriented cloud in least squares (sum of (I - n n^T)(x - p) = 0), and
    how near they pass. On a piece of a sphere (a bowl's outside, a ball) every normal line passes through its centre,
    so every turn about that point keeps the surface: the axis of revolution fitted to such a piece is arbitrary (on
    the long sets' bowls 30-50 deg off the true one) and only texture can tell its turns apart.
    Hand-written: a 3 x 3 linear solve, no library call fits it.

    Args:
        points: (N, 3) float cloud, metres, N >= 3.
        normals: (N, 3) float unit normals (``estimate_normals``).

    Returns:
        SphereFit: centre (3,) float64 metres, residual float metres (inf when the lines are all parallel).
    """
    P = np.asarray(points, np.float64)
    Nn = np.asarray(normals, np.float64)
    A = np.eye(3)[None] - Nn[:, :, None] * Nn[:, None, :]  # (N,3,3) projectors off each normal line
    S = A.sum(axis=0)
    if np.linalg.cond(S) > 1e8:
        return SphereFit(centre=P.mean(axis=0), residual=float("inf"))
    x = np.linalg.solve(S, np.einsum("nij,nj->i", A, P))
    return SphereFit(centre=x, residual=float(np.median(np.linalg.norm(np.cross(x - P, Nn), axis=1))))


def rotation_cube(step_rad: float) -> np.ndarray:
    """(27, 3) rotation vectors: 0 first, then every combination of -step, 0, +step about x, y, z (a pattern
    search's neighbourhood in rotation; the centre first so that a tie keeps it)."""
    a = np.array([0.0, -step_rad, step_rad])
    g = np.stack(np.meshgrid(a, a, a, indexing="ij"), axis=-1).reshape(-1, 3)
    return g


def turns_by(rotvecs: np.ndarray, point: np.ndarray) -> np.ndarray:
    """(k,4,4) rigid turns by each rotation vector (k,3) (radians) about ``point`` (3,) metres."""
    R = Rotation.from_rotvec(np.asarray(rotvecs, np.float64)).as_matrix()
    T = np.tile(np.eye(4), (len(R), 1, 1))
    T[:, :3, :3] = R
    T[:, :3, 3] = point - R @ point
    return T


@dataclass(frozen=True)
class TwinSettings:
    spin_angles: int = 24  # turns about a fitted axis of revolution: k * 360 / spin_angles
    max_axis_residual: float = 0.12  # keep the axis when the normal lines pass this close (x scale, median)
    discrete_steps: int = 4  # with an axis, quarter turns (and flips) about each principal axis of the visible cloud ...
    depth_offset: float = 0.5  # ... through a centre behind the cloud's mean by this x scale along C's z
    normal_neighbours: int = 16


@dataclass(frozen=True)
class ReferenceTwins:
    transforms: np.ndarray  # (S,4,4) rigid motions of C whose images the estimator tries next to a candidate
    axis: RevolutionAxis | None  # the fitted axis of revolution when kept


def revolution_axis(points_C: np.ndarray, camera_C: np.ndarray, scale: float,
                    settings: TwinSettings = TwinSettings(), normals: np.ndarray | None = None) -> RevolutionAxis | None:
    """The reference's axis of revolution when its visible surface has one (the normal lines pass within
    ``max_axis_residual`` x scale of the fitted axis), else None; fitted once per reference (~25-50 ms) and shared by
    the twins and tracking's spins (reference_cache.reference_axis).

    Args:
        points_C: (N, 3) float reference cloud in C, metres.
        camera_C: (3,) float reference camera centre in C, metres.
        scale: the reference's radius s, metres.
        settings: ``normal_neighbours``, ``max_axis_residual`` (``spin_angles`` < 2: no axis).
        normals: (N, 3) the cloud's ``estimate_normals`` with ``normal_neighbours`` when the caller has them.

    Returns:
        RevolutionAxis, or None (also for fewer than 20 points).
    """
    if len(points_C) < 20 or settings.spin_angles < 2:
        return None
    if normals is None:
        normals = estimate_normals(points_C, camera_C, k=settings.normal_neighbours)
    fit = fit_revolution_axis(points_C, normals, tolerance=0.05 * scale)
    return fit if fit.residual <= settings.max_axis_residual * scale else None


def twins(points_C: np.ndarray, scale: float, axis: RevolutionAxis | None,
          settings: TwinSettings = TwinSettings()) -> ReferenceTwins:
    """The twin motions of a reference cloud given its axis of revolution (or None). With an axis: spins about it,
    plus quarter turns and flips about the principal axes (a cylinder's end-for-end flip). Otherwise: turns by every
    ``spin_angles`` step about each principal axis (a box's or an ellipsoid's face and body axes are close to those
    of its visible part).

    Args:
        points_C: (N, 3) float reference cloud in C, metres.
        scale: the reference's radius s, metres (the turn centre's offset scales with it).
        axis: the reference's ``revolution_axis``, or None.
        settings: angles and offsets of the twins.

    Returns:
        ReferenceTwins: transforms (S, 4, 4) float64 motions of C (S = 0 for fewer than 3 points) and ``axis``.
    """
    parts = []
    if settings.spin_angles < 2:
        axis = None
    if axis is not None:
        ang = 2 * np.pi * np.arange(1, settings.spin_angles) / settings.spin_angles
        parts.append(turns_about(axis.direction, axis.point, ang))
    if len(points_C) >= 3:  # without an axis: every turn about each principal axis (a box's, or a poor fit's)
        centre = points_C.mean(axis=0) + np.array([0.0, 0.0, settings.depth_offset * scale])
        parts.append(principal_turns(points_C, centre, settings.discrete_steps if axis else settings.spin_angles))
    T = np.concatenate(parts) if parts else np.zeros((0, 4, 4))
    return ReferenceTwins(transforms=T, axis=axis)


def principal_turns(points: np.ndarray, centre: np.ndarray, steps: int) -> np.ndarray:
    """(3*(steps-1),4,4) turns by k*360/steps (k=1..steps-1) about each principal axis of the cloud through
    ``centre``; none when steps < 2.

    Args:
        points: (N, 3) float cloud, metres.
        centre: (3,) float the turns' centre, metres.
        steps: turns per full circle.

    Returns:
        (3 * (steps - 1), 4, 4) float64 rigid transforms; (0, 4, 4) when steps < 2.
    """
    if steps < 2:
        return np.zeros((0, 4, 4))
    _, _, axes = np.linalg.svd(points - points.mean(axis=0), full_matrices=False)
    ang = 2 * np.pi * np.arange(1, steps) / steps
    return np.concatenate([turns_about(ax, centre, ang) for ax in axes])
