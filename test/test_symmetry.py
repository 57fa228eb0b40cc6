"""Geometric twins once per reference (issue 16): the axis of revolution of a visible surface, and the twin motions."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from one2any_ros.core.symmetry import (TwinSettings, estimate_normals, fit_revolution_axis, principal_turns,
                                  revolution_axis, rotation_cube, sphere_fit, turns_about, turns_by, twins)

CAMERA = np.zeros(3)


def _visible(points: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """The points a camera at the origin sees (normal facing it; no other occlusion on a convex shape)."""
    return points[np.einsum("ni,ni->n", normals, CAMERA - points) > 0]


def _cylinder(axis: np.ndarray, centre: np.ndarray, r: float = 0.04, h: float = 0.12, n: int = 6000, seed: int = 0):
    rng = np.random.default_rng(seed)
    th, z = rng.uniform(0, 2 * np.pi, n), rng.uniform(-h / 2, h / 2, n)
    local = np.stack([r * np.cos(th), r * np.sin(th), z], 1)
    nl = np.stack([np.cos(th), np.sin(th), np.zeros(n)], 1)
    R = Rotation.align_vectors([axis], [[0, 0, 1.0]])[0].as_matrix()
    return local @ R.T + centre, nl @ R.T


def _box(ext=(0.1, 0.06, 0.04), n=6000, seed=0):
    rng = np.random.default_rng(seed)
    half = np.asarray(ext) / 2
    pts, nrm = [], []
    for ax in range(3):
        for sg in (-1, 1):
            p = rng.uniform(-half, half, (n // 6, 3))
            p[:, ax] = sg * half[ax]
            nn = np.zeros((n // 6, 3))
            nn[:, ax] = sg
            pts.append(p)
            nrm.append(nn)
    R = Rotation.from_euler("xyz", [30, 40, 10], degrees=True).as_matrix()
    return np.concatenate(pts) @ R.T + [0.02, -0.01, 0.6], np.concatenate(nrm) @ R.T


@pytest.mark.parametrize("axis", [[1.0, 0.2, 0.1], [0.3, 1.0, 0.6], [0.5, -0.4, 0.9]])
def test_axis_of_a_half_seen_cylinder(axis):
    """From the half of a cylinder one camera sees, with normals estimated from the points alone, the fitted axis
    is the cylinder's (the principal axes of that half are not: its depth and width mix)."""
    a = np.asarray(axis) / np.linalg.norm(axis)
    centre = np.array([0.03, -0.02, 0.5])
    pts, nrm = _cylinder(a, centre)
    vis = _visible(pts, nrm)
    vis = vis + np.random.default_rng(1).normal(0, 0.0005, vis.shape)  # ~0.5 mm depth noise
    n = estimate_normals(vis, CAMERA)
    assert (np.einsum("ni,ni->n", n, CAMERA - vis) > 0).all()  # turned toward the camera
    fit = fit_revolution_axis(vis, n, tolerance=0.002)
    assert np.degrees(np.arccos(min(1.0, abs(fit.direction @ a)))) < 2.0
    off = fit.point - centre
    assert np.linalg.norm(off - (off @ a) * a) < 0.003  # through the cylinder's axis, within 3 mm of a 40 mm radius
    assert fit.residual < 0.003 and fit.support > 0.5


def test_a_box_has_no_axis_of_revolution_and_gets_turns_about_its_principal_axes():
    pts, nrm = _box()
    vis = _visible(pts, nrm)
    scale = float(np.percentile(np.linalg.norm(vis - np.median(vis, 0), axis=1), 95))
    tw = twins(vis - vis.mean(0), scale, revolution_axis(vis - vis.mean(0), CAMERA - vis.mean(0), scale))
    assert tw.axis is None
    assert len(tw.transforms) == 3 * (TwinSettings().spin_angles - 1)


def test_twins_of_a_cylinder_spin_about_its_axis():
    a = np.array([0.2, 1.0, 0.3]) / np.linalg.norm([0.2, 1.0, 0.3])
    pts, nrm = _cylinder(a, np.array([0.0, 0.0, 0.5]))
    vis = _visible(pts, nrm)
    mean = vis.mean(0)
    s = TwinSettings(spin_angles=12)
    tw = twins(vis - mean, 0.06, revolution_axis(vis - mean, CAMERA - mean, 0.06, s), s)
    assert tw.axis is not None
    assert len(tw.transforms) == (s.spin_angles - 1) + 3 * (s.discrete_steps - 1)
    spins = tw.transforms[: s.spin_angles - 1]
    # each spin maps the (full) cylinder onto itself: rotation about the axis, points stay on the surface
    full = pts - mean
    moved = full @ spins[3, :3, :3].T + spins[3, :3, 3]
    d = moved - (np.array([0.0, 0.0, 0.5]) - mean)
    radial = np.linalg.norm(d - np.outer(d @ a, a), axis=1)
    assert np.abs(radial - 0.04).max() < 0.004
    assert np.degrees(Rotation.from_matrix(spins[3, :3, :3]).magnitude()) == pytest.approx(120.0, abs=0.1)


def test_turns_about_and_principal_turns():
    T = turns_about(np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0]), np.array([np.pi]))
    assert T.shape == (1, 4, 4)
    np.testing.assert_allclose(T[0, :3, :3] @ [1.0, 0.0, 0.0] + T[0, :3, 3], [1.0, 0.0, 0.0], atol=1e-12)  # on the axis
    np.testing.assert_allclose(T[0, :3, :3] @ [2.0, 0.0, 0.0] + T[0, :3, 3], [0.0, 0.0, 0.0], atol=1e-12)
    pts = np.random.default_rng(0).normal(size=(200, 3)) * [3, 2, 1]
    assert principal_turns(pts, np.zeros(3), 4).shape == (9, 4, 4)
    assert principal_turns(pts, np.zeros(3), 1).shape == (0, 4, 4)


def test_the_centre_of_a_seen_piece_of_a_sphere_and_none_for_a_cylinder():
    """``sphere_fit``: every normal line of a sphere's visible cap (normals estimated from noisy points) passes within
    a few per cent of its radius of the centre; a cylinder's side and a box are far from any one point."""
    rng = np.random.default_rng(2)
    centre, r = np.array([0.02, -0.01, 0.5]), 0.05
    d = rng.normal(size=(6000, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    cap = _visible(centre + r * d, d)
    cap = cap + rng.normal(0, 0.0005, cap.shape)
    fit = sphere_fit(cap, estimate_normals(cap, CAMERA))
    assert np.linalg.norm(fit.centre - centre) < 0.1 * r and fit.residual < 0.1 * r
    pts, nrm = _cylinder(np.array([1.0, 0.2, 0.1]) / np.linalg.norm([1.0, 0.2, 0.1]), centre, r=r)
    side = _visible(pts, nrm)
    assert sphere_fit(side, estimate_normals(side, CAMERA)).residual > 0.3 * r
    pts, nrm = _box()
    face = _visible(pts, nrm)
    assert sphere_fit(face, estimate_normals(face, CAMERA)).residual > 0.3 * 0.06


def test_the_pattern_search_turns():
    """``rotation_cube``: 27 distinct turns, the centre first (a tie keeps it); ``turns_by`` turns about a point and
    agrees with ``turns_about`` for turns about one line."""
    cube = rotation_cube(np.radians(6.0))
    assert cube.shape == (27, 3) and not cube[0].any() and len(np.unique(cube, axis=0)) == 27
    p = np.array([0.1, -0.2, 0.3])
    T = turns_by(cube, p)
    assert np.allclose(T[:, :3, :3] @ p + T[:, :3, 3], p)  # the centre stays
    assert np.allclose(turns_by(np.outer([0.3, -0.5], [0, 0, 1.0]), p), turns_about(np.array([0, 0, 1.0]), p, np.array([0.3, -0.5])))


def test_a_reference_is_turned_about_a_sphere_only_when_it_is_near_and_fits():
    """``reference_sphere``: a bowl-like cap (its centre within the object) passes; a shallow dome (a cap of a sphere
    ten times the object's size: every normal line passes near a point far behind it) does not - its turns would slide
    the object far - and neither does anything at ``max_residual`` 0."""
    from types import SimpleNamespace

    from one2any_ros.core.reference_cache import reference_sphere

    rng = np.random.default_rng(4)

    def reference(radius: float, half_angle_deg: float):
        xy = rng.uniform(-1, 1, size=(8000, 2))
        xy = xy[np.linalg.norm(xy, axis=1) < 1] * np.tan(np.radians(half_angle_deg))
        d = np.column_stack([xy, -np.ones(len(xy))])  # the cap facing a camera on -z
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        pts = radius * d
        pts -= pts.mean(axis=0)  # C's origin at the cloud's centroid, as make_reference puts it
        T = np.eye(4)
        T[:3, 3] = [0.0, 0.0, 0.6]
        scale = float(np.linalg.norm(pts, axis=1).max())
        return SimpleNamespace(points_C=pts, T_refcam_C=T, scale=scale), SimpleNamespace(sphere=None, normals=None)

    bowl, cache = reference(0.05, 70.0)
    assert reference_sphere(cache, bowl, 0.2) is not None
    assert reference_sphere(cache, bowl, 0.0) is None
    dome, cache = reference(0.5, 5.7)  # ~5 cm across, like the bowl, on a 50 cm sphere
    assert cache.sphere is None and reference_sphere(cache, dome, 0.2) is None
    assert cache.sphere.residual < 0.2 * dome.scale  # it fits: the distance from the object is what rules it out
