"""Fixed held-out pairs for the accuracy tests (test_default_accuracy.py): a reference view and a query view of
the same TEST-split object (never trained on, never used to choose a setting), rendered by the data module's
pybullet renderer with deterministic seeds, and each backend's results on them.

Per family (``objects.FAMILIES``: "shape_asymmetric", "texture_only" = shape-symmetric bodies told apart only
by their texture), ``n`` distinct objects, one pair each; the rotation differences reference -> query are
stratified over [0, max_deg] (pair i in the i-th of n equal bins), so every 30 deg bin gets its share. Each view
gets its own position (the object 70-150 px across), background plane with distractors, light and sensor noise.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from one2any_ros.core import metrics
from one2any_ros.core.errors import One2AnyError
from one2any_ros.core.frame import View, make_view
from one2any_ros.data.objects import make_object, split_ids
from one2any_ros.data.render import DEFAULT_K, Renderer, rotation_at_angle, sample_pose

W, H = 320, 240
K = DEFAULT_K.copy()
K[:2] *= 0.5  # 320x240 (as test_estimator.py): the objects still cover a few thousand pixels
K[0, 2], K[1, 2] = (W - 1) / 2, (H - 1) / 2
MODEL_POINTS = 1000  # surface points per object for ADD
PIXEL_DIAMETER = (70.0, 150.0)  # the object's apparent diameter, px (log-uniform; DESIGN 8: objects of 80-200 px)


@dataclass
class Pair:
    family: str
    obj_id: int
    angle_deg: float  # rotation difference reference -> query
    ref: View  # with the reference's ground-truth pose (T_cam_obj), as the one-reference protocol gives it
    query: View
    T_query: np.ndarray  # (4,4) ground truth of the query, m
    pts: np.ndarray  # (MODEL_POINTS,3) object frame, m
    diameter: float  # m


def render_pairs(family: str, n: int, *, seed: int, max_deg: float = 120.0) -> list[Pair]:
    """``n`` pairs of ``family`` test objects (one object each), rotation differences stratified over [0, max_deg]."""
    ids = split_ids("test", n, seed=seed, family=family)
    out = []
    with Renderer(seed=seed) as r:
        for i, oid in enumerate(ids):
            rng = np.random.default_rng([seed, i])
            obj = make_object(oid)
            assert obj.split == "test" and not obj.symmetric  # held out; scored by ADD (texture tells twins apart)
            angle = (i + rng.uniform(0.0, 1.0)) / n * max_deg
            T0, v0 = _draw(r, obj, rng, None, 0.0)
            T1, v1 = _draw(r, obj, rng, T0[:3, :3], angle)
            out.append(Pair(family=family, obj_id=int(oid), angle_deg=float(angle),
                            ref=make_view(v0["rgb"], v0["depth"], v0["mask"], K, T_cam_obj=T0),
                            query=make_view(v1["rgb"], v1["depth"], v1["mask"], K), T_query=T1,
                            pts=obj.sample_surface(MODEL_POINTS, seed=0), diameter=float(obj.diameter)))
    return out


def _draw(r: Renderer, obj, rng: np.random.Generator, R0: np.ndarray | None, angle_deg: float):
    """One view: rotation ``angle_deg`` from R0 (uniform when R0 is None), at a distance that gives the object an
    apparent diameter in PIXEL_DIAMETER, anywhere in the image; background plane, light and noise random."""
    R = None if R0 is None else rotation_at_angle(R0, np.radians(angle_deg), rng)
    z = K[0, 0] * obj.diameter / float(np.exp(rng.uniform(*np.log(PIXEL_DIAMETER))))
    T = sample_pose(rng, K=K, width=W, height=H, distance_range=(z, z), radius=0.5 * obj.diameter, R=R)
    return T, r.render(obj, T, K, W, H, rng=rng)


@dataclass
class Outcome:
    """One backend's answer to one pair, scored with core.metrics (ADD: both families are asymmetric objects)."""

    pair: Pair
    ok: bool
    reason: str | None
    err_m: float  # ADD, inf when no pose
    hit: bool  # ADD @ 0.1 d
    rot_err_deg: float
    result: object | None = None  # the PoseResult
    pool: object | None = None  # the estimator's HypothesisPool (record_pool)
    learned_rot_err_deg: list[float] = field(default_factory=list)  # each learned (RANSAC) hypothesis's rotation error


def run_pairs(est, pairs: list[Pair]) -> list[Outcome]:
    """Estimate every pair's query with ``est`` (a PoseEstimator; its pool recorded) after setting its reference."""
    est.record_pool = True
    out = []
    for p in pairs:
        est.set_reference(p.ref)
        try:
            res = est.estimate(p.query)
        except One2AnyError as e:
            out.append(Outcome(p, False, str(getattr(e, "reason", "error")), np.inf, False, 180.0))
            continue
        T = np.asarray(res.T_camera_object, np.float64)
        err = metrics.add(T, p.T_query, p.pts)
        pool = est.last_pool
        T_C_O = est.reference.T_C_O
        learned = [metrics.rotation_error_deg((Tc @ T_C_O)[:3, :3], p.T_query[:3, :3])
                   for Tc, s in zip(pool.T_camera_C, pool.sources) if s.startswith("ransac")]
        out.append(Outcome(p, True, None, err, metrics.add_s_01d_hit(err, p.diameter),
                           metrics.rotation_error_deg(T[:3, :3], p.T_query[:3, :3]), res, pool, learned))
    return out
