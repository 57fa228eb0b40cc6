"""Per-reference arrays the verifier, refinement and tracking reuse on every frame, built once per reference (or
per setting, on first use): nothing done per frame that can be done once per reference."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from one2any_ros.core import camera
from one2any_ros.core.estimator_settings import EstimatorSettings
from one2any_ros.core.geometry import subsample, transform_points
from one2any_ros.core.reference import Reference
from one2any_ros.core.symmetry import (RevolutionAxis, SphereFit, TwinSettings, estimate_normals, principal_turns,
                                       revolution_axis, rotation_cube, sphere_fit, turns_about, turns_by)
from one2any_ros.core.verify import DepthTarget, make_target


@dataclass
class RefCache:
    """Per-reference arrays the verifier and refinement reuse on every frame (computed once)."""

    verify_points: np.ndarray
    verify_colours: np.ndarray
    target: DepthTarget
    refine_points: np.ndarray
    refine_colour: np.ndarray
    sweep: np.ndarray  # (S,4,4) spins of C about its principal axes through the cloud's centre
    appearance: object | None = None  # appearance.AppearanceModel, built on first use (appearance_weight > 0)
    appearance_subsets: dict = field(default_factory=dict)  # points -> every k-th of its points (twin_rank_points)
    twins: np.ndarray | None = None  # (S,4,4) the reference's twin motions of C, built on first use (twin_top_k > 0)
    track_turns: dict = field(default_factory=dict)  # track_turn_deg -> (T,4,4) identity and the tracking turns of C
    spins: dict = field(default_factory=dict)  # (track_spin_deg, step) -> (S,4,4) turns of C about its axis of revolution
    textured: bool = True  # the reference has texture enough for the appearance check (is_textured)
    axis: RevolutionAxis | None = None  # its axis of revolution (reference_axis; valid once axis_fitted)
    axis_fitted: bool = False
    sphere: SphereFit | None = None  # the point nearest its normal lines (reference_sphere; fitted on first use)
    normals: np.ndarray | None = None  # (N,3) of ref.points_C (reference_normals), for the axis and the sphere
    sphere_turns: dict = field(default_factory=dict)  # (max_residual, steps) -> [(27,4,4) per step] about its centre


def build_ref_cache(ref: Reference, settings: EstimatorSettings) -> RefCache:
    """The verifier's and refinement's samples of ``ref`` (fixed seed: the same reference, the same samples).

    Args:
        ref: the reference.
        settings: sample sizes (``verify_points``, ``refine_points``), ``sweep_angles`` and ``texture_min_std``.

    Returns:
        RefCache with verify_points (V, 3) float64 metres in C and their (V, 3) float32 colour features,
        refine_points (R, 3) float64 metres in C and (R, 3) float32 colours, the reference's DepthTarget and the
        (S, 4, 4) float64 sweep; tracking's spins about an axis of revolution (``axis_spins``) already in it.
    """
    rng = np.random.default_rng(0)
    vp = ref.points_C[subsample(ref.points_C, settings.verify_points, rng)]
    T = ref.T_refcam_C
    pts_cam = transform_points(T, vp)
    uv, _ = camera.project(pts_cam, ref.view.K)
    ui = np.clip(np.rint(uv[:, 0]).astype(int), 0, ref.view.shape[1] - 1)
    vi = np.clip(np.rint(uv[:, 1]).astype(int), 0, ref.view.shape[0] - 1)
    target = make_target(ref.view.depth, ref.view.mask, ref.view.K, ref.view.rgb)
    ri = subsample(ref.points_C, settings.refine_points, rng)
    cache = RefCache(verify_points=vp, verify_colours=target.colour[vi, ui], target=target,
                     refine_points=ref.points_C[ri], refine_colour=ref.colour_C[ri],
                     sweep=spin_sweep(ref.points_C, settings.sweep_angles),
                     textured=is_textured(ref.view.rgb, ref.view.mask, settings.texture_min_std))
    axis_spins(cache, ref, settings)  # the axis fit (~25-50 ms) here, not on the first tracked frame
    sphere_turns(cache, ref, settings)  # and the sphere's
    return cache


def reference_axis(c: RefCache, ref: Reference) -> RevolutionAxis | None:
    """The reference's axis of revolution (symmetry.revolution_axis), fitted on first use and kept in ``c``: tracking's
    spins and the twins turn about the same axis, and it is fitted once (~25-50 ms).

    Args:
        c: the reference's cache (``axis``, ``axis_fitted`` set here).
        ref: the reference.

    Returns:
        RevolutionAxis, or None when the visible surface has none.
    """
    if not c.axis_fitted:
        c.axis, c.axis_fitted = revolution_axis(ref.points_C, -ref.T_refcam_C[:3, 3], ref.scale,
                                                normals=reference_normals(c, ref)), True
    return c.axis


SPHERE_MAX_CENTRE = 2.0  # x scale: a sphere centred farther from C's origin is a gently curved patch (a shallow dome),
# whose turns would slide the object far; every bowl, ellipsoid and capsule that passed the test was within 1.05


def reference_normals(c: RefCache, ref: Reference) -> np.ndarray:
    """(N, 3) unit normals of ``ref.points_C`` facing its camera (``estimate_normals`` with the twins'
    ``normal_neighbours``), estimated once (~15 ms) for the axis and the sphere fits."""
    if c.normals is None:
        c.normals = estimate_normals(ref.points_C, -ref.T_refcam_C[:3, 3], k=TwinSettings().normal_neighbours)
    return c.normals


def reference_sphere(c: RefCache, ref: Reference, max_residual: float) -> np.ndarray | None:
    """The centre (3,) metres in C of the sphere the reference's visible surface lies on, when its normal lines pass
    within ``max_residual`` x scale of one point (a bowl's outside, a ball), else None; fitted on first use and kept
    in ``c`` (~1 ms beside the normals, which the axis fit shares).

    Args:
        c: the reference's cache (``sphere`` set here).
        ref: the reference.
        max_residual: x the reference's scale s; <= 0: None.

    Returns:
        (3,) float64 centre in C, metres, or None (also when it lies farther than SPHERE_MAX_CENTRE x scale from C's
        origin).
    """
    if max_residual <= 0 or len(ref.points_C) < 20:
        return None
    if c.sphere is None:
        c.sphere = sphere_fit(ref.points_C, reference_normals(c, ref))
    near = np.linalg.norm(c.sphere.centre) <= SPHERE_MAX_CENTRE * ref.scale
    return c.sphere.centre if c.sphere.residual <= max_residual * ref.scale and near else None


def sphere_turns(c: RefCache, ref: Reference, s: EstimatorSettings) -> list[np.ndarray]:
    """Tracking's sphere search's neighbourhoods, once per reference and setting: for each of
    ``track_sphere_steps_deg``, the (27, 4, 4) turns of C by -step, 0, +step about x, y and z through the reference's
    sphere centre (``reference_sphere``; the identity first); [] when it has none.

    Args:
        c: the reference's cache (the result is kept in ``c.sphere_turns``).
        ref: the reference.
        s: ``track_sphere_max_residual`` and ``track_sphere_steps_deg`` (degrees).

    Returns:
        list of (27, 4, 4) float64 rigid motions of C, metres.
    """
    key = (s.track_sphere_max_residual, tuple(s.track_sphere_steps_deg))
    if key not in c.sphere_turns:
        centre = reference_sphere(c, ref, s.track_sphere_max_residual)
        c.sphere_turns[key] = [] if centre is None else [turns_by(rotation_cube(np.radians(step)), centre)
                                                         for step in s.track_sphere_steps_deg]
    return c.sphere_turns[key]


def axis_spins(c: RefCache, ref: Reference, s: EstimatorSettings) -> np.ndarray:
    """(S,4,4) motions of C that geometry cannot see on a body of revolution: turns about the reference's fitted axis
    (symmetry.fit_revolution_axis) and slides along it, once per reference and setting; none when the reference has
    no such axis or the spin is off.

    Args:
        c: the reference's cache (the result is kept in ``c.spins``).
        ref: the reference.
        s: ``track_spin_deg``, ``track_spin_step_deg`` (degrees), ``track_slide`` (x diameter, in thirds) and
            ``appearance_weight`` (off at 0).

    Returns:
        (S, 4, 4) float64 rigid motions of C, metres; (0, 4, 4) without an axis.
    """
    key = (s.track_spin_deg, s.track_spin_step_deg, s.track_slide)
    if key not in c.spins:
        axis = None
        if s.track_spin_deg > 0 and s.track_spin_step_deg > 0 and s.appearance_weight > 0:
            axis = reference_axis(c, ref)
        if axis is None:
            c.spins[key] = np.zeros((0, 4, 4))
        else:
            ang = np.arange(-s.track_spin_deg, s.track_spin_deg + 1e-9, s.track_spin_step_deg)
            slide = s.track_slide * ref.diameter * np.array([-1.0, -2 / 3, -1 / 3, 1 / 3, 2 / 3, 1.0])
            slides = np.tile(np.eye(4), (len(slide) if s.track_slide > 0 else 0, 1, 1))
            slides[:, :3, 3] = np.outer(slide[: len(slides)], axis.direction)
            c.spins[key] = np.concatenate([turns_about(axis.direction, axis.point, np.radians(ang[np.abs(ang) > 1e-9])),
                                           slides])
    return c.spins[key]


def is_textured(rgb: np.ndarray, mask: np.ndarray, min_std: float) -> bool:
    """Whether the reference's pixels vary in grey level by at least ``min_std`` (0-255): a plain object's appearance
    score is near 0 at every pose, so it cannot be a test of trust.

    Args:
        rgb: (H, W, 3) uint8 RGB.
        mask: (H, W) bool object mask.
        min_std: the least standard deviation of grey, 0-255 units; <= 0: always True.

    Returns:
        True when textured (also for an empty mask).
    """
    if min_std <= 0 or not mask.any():
        return True
    grey = rgb[mask].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return bool(grey.std() >= min_std)


def track_turns(points_C: np.ndarray, turn_deg: float) -> np.ndarray:
    """(T,4,4): the identity, then turns of C by +-``turn_deg`` about each principal axis of the cloud through its mean
    (none when turn_deg is 0 or the cloud has under 3 points).

    Args:
        points_C: (N, 3) float cloud in C, metres.
        turn_deg: the turn, degrees.

    Returns:
        (7, 4, 4) float64 (identity first), or (1, 4, 4) identity only.
    """
    if turn_deg <= 0 or len(points_C) < 3:
        return np.eye(4)[None]
    centre = points_C.mean(axis=0)
    _, _, axes = np.linalg.svd(points_C - centre, full_matrices=False)
    angles = np.radians([-turn_deg, turn_deg])
    return np.concatenate([np.eye(4)[None]] + [turns_about(ax, centre, angles) for ax in axes])


def spin_sweep(points_C: np.ndarray, n_angles: int) -> np.ndarray:
    """(3*(n-1),4,4) rotations of C by k*360/n deg (k=1..n-1) about each principal axis of the cloud,
    through its mean: one of them is close to the symmetry axis of a body of revolution or a box.

    Args:
        points_C: (N, 3) float cloud in C, metres.
        n_angles: turns per full circle.

    Returns:
        (3 * (n_angles - 1), 4, 4) float64 rigid transforms; (0, 4, 4) for fewer than 3 points or n_angles < 2.
    """
    if len(points_C) < 3:
        return np.zeros((0, 4, 4))
    return principal_turns(points_C, points_C.mean(axis=0), n_angles)
