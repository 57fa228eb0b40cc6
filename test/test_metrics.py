"""Metrics against hand-computed cases."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from one2any_ros.core import metrics


def rot(axis, deg):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    a = np.radians(deg)
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def pose(R=np.eye(3), t=(0, 0, 0)):
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = t
    return T


def cylinder_points(radius=0.03, height=0.1, n_ang=72, n_h=11):
    """Points on a cylinder's side about the z axis, symmetric under 180° about z (angles in 5° steps)."""
    a = np.radians(np.arange(n_ang) * 360.0 / n_ang)
    z = np.linspace(-height / 2, height / 2, n_h)
    A, Z = np.meshgrid(a, z)
    return np.stack([radius * np.cos(A).ravel(), radius * np.sin(A).ravel(), Z.ravel()], axis=1)


PTS = np.random.default_rng(0).uniform(-0.05, 0.05, (500, 3))
T_GT = pose(rot([1, 2, 3], 40), (0.1, -0.05, 0.7))


def test_identity_gives_zero():
    assert metrics.add(T_GT, T_GT, PTS) == 0.0
    assert metrics.add_s(T_GT, T_GT, PTS) == 0.0
    assert metrics.rotation_error_deg(T_GT[:3, :3], T_GT[:3, :3]) == pytest.approx(0.0, abs=1e-6)
    assert metrics.translation_error(T_GT[:3, 3], T_GT[:3, 3]) == 0.0


def test_translation_offset_gives_exact_add():
    T_est = T_GT.copy()
    T_est[:3, 3] += (0.003, 0.004, 0.0)  # 5 mm for every point
    assert metrics.add(T_est, T_GT, PTS) == pytest.approx(0.005, abs=1e-12)
    assert metrics.translation_error(T_est[:3, 3], T_GT[:3, 3]) == pytest.approx(0.005, abs=1e-12)
    assert metrics.add_s(T_est, T_GT, PTS) <= 0.005 + 1e-12  # closest point is never farther


def test_add_of_known_rotation():
    # Two points at +-x, rotated 90° about z: each moves sqrt(2) * 0.1.
    pts = np.array([[0.1, 0, 0], [-0.1, 0, 0]])
    T_est = pose(rot([0, 0, 1], 90))
    assert metrics.add(T_est, np.eye(4), pts) == pytest.approx(0.1 * math.sqrt(2))


def test_symmetric_flip_add_large_add_s_zero():
    pts = cylinder_points()
    T_est = T_GT @ pose(rot([0, 0, 1], 180))  # the same cylinder, turned about its own axis
    assert metrics.add(T_est, T_GT, pts) == pytest.approx(2 * 0.03, rel=1e-9)  # every point moves a diameter
    assert metrics.add_s(T_est, T_GT, pts) == pytest.approx(0.0, abs=1e-9)
    # ...while a real 180° flip about a perpendicular axis keeps the cylinder's shape too (x axis): ADD-S ~0
    T_est2 = T_GT @ pose(rot([1, 0, 0], 180))
    assert metrics.add_s(T_est2, T_GT, pts) == pytest.approx(0.0, abs=1e-9)
    assert metrics.add(T_est2, T_GT, pts) > 0.05


def test_add_s_is_mean_of_closest_distances():
    pts = np.array([[0.0, 0, 0], [1.0, 0, 0]])
    T_est = pose(t=(0.25, 0, 0))  # points at 0.25 and 1.25: closest GT points 0 and 1 -> both 0.25
    assert metrics.add_s(T_est, np.eye(4), pts) == pytest.approx(0.25)
    T_est = pose(t=(0.75, 0, 0))  # 0.75 -> 1 (0.25), 1.75 -> 1 (0.75)
    assert metrics.add_s(T_est, np.eye(4), pts) == pytest.approx(0.5)


@pytest.mark.parametrize("deg", [0.001, 1.0, 5.0, 30.0, 90.0, 135.0, 179.9, 180.0])
def test_rotation_error_of_known_rotation(deg):
    R_gt = rot([1, 2, 3], 40)
    R_est = R_gt @ rot([0.3, -1, 0.2], deg)
    assert metrics.rotation_error_deg(R_est, R_gt) == pytest.approx(deg, abs=1e-6)
    assert metrics.rotation_error_deg(R_gt, R_est) == pytest.approx(deg, abs=1e-6)
    assert metrics.rotation_error_deg(pose(R_est), pose(R_gt)) == pytest.approx(deg, abs=1e-6)  # 4x4 accepted


@settings(max_examples=50, deadline=None)
@given(st.floats(0.0, 180.0), st.tuples(st.floats(-1, 1), st.floats(-1, 1), st.floats(-1, 1)))
def test_rotation_error_property(deg, axis):
    if np.linalg.norm(axis) < 1e-3:
        axis = (0, 0, 1)
    assert metrics.rotation_error_deg(rot(axis, deg), np.eye(3)) == pytest.approx(deg, abs=1e-5)


def test_add_s_01d_hit():
    assert metrics.add_s_01d_hit(0.0999, 1.0)
    assert not metrics.add_s_01d_hit(0.1, 1.0)  # strict
    assert not metrics.add_s_01d_hit(float("inf"), 0.1)
    assert not metrics.add_s_01d_hit(float("nan"), 0.1)


def test_auc_of_known_errors():
    # exact: mean of max(0, 1 - e/0.1) = (1 + 0.5 + 0 + 0 + 0) / 5
    errors = [0.0, 0.05, 0.1, 0.2, float("inf")]
    assert metrics.auc(errors) == pytest.approx(1.5 / 5)
    # trapezoid over a fine grid agrees
    assert metrics.auc(errors, steps=10000) == pytest.approx(1.5 / 5, abs=1e-3)
    assert metrics.auc([0.0, 0.0]) == 1.0
    assert metrics.auc([float("nan")]) == 0.0
    assert metrics.auc([]) == 0.0
    assert metrics.auc([0.01], max_threshold=0.02) == pytest.approx(0.5)


def test_recall_curve():
    thr, rec = metrics.recall_curve([0.0, 0.05, float("inf")], 0.1, steps=10)
    assert thr.shape == rec.shape == (11,)
    assert rec[0] == 0.0  # nothing is < 0
    assert rec[1] == pytest.approx(1 / 3)  # 0.0 < 0.01
    assert rec[6] == pytest.approx(2 / 3)  # 0.05 < 0.06
    assert rec[-1] == pytest.approx(2 / 3)  # the failure never counts


def test_recall_5deg_5cm_edges():
    assert metrics.recall_5deg_5cm(0.0, 0.0) == 1.0
    assert metrics.recall_5deg_5cm(4.999, 0.04999) == 1.0
    assert metrics.recall_5deg_5cm(5.0, 0.0) == 0.0  # strict
    assert metrics.recall_5deg_5cm(0.0, 0.05) == 0.0
    assert metrics.recall_5deg_5cm(180.0, float("inf")) == 0.0  # a failure
    assert metrics.recall_5deg_5cm([1, 6, 1, 1], [0.01, 0.01, 0.06, float("nan")]) == 0.25
    assert metrics.recall_5deg_5cm([], []) == 0.0
    with pytest.raises(ValueError):
        metrics.recall_5deg_5cm([1, 2], [0.1])


def test_shape_guards():
    with pytest.raises(ValueError):
        metrics.add(np.eye(3), np.eye(4), PTS)
    with pytest.raises(ValueError):
        metrics.add(np.eye(4), np.eye(4), PTS[:, :2])
    with pytest.raises(ValueError):
        metrics.translation_error([0, 0], [0, 0, 0])


def test_symmetry_transforms_discrete_mm_to_m():
    S = np.eye(4)
    S[:3, :3] = rot([0, 0, 1], 180)
    S[:3, 3] = (0, 0, 10)  # mm
    syms = metrics.symmetry_transforms({"diameter": 100, "symmetries_discrete": [S.ravel().tolist()]})
    assert syms.shape == (2, 4, 4)
    np.testing.assert_allclose(syms[0], np.eye(4))
    np.testing.assert_allclose(syms[1][:3, 3], [0, 0, 0.01])
    assert metrics.symmetry_transforms({"diameter": 1}).shape == (1, 4, 4)
    assert metrics.symmetry_transforms(None).shape == (1, 4, 4)


def test_symmetry_transforms_continuous_about_offset_axis():
    info = {"symmetries_continuous": [{"axis": [0, 0, 1], "offset": [10, 0, 0]}]}  # axis through x = 1 cm
    syms = metrics.symmetry_transforms(info, continuous_steps=4)
    assert syms.shape == (4, 4, 4)
    np.testing.assert_allclose(syms[0], np.eye(4), atol=1e-12)
    p = np.array([0.01, 0.0, 0.5, 1.0])  # a point on the axis stays put
    for S in syms:
        np.testing.assert_allclose(S @ p, p, atol=1e-12)


def test_pose_error_sym_takes_closest_twin():
    S = np.eye(4)
    S[:3, :3] = rot([0, 0, 1], 180)
    syms = metrics.symmetry_transforms({"symmetries_discrete": [S.ravel().tolist()]})
    T_est = T_GT @ pose(rot([0, 0, 1], 183))
    r, t = metrics.pose_error_sym(T_est, T_GT, syms)
    assert r == pytest.approx(3.0, abs=1e-6)
    assert t == pytest.approx(0.0, abs=1e-12)
    assert metrics.rotation_error_sym_deg(T_est[:3, :3], T_GT[:3, :3], syms) == pytest.approx(3.0, abs=1e-6)
    r0, _ = metrics.pose_error_sym(T_est, T_GT, None)
    assert r0 == pytest.approx(177.0, abs=1e-6)
    assert metrics.rotation_error_sym_deg(T_est, T_GT) == pytest.approx(177.0, abs=1e-6)
