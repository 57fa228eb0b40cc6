"""Geometric twins cheap enough to run (issue 28, "Texture decides where it can"): the axis of revolution fitted once
per reference and shared by tracking's spins and the twins, the twins' coarse stage by table lookup with only the
best ``twin_keep`` going on, and the learned term only on the twins the appearance term will compare.

A textured cylinder is ray-cast by hand (no renderer: fast and exact), so its axis and twins are known."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

W, H = 200, 160
K = np.array([[260.0, 0, (W - 1) / 2], [0, 260.0, (H - 1) / 2], [0, 0, 1]])
RADIUS, HEIGHT = 0.04, 0.12


def _print():
    """A smooth random print over (angle, height) of the cylinder's side, 0..1."""
    import cv2

    g = cv2.GaussianBlur(np.random.default_rng(7).random((64, 64)).astype(np.float32), (0, 0), 3.0)
    return (g - g.min()) / (g.max() - g.min())


def _cylinder_view(T_cam_obj: np.ndarray, tex: np.ndarray, ref: bool = False):
    """Ray-cast the side of a cylinder (axis = the object's z, centred on its origin) into a W x H camera."""
    from one2any_ros.core.frame import make_view

    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    d = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], axis=-1)
    R, t = T_cam_obj[:3, :3], T_cam_obj[:3, 3]
    o, dl = -R.T @ t, d @ R  # the camera centre and the rays in the object frame
    a = dl[..., 0] ** 2 + dl[..., 1] ** 2
    b = 2 * (o[0] * dl[..., 0] + o[1] * dl[..., 1])
    c = o[0] ** 2 + o[1] ** 2 - RADIUS ** 2
    disc = b * b - 4 * a * c
    s = (-b - np.sqrt(np.maximum(disc, 0.0))) / np.maximum(2 * a, 1e-12)  # the near hit, depth along z
    p = o + dl * s[..., None]
    mask = (disc > 0) & (s > 0) & (np.abs(p[..., 2]) < HEIGHT / 2)
    ang = (np.arctan2(p[..., 1], p[..., 0]) / (2 * np.pi) + 0.5) * (tex.shape[1] - 1)
    hgt = (p[..., 2] / HEIGHT + 0.5) * (tex.shape[0] - 1)
    g = tex[np.clip(hgt, 0, tex.shape[0] - 1).astype(int), np.clip(ang, 0, tex.shape[1] - 1).astype(int)]
    rgb = np.repeat((np.where(mask, 0.2 + 0.6 * g, 0.1)[..., None] * 255).astype(np.uint8), 3, axis=2)
    depth = np.where(mask, s, 0.0).astype(np.float32)
    return make_view(rgb, depth, mask, K, T_cam_obj=T_cam_obj if ref else None)


def _pose(euler_deg, t):
    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("xyz", euler_deg, degrees=True).as_matrix()
    T[:3, 3] = t
    return T


def _spin(deg: float) -> np.ndarray:
    """A turn of the object about its axis of revolution (its z)."""
    return _pose([0, 0, deg], [0, 0, 0])


@pytest.fixture(scope="module")
def scene():
    tex = _print()
    T_ref = _pose([100, 0, 20], [0.0, 0.0, 0.45])  # the axis across the image, tilted a little toward the camera
    T_q = T_ref @ _spin(35)  # the query turned 35 deg about the axis: the same silhouette, another strip of print
    return _cylinder_view(T_ref, tex, ref=True), _cylinder_view(T_q, tex), T_q


def _estimator(**kw):
    from one2any_ros.core.estimator import PoseEstimator
    from one2any_ros.core.estimator_settings import EstimatorSettings

    return PoseEstimator("classic", settings=EstimatorSettings().with_updates(**kw))


def test_the_axis_is_fitted_once_per_reference(scene, monkeypatch):
    """set_reference fits the axis for tracking's spins; the twins turn about the same cached axis instead of
    fitting it again on the first global search (25-50 ms each)."""
    from one2any_ros.core import symmetry

    calls = []
    fit = symmetry.fit_revolution_axis
    monkeypatch.setattr(symmetry, "fit_revolution_axis", lambda *a, **k: calls.append(1) or fit(*a, **k))
    ref_view, q_view, _ = scene
    est = _estimator(twin_top_k=1)
    est.set_reference(ref_view)
    assert len(calls) == 1
    est.estimate(q_view)
    est.estimate(q_view)
    assert len(calls) == 1 and est._cache.axis is not None
    assert len(est._cache.twins) == 23 + 9  # spins about the axis, quarter turns and flips about the principal axes


def test_kept_twins_include_the_right_spin(scene):
    """From a candidate turned 90 deg the wrong way about the axis, the twins settled by the lookup stage and the
    best ``twin_keep`` of them (by verifier and appearance: every spin has the same inliers, so ranking by those kept
    arbitrary spins) contain the true pose within a few degrees, and there are ``twin_keep``."""
    from one2any_ros.core.geometry import invert_transform
    from one2any_ros.core.metrics import rotation_errors_deg

    ref_view, q_view, T_q = scene
    est = _estimator(twin_top_k=1, twin_keep=8)
    ref = est.set_reference(ref_view)
    q = est._context(q_view)
    T_true_C = T_q @ invert_transform(ref.T_C_O)
    wrong = T_q @ _spin(-90) @ invert_transform(ref.T_C_O)
    qsel = np.arange(0, len(q.points), 7)
    Tt = est._twins(wrong[None], q, lambda T: est._score(T, q, qsel, q.colour[qsel], q.target, None, None))
    assert Tt.shape == (8, 4, 4)
    err = rotation_errors_deg(Tt[:, :3, :3], T_true_C[:3, :3])
    assert err.min() < 5.0, np.round(err, 1)


def test_the_learned_term_scores_only_the_twins_appearance_compares(scene):
    """The backend's candidate term runs on the refined candidates and then only on the twins within
    ``appearance_margin`` of the best verifier score (the others drop out of the choice whatever their term)."""
    from one2any_ros.core.backends.classic import ClassicBackend
    from one2any_ros.core.estimator import PoseEstimator
    from one2any_ros.core.estimator_settings import EstimatorSettings

    class Termed(ClassicBackend):
        sizes: list[int] = []

        def candidate_term(self, ref, query, T_query_C, score):
            self.sizes.append(len(T_query_C))
            return np.zeros(len(T_query_C))

    s = EstimatorSettings().with_updates(twin_top_k=1, twin_keep=0, twin_min_confidence=0.0)  # every twin joins
    est = PoseEstimator(Termed(), settings=s)
    est.record_pool = True
    est.set_reference(scene[0])
    est.estimate(scene[1])
    p = est.last_pool
    twin = np.array(p.refined_sources) == "twin"
    close = p.refined_score >= p.refined_score.max() - s.appearance_margin
    assert est.backend.sizes == [s.refine_top_k, int((twin & close).sum())]
    assert (twin & close).sum() < twin.sum()  # some twins were left out, so the test tells


def test_a_twin_that_explains_the_depth_worse_does_not_join(scene):
    """Twins below ``twin_min_confidence`` x the best candidate's verifier confidence stay out of the choice (a true
    twin explains the depth as well as its candidate); at 0 the same search keeps such twins, so the test tells."""
    ref_view, q_view, _ = scene
    kept = {}
    for floor in (0.0, 0.5):
        est = _estimator(twin_top_k=1, twin_keep=0, twin_min_confidence=floor)  # every twin settled
        est.record_pool = True
        est.set_reference(ref_view)
        est.estimate(q_view)
        p = est.last_pool
        twin = np.array(p.refined_sources) == "twin"
        kept[floor] = (p.refined_confidence[twin], p.refined_confidence[~twin].max(), twin.sum())
    low, best, _ = kept[0.0]
    assert (low < 0.5 * best).any()
    high, best, n = kept[0.5]
    assert n > 0 and (high >= 0.5 * best).all()


def _candidates(T, sources, score):
    from one2any_ros.core.candidates import Candidates

    k = len(sources)
    return Candidates(T=np.array(T), score=np.asarray(score, float), verifier_score=np.zeros(k),
                      conf=np.full(k, 0.8), agree=np.zeros(k), violation=np.zeros(k), sources=list(sources), term=None)


def test_a_twin_wins_only_by_its_texture(scene):
    """A twin that scores best stays the winner only when its appearance beats the search's own best candidate's
    by ``twin_min_appearance_gain`` and it passes the inlier gate; else that candidate wins (the twin stays its
    rival). With no own candidate compared (all dropped out of the choice) the twin wins on geometry; -2 turns the
    texture rule off."""
    from one2any_ros.core.geometry import invert_transform

    ref_view, q_view, T_q = scene
    est = _estimator(twin_min_appearance_gain=0.05)
    ref = est.set_reference(ref_view)
    q = est._context(q_view)
    T = T_q @ invert_transform(ref.T_C_O)  # every candidate on the surface: the inlier gate passes
    c = _candidates([T] * 4, ["grid", "track", "twin", "twin"], [0.70, 0.72, 0.80, 0.75])
    assert est._twin_winner(c, np.array([0.4, 0.5, 0.53, 0.2]), 2, q) == 1  # 0.03 better: the own candidate
    assert est._twin_winner(c, np.array([0.4, 0.5, 0.60, 0.2]), 2, q) == 2  # 0.10 better: the twin
    c.score[:2] = -np.inf  # the own candidates left the choice (far below the best verifier score)
    assert est._twin_winner(c, np.array([np.nan, np.nan, 0.1, 0.2]), 2, q) == 2
    c.score[:2] = [0.70, 0.72]
    off = _estimator(twin_min_appearance_gain=-2.0)
    off.set_reference(ref_view)
    assert off._twin_winner(c, np.array([0.4, 0.9, 0.1, 0.2]), 2, q) == 2
    away = T.copy()
    away[2, 3] += 1.0  # a twin a metre behind the surface: no inliers
    c.T[2] = away
    assert est._twin_winner(c, np.array([0.4, 0.5, 0.90, 0.2]), 2, q) == 1
