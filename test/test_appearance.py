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
    from one2any_ros.core.frame import make_view

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
    from one2any_ros.core.estimator import PoseEstimator
    from one2any_ros.core.estimator_settings import EstimatorSettings

    shipped = EstimatorSettings()
    assert (shipped.twin_top_k, shipped.appearance_weight, shipped.confidence_margin) == (1, 0.5, 0.2)
    s = shipped.with_updates(appearance_weight=0.0, confidence_margin=0.0, twin_top_k=0)  # without appearance
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
    from one2any_ros.core.estimator import PoseEstimator
    from one2any_ros.core.estimator_settings import EstimatorSettings

    _, ref_view, q_view, _, _ = box_pair
    s = EstimatorSettings().with_updates(twin_top_k=1, appearance_weight=0.5, confidence_margin=0.1, twin_keep=0,
                                         twin_min_confidence=0.0, min_confidence=0.0)  # every twin joins
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


# --- the decision itself: only the print tells the twins apart (issue 25) ----------------------------------
#
# A box is congruent to itself under a 180-degree turn about each of its axes. Seen (nearly) face-on, the turn about
# the facing face's normal is a geometric twin the depth and the silhouette cannot tell from the true pose. The box
# here carries a faint grey print (std 0.04 of full scale around mid-grey): the appearance term's contrast-normalised
# correlation sees it, while the verifier's loose colour band (colour_tau) and the coloured ICP cannot (measured: with
# the appearance term off the two prints below get the same pose; at std 0.1 the verifier alone chose right in 2 of 4
# scenes, and the test would no longer isolate the appearance term). Ambient light only, so that the plain box has no
# shading cue either (a lit face's shading differs between the reference and a turned query: that is a cue too).
# Two queries share one geometry: the box at T1 and at T1 @ TURN (depth and mask identical); only the print differs,
# so a pipeline that ignores the print answers both the same way and is wrong on one of them.
#
# Measured on 8 such scenes (print seed, query turn 55-195 deg in the image, noise seed), classic with twin_top_k=1:
# the right twin in 16/16 queries (error <= 7 deg), confidence 0.71-0.92; appearance off: one of each pair wrong in
# 8/8; the plain box: confidence 0.05-0.37. The shipped default backend (one2any + scorer), twin_top_k=1: right in
# 15/16 (the miss at confidence 0.18), but its plain box read 0.05-0.86 (its scorer's term separates twins it cannot
# see): not asserted. With the shipped twin_top_k=0 the twin is often missing from the candidates (classic: the wrong
# twin at confidence 0.91 in 1 of 8 scenes). The scene below is one of the 8 (seed 4).

TURN = np.diag([-1.0, 1.0, -1.0, 1.0])  # 180 deg about the box's y axis, the normal of its largest face
AMBIENT = {"direction": [0.3, -0.5, -1.0], "color": [1.0, 1.0, 1.0], "ambient": 1.0, "diffuse": 0.0, "specular": 0.0}
TWINS_ON = {"twin_top_k": 1}


def _facing(rot_xyz_deg, t):
    """The box's y axis (its largest face's normal) toward the camera, then turned by xyz Euler angles (camera
    frame), at t metres."""
    from scipy.spatial.transform import Rotation

    T = np.eye(4)
    T[:3, :3] = (Rotation.from_euler("xyz", rot_xyz_deg, degrees=True).as_matrix()
                 @ Rotation.from_euler("x", 90, degrees=True).as_matrix())
    T[:3, 3] = t
    return T


@pytest.fixture(scope="module")
def twin_scene():
    import dataclasses

    import cv2

    from one2any_ros.core.reference import make_reference
    from one2any_ros.core.frame import make_view
    from one2any_ros.data.objects import make_object
    from one2any_ros.data.render import Renderer

    box = make_object(BOX_ID)
    assert np.argmin(box.extents) == 1  # y: the largest face's normal
    g = cv2.GaussianBlur(np.random.default_rng(4).random((256, 256)).astype(np.float32), (0, 0), 6.0)
    g = np.clip(0.55 + 0.04 * (g - g.mean()) / g.std(), 0.0, 1.0)
    printed = dataclasses.replace(box, texture=np.repeat((g * 255).astype(np.uint8)[..., None], 3, axis=2))
    plain = dataclasses.replace(box, texture=np.full((8, 8, 3), 140, np.uint8))
    T_ref = _facing([15, -10, 0], [0.0, 0.0, 0.45])
    T_q = _facing([-8, 12, 135], [0.03, -0.02, 0.5])
    Kr = np.array([[300.0, 0, (W - 1) / 2], [0, 300.0, (H - 1) / 2], [0, 0, 1]])
    out = {}
    with Renderer(seed=0) as r:
        def view(obj, T, seed, ref=False):
            o = r.render(obj, T, Kr, W, H, background="none", light=AMBIENT, rng=np.random.default_rng(seed))
            return make_view(o["rgb"], o["depth"], o["mask"], Kr, T_cam_obj=T if ref else None)

        for name, obj in (("printed", printed), ("plain", plain)):
            out[name] = make_reference(view(obj, T_ref, 14, ref=True))
        queries = {"T1": (view(printed, T_q, 4), T_q), "T1@TURN": (view(printed, T_q @ TURN, 4), T_q @ TURN)}
        plain_query = (view(plain, T_q, 4), T_q)
    a, b = queries["T1"][0], queries["T1@TURN"][0]
    assert np.array_equal(a.mask, b.mask) and np.abs(a.depth - b.depth).max() < 1e-3  # one geometry, two prints
    return out["printed"], queries, out["plain"], plain_query


def _fresh_estimate(est, ref, view):
    """``est.estimate(view)`` as the first frame after ``set_reference`` (no last pose joins the hypotheses)."""
    est.set_reference(ref)
    return est.estimate(view)


def _rotation_error(res, T_true):
    from one2any_ros.core.metrics import rotation_errors_deg

    return float(rotation_errors_deg(res.T_camera_object[None, :3, :3], T_true[:3, :3])[0])


@pytest.mark.parametrize("backend", ["classic", "auto"])
def test_the_print_alone_picks_the_right_twin(twin_scene, backend):
    """Both prints of one geometry: each gets its own right twin (measured here: classic 1.4 and 1.1 deg, auto 1.4
    and 2.0 deg, the wrong twin 178+ deg away; confidence 0.89-0.92). ``auto`` is the shipped default backend (the
    learned one with its scorer when its checkpoint loads)."""
    from one2any_ros.core.estimator import PoseEstimator
    from one2any_ros.core.estimator_settings import EstimatorSettings

    ref, queries, _, _ = twin_scene
    est = PoseEstimator(backend, settings=EstimatorSettings().with_updates(**TWINS_ON))
    for name, (view, T_true) in queries.items():
        res = _fresh_estimate(est, ref, view)
        err = _rotation_error(res, T_true)
        assert err < 10.0, f"{backend}, box at {name}: {err:.1f} deg from the truth (the twin is 180 deg away)"
        assert res.confidence > 0.6, (name, res.confidence)


def test_without_the_appearance_term_the_print_does_not_decide(twin_scene):
    """The same two queries with the appearance term off: the pipeline's other colour cues cannot see the faint
    print, so both get the same pose (measured: 2.3 deg apart) and one of them is the wrong twin. This is what
    makes the test above a test of the appearance term."""
    from one2any_ros.core.estimator import PoseEstimator
    from one2any_ros.core.estimator_settings import EstimatorSettings
    from one2any_ros.core.metrics import rotation_errors_deg

    ref, queries, _, _ = twin_scene
    est = PoseEstimator("classic", settings=EstimatorSettings().with_updates(appearance_weight=0.0, **TWINS_ON))
    results = {name: _fresh_estimate(est, ref, view) for name, (view, _) in queries.items()}
    (ra, rb) = results.values()
    apart = float(rotation_errors_deg(ra.T_camera_object[None, :3, :3], rb.T_camera_object[:3, :3])[0])
    assert apart < 10.0, apart
    errors = sorted(_rotation_error(results[n], T) for n, (_, T) in queries.items())
    assert errors[0] < 10.0 and errors[1] > 170.0, errors


def test_a_plain_box_lowers_the_confidence(twin_scene):
    """Nothing tells the plain box's twins apart: the pose is right up to the turn, and the confidence says the
    turn is a guess (measured: 0.054, near the min_confidence floor, against 0.89-0.92 for the printed box;
    0.05-0.37 over the 8 scenes). Without the margin factor (confidence_margin 0) it reads 0.90."""
    from one2any_ros.core.estimator import PoseEstimator
    from one2any_ros.core.estimator_settings import EstimatorSettings

    ref, queries, plain_ref, (plain_view, T_true) = twin_scene
    est = PoseEstimator("classic", settings=EstimatorSettings().with_updates(**TWINS_ON))
    plain = _fresh_estimate(est, plain_ref, plain_view)
    assert min(_rotation_error(plain, T_true), _rotation_error(plain, T_true @ TURN)) < 10.0  # one of the twins
    printed = [_fresh_estimate(est, ref, view).confidence for view, _ in queries.values()]
    assert plain.confidence < 0.3, plain.confidence
    assert plain.confidence < 0.5 * min(printed), (plain.confidence, printed)
    unmargined = PoseEstimator("classic", settings=est.settings.with_updates(confidence_margin=0.0))
    assert _fresh_estimate(unmargined, plain_ref, plain_view).confidence > 0.6  # the margin is what lowers it


def test_the_published_confidence_folds_in_the_texture(twin_scene):
    """The confidence a client reads is the verifier's times what the texture leaves of it
    (``confidence_appearance``): the verifier's alone for a plain reference (its appearance score is noise) or with
    the setting 0; never above the verifier's; and falling with the appearance score, to 0 where the texture says
    the pose is wrong (a negative correlation). The gates keep the verifier's (``verifier_confidence``)."""
    from one2any_ros.core.estimator import PoseEstimator
    from one2any_ros.core.estimator_settings import EstimatorSettings

    ref, queries, plain_ref, (plain_view, _) = twin_scene
    est = PoseEstimator("classic", settings=EstimatorSettings().with_updates(**TWINS_ON))
    assert est.settings.confidence_appearance > 0  # shipped on
    printed = _fresh_estimate(est, ref, queries["T1"][0])
    a0, ceiling = est.settings.confidence_appearance, est._appearance_ceiling()
    assert est._cache.textured and printed.appearance is not None
    expected = printed.verifier_confidence * min(1.0, max(0.0, printed.appearance / (a0 * ceiling)))
    assert printed.confidence == pytest.approx(expected, rel=1e-9)
    assert printed.confidence <= printed.verifier_confidence
    assert est._appearance_factor(-0.2) == 0.0 and est._appearance_factor(None) == 1.0
    assert est._appearance_factor(0.2 * a0 * ceiling) == pytest.approx(0.2)
    assert est._appearance_factor(0.2 * a0 * ceiling) < est._appearance_factor(0.6 * a0 * ceiling) <= 1.0
    plain = _fresh_estimate(est, plain_ref, plain_view)
    assert not est._cache.textured and plain.confidence == plain.verifier_confidence
    off = PoseEstimator("classic", settings=est.settings.with_updates(confidence_appearance=0.0))
    again = _fresh_estimate(off, ref, queries["T1"][0])
    assert again.confidence == again.verifier_confidence == pytest.approx(printed.verifier_confidence, rel=1e-6)


def test_the_signal_carries_the_texture_not_a_turning_bodys_shading():
    """A body of revolution turning under a lamp: its shading stays with the light while its texture moves. The
    signal must follow the texture: the shaded image's signal matches the evenly lit one, hardly the shading's own,
    and barely a view whose texture lags 6 px behind under the same shading (with the window at 0.15 the shading
    made that lagging view correlate 0.09, and tracking kept poses 20-28 deg behind a turning frustum)."""
    import cv2

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:160, :160]
    mask = ((xx - 80) / 60.0) ** 2 + ((yy - 80) / 45.0) ** 2 < 1
    tex = cv2.GaussianBlur(rng.random((160, 160)).astype(np.float32), (0, 0), 2.0)
    tex = (tex - tex.mean()) / tex.std()
    shade = np.cos(np.clip((xx - 80) / 60.0, -1, 1) * np.pi / 2 * 0.9)  # the light falling off to the sides

    def image(t, s):
        g = np.clip(128 * (0.5 + 0.5 * s) * (1 + 0.25 * t), 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)

    def corr(a, b):
        return float(np.corrcoef(a[mask], b[mask])[0, 1])

    shaded = appearance_image(image(tex, shade), mask)
    assert corr(shaded, appearance_image(image(tex, np.ones_like(shade)), mask)) > 0.98
    assert abs(corr(shaded, appearance_image(image(np.zeros_like(tex), shade), mask))) < 0.1
    assert corr(shaded, appearance_image(image(np.roll(tex, 6, axis=1), shade), mask)) < 0.06
