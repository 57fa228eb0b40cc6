"""Tracking's starts from the reference (``track_network_every``): the learned backend's own hypotheses (RANSAC on
its ROC prediction) join the starts from the last pose on every Nth tracked frame, and one of them wins only where
its texture fits at least as well as the best tracked candidate's (``PoseEstimator._tracked_winner``). The paired measurement behind it (the long
rendered sequences, ``compare_tracking`` two seeds) is in docs/tracking.md, "Starts from the reference"."""
import numpy as np
import pytest

from one2any_ros.core import metrics
from one2any_ros.core.candidates import Candidates
from one2any_ros.core.estimator import PoseEstimator
from one2any_ros.core.estimator_settings import EstimatorSettings
from one2any_ros.core.frame import decode_frame


def _candidates(sources: list[str], score: list[float]) -> Candidates:
    """Hand-made refined candidates, 30 deg apart about z (so the margin sees distinct rivals)."""
    k = len(sources)
    T = np.tile(np.eye(4), (k, 1, 1))
    for i in range(k):
        a = np.radians(30.0 * i)
        T[i, :2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    return Candidates(T=T, score=np.array(score, float), verifier_score=np.array(score, float),
                      conf=np.full(k, 0.9), agree=np.ones(k), violation=np.zeros(k), sources=list(sources), term=None)


def test_a_network_candidate_wins_only_where_its_texture_fits_at_least_as_well():
    est = PoseEstimator("classic", settings=EstimatorSettings())
    conf_before = np.full(3, 0.9)

    c = _candidates(["track", "track", "network"], [1.0, 0.8, 1.2])
    assert est._tracked_winner(c, 2, np.array([0.7, 0.5, 0.8]), conf_before) == 2  # better texture: it keeps the win

    c = _candidates(["track", "track", "network"], [1.0, 0.8, 1.2])
    c.conf = np.array([0.9, 0.9, 0.1])  # what the margin left after the network candidate won
    assert est._tracked_winner(c, 2, np.array([0.7, 0.5, 0.6]), conf_before) == 0  # worse texture: the best tracked
    # the margin taken again among the tracked candidates alone: as if the network candidate had not been there
    alone = est._margin_confidence(_candidates(["track", "track"], [1.0, 0.8]), 0)
    assert c.conf[:2] == pytest.approx(alone)

    c = _candidates(["track", "track", "network"], [1.0, 0.99, 0.95])
    c.conf = np.array([0.2, 0.9, 0.9])  # a tracked winner with a close network rival: the margin lowered it
    assert est._tracked_winner(c, 0, np.array([0.7, 0.5, 0.6]), np.full(3, 0.9)) == 0
    rival = est._margin_confidence(_candidates(["track", "track"], [1.0, 0.99]), 0)
    assert c.conf[0] == pytest.approx(rival[0])  # ... taken again without it: only the tracked rival counts

    c = _candidates(["track", "network"], [1.0, 1.2])
    assert est._tracked_winner(c, 1, None, np.full(2, 0.9)) == 0  # no texture to judge by: the tracked pose

    c = _candidates(["track", "network"], [1.3, 1.2])
    assert est._tracked_winner(c, 0, np.array([0.1, 0.9]), np.full(2, 0.9)) == 0  # a tracked winner stays

    c = _candidates(["network", "network"], [1.3, 1.2])
    assert est._tracked_winner(c, 0, np.array([0.1, 0.9]), np.full(2, 0.9)) == 0  # nothing tracked to prefer


@pytest.fixture(scope="module")
def turning_object():
    pytest.importorskip("pybullet")
    from one2any_ros.data.multi_scene import render_multi_object_frames
    from one2any_ros.data.objects import make_object, split_ids
    from one2any_ros.data.render import axis_angle_to_matrix, random_rotation

    rng = np.random.default_rng(11)
    obj = make_object(split_ids("test", 1, seed=11, family="texture_only")[0])
    K = np.array([[300.0, 0, 159.5], [0, 300.0, 119.5], [0, 0, 1]])
    R0, axis = random_rotation(rng), np.array([0.0, 1.0, 0.0])
    poses = []
    for f in range(5):
        T = np.eye(4)
        T[:3, :3] = axis_angle_to_matrix(axis, np.radians(6.0 * f)) @ R0
        T[:3, 3] = np.array([0.0, 0.0, 0.6]) - T[:3, :3] @ (obj.bbox_min + obj.extents / 2)
        poses.append([T])
    return obj, render_multi_object_frames([obj], poses, K, 320, 240, seed=11, depth_noise=True)


@pytest.mark.slow
def test_tracking_with_the_learned_backend_starts_from_its_hypotheses_too(turning_object):
    """With the learned backend a tracked frame verifies the starts from the last pose and, on every
    ``track_network_every``-th tracked frame, the network's own hypotheses too (``num_hypotheses`` counts them); at 0
    only the former. ``classic`` has none to give. Every pose stays right on this slowly turning texture-only
    object."""
    obj, frames = turning_object
    counts = {}
    for every in (1, 2, 0):
        est = PoseEstimator("one2any", settings=EstimatorSettings().with_updates(track_network_every=every))
        f0 = frames[0]
        est.set_reference(decode_frame(f0["rgb"], f0["depth"], f0["labels"], f0["K"]).view(
            1, T_cam_obj=f0["T_cam_obj"][0]))
        n = []
        for i, f in enumerate(frames[1:]):
            r = est.estimate(decode_frame(f["rgb"], f["depth"], f["labels"], f["K"]).view(1), track=True)
            assert r.mode == ("global" if i == 0 else "track")  # no last pose on the first: the global search
            assert metrics.add(r.T_camera_object, f["T_cam_obj"][0], obj.vertices) < 0.1 * obj.diameter
            if i:
                n.append(r.num_hypotheses)
        counts[every] = n
    assert len(counts[1]) == 3 and min(counts[1]) > max(counts[0]), counts
    assert counts[2][0] > counts[0][0] and counts[2][1] < counts[1][1] and counts[2][2] > counts[0][2], counts
    assert PoseEstimator("classic").backend.anchored_hypotheses(None, None, None, 0.1) is None
