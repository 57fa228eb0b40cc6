"""Appearance decides (issue 16): the texture correlation term and the estimator's opt-in hook."""
import numpy as np
import pytest

from one2any_ros.core.appearance import (AppearanceModel, AppearanceSettings, appearance_image, appearance_scores,
                                    build_appearance, margin_factor, reference_appearance)
from one2any_ros.core.geometry import invert_transform

W, H = 320, 240
K = np.array([[300.0, 0, (W - 1) / 2], [0, 300.0, (H - 1) / 2], [0, 0, 1]])


def _texture(n=64, seed=0):
    """An asymmetric blob texture (values 0..1) on the unit square."""
    import cv2

    t = np.random.default_rng(seed).random((n, n)).astype(np.float32)
    return cv2.GaussianBlur(t, (0, 0), 3.0)


def _render_plane(T_cam_P, tex, size=0.2, gain=1.0, offset=0.0):
    """Ray-cast a textured square (side ``size`` m, in the plane z=0 of frame P, centred on its origin) into a
    W x H camera: rgb, depth, mask."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    d = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], axis=-1)  # rays, z = 1
    R, t = T_cam_P[:3, :3], T_cam_P[:3, 3]
    n = R[:, 2]
    s = (n @ t) / (d @ n)  # depth along z of the ray's hit
    X = d * s[..., None]
    p = (X - t) @ R  # in P
    inside = (np.abs(p[..., 0]) < size / 2) & (np.abs(p[..., 1]) < size / 2) & (s > 0)
    ti = np.clip(((p[..., :2] / size + 0.5) * tex.shape[0]).astype(int), 0, tex.shape[0] - 1)
    g = np.where(inside, tex[ti[..., 1], ti[..., 0]], 0.3) * gain + offset
    rgb = np.clip(np.repeat(g[..., None], 3, axis=2) * 255, 0, 255).astype(np.uint8)
    depth = np.where(inside, s, 0.0).astype(np.float32)
    return rgb, depth, inside


def _pose(rx_deg, t):
    from scipy.spatial.transform import Rotation

    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("xyz", [rx_deg, 15, 0], degrees=True).as_matrix()
    T[:3, 3] = t
    return T


@pytest.fixture(scope="module")
def plane():
    tex = _texture()
    T_ref = _pose(180 + 20, [0.0, 0.0, 0.6])  # the plane's +z faces away: the camera sees its front
    T_q = _pose(180 - 25, [0.03, -0.02, 0.7])
    rgb, depth, mask = _render_plane(T_ref, tex)
    T_ref_C = T_ref  # C = P here (any frame works: the model is built in it)
    model = build_appearance(rgb, depth, mask, K, T_ref_C)
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])  # 180 deg about the plane's normal: the geometry's twin
    return tex, model, T_q, flip


def _score(model, tex, T_q, T_cands, **kw):
    rgb, depth, mask = _render_plane(T_q, tex, **{k: kw.pop(k) for k in ("gain", "offset") if k in kw})
    mask = kw.pop("mask_fn", lambda m: m)(mask)
    img = appearance_image(rgb, mask)
    return appearance_scores(model, np.asarray(T_cands), img, depth, mask, K, tau=0.01, **kw)


def test_true_pose_correlates_and_flip_does_not(plane):
    tex, model, T_q, flip = plane
    assert len(model.points_C) == 4000 and np.isfinite(model.signal).all()
    r = _score(model, tex, T_q, [T_q, T_q @ flip])
    assert r.n[0] > 1000 and r.n[1] > 1000  # geometry cannot tell them apart: both fully co-visible
    assert r.zncc[0] > 0.9
    assert r.zncc[1] < 0.4 and r.score[0] > r.score[1] + 0.5


def test_robust_to_light_gain_and_offset(plane):
    tex, model, T_q, flip = plane
    r = _score(model, tex, T_q, [T_q, T_q @ flip], gain=0.5, offset=0.2)
    assert r.zncc[0] > 0.85 and r.score[0] > r.score[1] + 0.4


def test_shrinkage_toward_zero_with_few_points(plane):
    tex, model, T_q, _ = plane

    def tiny(mask):  # only a small window of the query mask: few co-visible points
        v, u = np.nonzero(mask)
        out = np.zeros_like(mask)
        cv, cu = int(np.median(v)), int(np.median(u))
        out[cv - 3:cv + 4, cu - 3:cu + 4] = mask[cv - 3:cv + 4, cu - 3:cu + 4]
        return out

    full = _score(model, tex, T_q, [T_q])
    few = _score(model, tex, T_q, [T_q], mask_fn=tiny)
    assert 10 <= few.n[0] < 100
    np.testing.assert_allclose(few.score, few.zncc * few.n / (few.n + AppearanceSettings().n0))
    assert few.score[0] < full.score[0]
    # nothing co-visible (the plane moved off its place): no evidence, score exactly 0
    T_off = T_q.copy()
    T_off[:3, 3] += [0.0, 0.0, 0.3]
    off = _score(model, tex, T_q, [T_off])
    assert off.n[0] == 0 and off.score[0] == 0.0 and off.zncc[0] == 0.0


def test_zncc_of_hand_made_points_and_single_pose():
    """Points right in front of the camera whose signal equals (an affine map of) the query image there."""
    rng = np.random.default_rng(0)
    v, u = rng.integers(20, H - 20, 500), rng.integers(20, W - 20, 500)
    z = np.full(500, 0.5)
    pts = np.stack([(u - K[0, 2]) * z / K[0, 0], (v - K[1, 2]) * z / K[1, 1], z], axis=1)
    img = rng.normal(size=(H, W)).astype(np.float32)
    depth = np.full((H, W), 0.5, np.float32)
    mask = np.ones((H, W), bool)
    m = AppearanceModel(points_C=pts, signal=(3 * img[v, u] + 1).astype(np.float32))
    r = appearance_scores(m, np.eye(4), img, depth, mask, K, tau=0.01)
    assert r.zncc.shape == (1,) and r.zncc[0] == pytest.approx(1.0, abs=1e-6)
    m2 = AppearanceModel(points_C=pts, signal=-img[v, u])
    r2 = appearance_scores(m2, np.eye(4), img, depth, mask, K, tau=0.01)
    assert r2.zncc[0] == pytest.approx(-1.0, abs=1e-6)
    depth_far = depth + 0.1  # depth disagrees by more than tau: nothing is co-visible
    assert appearance_scores(m, np.eye(4), img, depth_far, mask, K, tau=0.01).n[0] == 0


def test_margin_factor():
    T = np.tile(np.eye(4), (3, 1, 1))
    from scipy.spatial.transform import Rotation

    T[1, :3, :3] = Rotation.from_euler("z", 5, degrees=True).as_matrix()  # a near-duplicate, not a rival
    T[2, :3, :3] = Rotation.from_euler("z", 180, degrees=True).as_matrix()  # a flip: a rival
    s = np.array([1.0, 0.99, 0.95])
    assert margin_factor(s, T, 0, margin=0.0) == 1.0  # off
    assert margin_factor(s, T, 0, margin=0.1) == pytest.approx(0.5)
    assert margin_factor(s, T, 0, margin=0.04) == 1.0
    # candidates outside the appearance margin (score -inf) are no rivals
    assert margin_factor(np.array([1.0, 0.99, -np.inf]), T, 0, margin=0.1) == 1.0


# --- on the project's renderer and estimator --------------------------------------------------------------

BOX_ID = 1055253  # a validation object: a box (geometric 180-degree twins), its texture differs face to face


@pytest.fixture(scope="module")
def box_pair():
    return _box_pair()


def _box_pair():
    from one2any_ros.data.objects import make_object
    from one2any_ros.data.render import DEFAULT_K, Renderer, rotation_at_angle, sample_pose
    from one2any_ros.core.reference import make_view

    Kr = DEFAULT_K.copy()
    Kr[:2] *= 0.5
    Kr[0, 2], Kr[1, 2] = (W - 1) / 2, (H - 1) / 2
    obj = make_object(BOX_ID)
    assert obj.shape_symmetry == "discrete" and not obj.symmetric
    rng = np.random.default_rng(3)
    with Renderer(seed=3) as r:
        T0 = sample_pose(rng, K=Kr, width=W, height=H, distance_range=(0.4, 0.5), radius=obj.diameter / 2)
        T1 = T0.copy()
        T1[:3, :3] = rotation_at_angle(T0[:3, :3], np.deg2rad(30), rng)
        views = []
        for T in (T0, T1):
            out = r.render(obj, T, Kr, W, H, rng=rng)
            views.append(make_view(out["rgb"], out["depth"], out["mask"], Kr,
                                   T_cam_obj=T if T is T0 else None))
    return obj, views[0], views[1], T0, T1


def test_rendered_box_true_pose_beats_its_flip(box_pair):
    from one2any_ros.core.reference import make_reference

    obj, ref_view, q_view, T0, T1 = box_pair
    ref = make_reference(ref_view)
    model = reference_appearance(ref)
    T_true = T1 @ invert_transform(T0) @ ref.T_refcam_C
    # the box's 180-degree turns about its own axes (models_info symmetries): same surface, other faces
    flips = [T1 @ np.diag([a, b, c, 1.0]) @ invert_transform(T0) @ ref.T_refcam_C
             for a, b, c in ([1, -1, -1], [-1, 1, -1], [-1, -1, 1])]
    img = appearance_image(q_view.rgb, q_view.mask)
    r = appearance_scores(model, np.stack([T_true] + flips), img, q_view.depth, q_view.mask, q_view.K,
                          tau=max(0.03 * ref.diameter, 0.008))
    assert r.zncc[0] > 0.6, r
    assert r.score[0] > r.score[1:].max() + 0.2, r


def test_switched_off_the_hook_leaves_the_estimator_unchanged(box_pair):
    from one2any_ros.core.estimator import EstimatorSettings, PoseEstimator

    shipped = EstimatorSettings()
    assert (shipped.twin_top_k, shipped.appearance_weight, shipped.confidence_margin) == (0, 0.5, 0.2)
    s = shipped.with_updates(appearance_weight=0.0, confidence_margin=0.0)  # the pipeline without appearance
    _, ref_view, q_view, _, _ = box_pair
    results = []
    # the knobs that only matter when the hook is on must not change anything while it is off
    for kw in ({}, {"appearance_margin": 5.0, "twin_points": 7, "confidence_rival_deg": 1.0,
                    "appearance_points": 50}):
        est = PoseEstimator("classic", settings=s.with_updates(**kw))
        est.record_pool = True
        est.set_reference(ref_view)
        results.append((est.estimate(q_view), est.last_pool))
    (a, pa), (b, pb) = results
    np.testing.assert_array_equal(a.T_camera_C, b.T_camera_C)
    assert (a.confidence, a.score, a.source) == (b.confidence, b.score, b.source)
    assert pa.refined_appearance is None and "twin" not in pa.refined_sources
    assert len(pa.refined_T_camera_C) == s.refine_top_k


def test_hook_on_adds_twins_and_appearance(box_pair):
    from one2any_ros.core.estimator import EstimatorSettings, PoseEstimator

    _, ref_view, q_view, _, _ = box_pair
    s = EstimatorSettings().with_updates(twin_top_k=1, appearance_weight=0.5, confidence_margin=0.1)
    est = PoseEstimator("classic", settings=s)
    est.record_pool = True
    est.set_reference(ref_view)
    res = est.estimate(q_view)
    p = est.last_pool
    # a box has no axis of revolution: its twins are turns by every step about each of its principal axes
    assert p.refined_sources.count("twin") == len(est._cache.twins) == 3 * (s.twin_angles - 1)
    assert p.refined_appearance.shape == (len(p.refined_T_camera_C),)
    assert "twins" in res.timings_ms and "appearance" in res.timings_ms
    assert 0.0 <= res.confidence <= 1.0
