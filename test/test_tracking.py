"""Tracking (``estimate(track=True)``, frame after frame from the last pose) is at least as accurate as one-shot
estimation on the same frames, and as the tracker before the local search: on a short rendered sequence of two
held-out objects turning 7 deg a frame (a shape-asymmetric one and a texture-only one), a correct mask every frame.

The paired measurement behind the local search (~1,040 object-frames per run, validation objects, two seeds and
both backends; docs/tracking.md, tools/compare_tracking.py) is not repeated here: this is a guard against a change
that makes tracking worse than either."""
import numpy as np
import pytest

from one2any_ros.core import metrics
from one2any_ros.core.estimator import PoseEstimator
from one2any_ros.core.estimator_settings import EstimatorSettings
from one2any_ros.core.frame import decode_frame

pytestmark = pytest.mark.slow  # tens of seconds of estimates
FRAMES = 16
STEP_DEG = 7.0


@pytest.fixture(scope="module")
def sequence():
    pytest.importorskip("pybullet")
    from one2any_ros.data.multi_scene import render_multi_object_frames
    from one2any_ros.data.objects import make_object, split_ids
    from one2any_ros.data.render import axis_angle_to_matrix, random_rotation

    rng = np.random.default_rng(4)
    objs = [make_object(split_ids("test", 1, seed=4, family=f)[0]) for f in ("shape_asymmetric", "texture_only")]
    K = np.array([[300.0, 0, 159.5], [0, 300.0, 119.5], [0, 0, 1]])
    centres = [np.array([-0.1, 0.0, 0.6]), np.array([0.1, 0.0, 0.62])]
    starts = [random_rotation(rng) for _ in objs]
    axes = [a / np.linalg.norm(a) for a in rng.normal(size=(2, 3))]
    poses = []
    for f in range(FRAMES):
        frame = []
        for o, c, R0, ax in zip(objs, centres, starts, axes):
            T = np.eye(4)
            T[:3, :3] = axis_angle_to_matrix(ax, np.radians(STEP_DEG * f)) @ R0
            T[:3, 3] = c + np.array([0.003, -0.002, 0.002]) * f - T[:3, :3] @ (o.bbox_min + o.extents / 2)
            frame.append(T)
        poses.append(frame)
    return objs, render_multi_object_frames(objs, poses, K, 320, 240, seed=4, depth_noise=True)


def _run(sequence, *, track: bool, **settings):
    """Per object-frame: (right at ADD 0.1 d, confidence, mode)."""
    objs, frames = sequence
    out = []
    for k, obj in enumerate(objs):
        est = PoseEstimator("classic", settings=EstimatorSettings().with_updates(**settings))
        f0 = frames[0]
        est.set_reference(decode_frame(f0["rgb"], f0["depth"], f0["labels"], f0["K"]).view(
            k + 1, T_cam_obj=f0["T_cam_obj"][k]))
        for f in frames[1:]:
            view = decode_frame(f["rgb"], f["depth"], f["labels"], f["K"]).view(k + 1)
            if not track:
                est.last_T_C = None  # one-shot: nothing from the frame before
            try:
                r = est.estimate(view, track=track)
            except Exception:  # no pose: a miss
                out.append((False, 0.0, "none"))
                continue
            right = metrics.add(r.T_camera_object, f["T_cam_obj"][k], obj.vertices) < 0.1 * obj.diameter
            out.append((bool(right), r.confidence, r.mode))
    return out


def test_tracking_is_as_accurate_as_one_shot_on_the_same_frames(sequence):
    """Measured on these 30 object-frames (classic, shipped): tracking 26 right, one-shot 24; 30 object-frames cannot
    tell one frame apart (the paired runs behind tracking use ~1,040: docs/tracking.md), so one frame is allowed.
    Against the tracker before the local search (the last pose alone refined, track_turn_deg 0, 400 points, 5
    iterations, no appearance check) both run without the twins (twin_top_k 0: 29 and 29 right; with them 26 and 27):
    which twin a global search hands to tracking moves this one texture-only object's frames by 2-3 in every mode,
    one-shot included (26 -> 24), while on 2 x 1,040 object-frames per backend the twins lowered no bin
    (docs/validation.md, "Twins decide by texture, or not at all")."""
    tracked, one_shot = _run(sequence, track=True), _run(sequence, track=False)
    tracked_plain = _run(sequence, track=True, twin_top_k=0)
    before = _run(sequence, track=True, track_turn_deg=0.0, track_points=400, track_iterations=5,
                  track_min_appearance=0.0, twin_top_k=0)
    hits = {name: sum(r for r, _, _ in out) for name, out in (("tracked", tracked), ("one_shot", one_shot),
                                                                ("tracked_plain", tracked_plain), ("before", before))}
    wrong = sum(not r and c > 0.5 for r, c, _ in tracked)
    assert sum(m == "track" for _, _, m in tracked) >= len(tracked) // 2  # it did track, mostly
    assert hits["tracked"] >= hits["one_shot"] - 1 and hits["tracked_plain"] >= hits["before"], hits
    assert wrong <= 5, wrong  # confident wrong poses: the number a grasping pipeline fears (measured 1)


def test_the_last_step_repeated_keeps_a_fast_turn_tracked(sequence):
    """The local search also starts from the last pose moved by the last frame's motion (``track_velocity``): an
    object turning fast runs ahead of the turns about its last pose. Paired on ~1,040 object-frames
    (docs/tracking.md): ADD 0.612 -> 0.663 without masks, no bin lower. Here (classic, twins off as in the test above:
    with them the global searches' hand-overs differ), every third frame of the sequence (21 deg a frame): with it 6
    of 10 object-frames are tracked and 10 right, without it 2 tracked (the rest handed to the global search) and 8-9
    right. At 7 deg a frame (30 object-frames) it must not cost: 26 right both ways (29 against 24 with the appearance
    window at 0.15; on 30 frames one texture-only object's hand-overs decide such counts)."""
    objs, frames = sequence
    fast = (objs, frames[::3])
    with_step = _run(fast, track=True, track_velocity=True, twin_top_k=0)
    without = _run(fast, track=True, track_velocity=False, twin_top_k=0)
    tracked = {name: sum(m == "track" for _, _, m in out) for name, out in (("with", with_step), ("without", without))}
    right = {name: sum(r for r, _, _ in out) for name, out in (("with", with_step), ("without", without))}
    assert tracked["with"] >= tracked["without"] + 2 and right["with"] >= right["without"], (tracked, right)
    slow = {vel: sum(r for r, _, _ in _run(sequence, track=True, track_velocity=vel, twin_top_k=0))
            for vel in (True, False)}
    assert slow[True] >= slow[False] - 1, slow


def _spin_about_axis(obj_id: int, step_deg: float, frames: int = 10, slide_m: float = 0.0):
    """One texture-only body of revolution turning ``step_deg`` a frame about its own axis (the object's z) and
    sliding ``slide_m`` a frame along it."""
    pytest.importorskip("pybullet")
    from one2any_ros.data.multi_scene import render_multi_object_frames
    from one2any_ros.data.objects import make_object
    from one2any_ros.data.render import axis_angle_to_matrix, random_rotation

    obj = make_object(obj_id)
    R0 = random_rotation(np.random.default_rng(1))
    poses = []
    for f in range(frames):
        T = np.eye(4)
        T[:3, :3] = R0 @ axis_angle_to_matrix(np.array([0.0, 0.0, 1.0]), np.radians(step_deg * f))
        T[:3, 3] = np.array([0.0, 0.0, 0.5]) - T[:3, :3] @ (obj.bbox_min + obj.extents / 2) + T[:3, 2] * slide_m * f
        poses.append([T])
    K = np.array([[300.0, 0, 159.5], [0, 300.0, 119.5], [0, 0, 1]])
    return obj, render_multi_object_frames([obj], poses, K, 320, 240, seed=1, depth_noise=True)


def _rotation_errors_without_masks(frames, **settings) -> list[float]:
    """Tracked from the reference without a mask (the node's default); 180 where no pose was published."""
    from one2any_ros.core.errors import One2AnyError
    from one2any_ros.core.geometry import rotation_angle_deg
    from one2any_ros.core.tracking import ObjectTrack, estimate_object

    est = PoseEstimator("classic", settings=EstimatorSettings().with_updates(**settings))
    f0 = frames[0]
    ref = est.set_reference(decode_frame(f0["rgb"], f0["depth"], f0["labels"], f0["K"]).view(
        1, T_cam_obj=f0["T_cam_obj"][0]))
    track = ObjectTrack(last_T_C=ref.T_refcam_C.copy(), seen_T_C=ref.T_refcam_C.copy())
    errors = []
    for f in frames[1:]:
        try:
            r = estimate_object(est, decode_frame(f["rgb"], f["depth"], None, f["K"]), track.cue())
        except One2AnyError as e:
            track.update(e)
            errors.append(180.0)
            continue
        track.update(r)
        errors.append(float(rotation_angle_deg(r.T_camera_object[:3, :3].T @ f["T_cam_obj"][0][:3, :3])))
    return errors


def test_tracking_follows_a_turn_about_an_axis_of_revolution():
    """A textured cylinder turning 8 deg a frame about its own axis: geometry cannot see that turn, so ICP left it
    where the last pose had it and the pose lagged further each frame (measured here: 2 -> 19 deg over 7 frames,
    then lost). The winner turned about the reference's fitted axis, appearance deciding (``track_spin_deg``),
    follows it (measured: at most 3 deg). Paired on ~1,040 object-frames: docs/tracking.md."""
    _, frames = _spin_about_axis(2577200, 8.0)
    spun = _rotation_errors_without_masks(frames)
    unspun = _rotation_errors_without_masks(frames, track_spin_deg=0.0)
    assert max(spun) < 8.0, spun
    assert max(unspun) > 12.0, unspun  # the case is one the spin must fix: without it, the pose lags


def test_tracking_follows_a_bowl_turning_about_its_axis():
    """A texture-only bowl turning 6 deg a frame about its own axis: its visible outside is nearly a piece of a sphere,
    so the axis of revolution fitted to it is arbitrary and the spins about it missed the turn (measured here without
    the sphere's turns: errors up to ~9 deg, mean ~5). Turning the winner about the sphere's centre, appearance
    choosing (``track_sphere_max_residual``), follows it (measured: at most ~2 deg, mean ~1). Paired on the long
    sequences and ~1,040 object-frames: docs/tracking.md, "A bowl turned about its centre"."""
    from one2any_ros.core.reference_cache import reference_sphere

    _, frames = _spin_about_axis(2570518, 6.0)
    turned = _rotation_errors_without_masks(frames)
    unturned = _rotation_errors_without_masks(frames, track_sphere_max_residual=0.0)
    assert max(turned) < 5.0 and np.mean(turned) < 0.5 * np.mean(unturned), (turned, unturned)
    est = PoseEstimator("classic")
    f0 = frames[0]
    ref = est.set_reference(decode_frame(f0["rgb"], f0["depth"], f0["labels"], f0["K"]).view(
        1, T_cam_obj=f0["T_cam_obj"][0]))
    assert reference_sphere(est._cache, ref, 0.2) is not None  # the case is the sphere's
    assert reference_sphere(est._cache, ref, 0.0) is None


def test_a_small_lost_object_is_found_again_without_a_mask():
    """A 6 cm object ~190 pixels large, lost, then searched for where it was last seen (no mask): the appearance
    score is shrunk by n / (n + 50) for n co-visible points, so a small object's true pose could not pass
    ``track_min_appearance`` and it was never re-acquired (measured here: "lost" without the ceiling). A lost
    object's search scales the threshold by the most its reference can score (``_appearance_ceiling``)."""
    pytest.importorskip("pybullet")
    from one2any_ros.data.multi_scene import render_multi_object_frames
    from one2any_ros.data.objects import make_object
    from one2any_ros.data.render import axis_angle_to_matrix, random_rotation
    from one2any_ros.core.tracking import ObjectTrack, estimate_object

    obj = make_object(2856221)
    R0 = random_rotation(np.random.default_rng(3))
    poses = []
    for f in (0, 2):
        T = np.eye(4)
        T[:3, :3] = axis_angle_to_matrix(np.array([0, 1.0, 0]), np.radians(5 * f)) @ R0
        T[:3, 3] = np.array([0.004 * f, 0, 0.9]) - T[:3, :3] @ (obj.bbox_min + obj.extents / 2)
        poses.append([T])
    K = np.array([[300.0, 0, 159.5], [0, 300.0, 119.5], [0, 0, 1]])
    f0, f2 = render_multi_object_frames([obj], poses, K, 320, 240, seed=3, depth_noise=True)
    est = PoseEstimator("classic")
    ref = est.set_reference(decode_frame(f0["rgb"], f0["depth"], f0["labels"], f0["K"]).view(
        1, T_cam_obj=f0["T_cam_obj"][0]))
    lost = ObjectTrack(last_T_C=None, seen_T_C=ref.T_refcam_C.copy())
    r = estimate_object(est, decode_frame(f2["rgb"], f2["depth"], None, f2["K"]), lost.cue())
    assert metrics.add(r.T_camera_object, f2["T_cam_obj"][0], obj.vertices) < 0.1 * obj.diameter
    assert est._appearance_ceiling() < 0.8  # the small-object case (about 0.75 here; ~1 for a large one)


def test_slides_along_the_axis_of_revolution_are_pure_translations_along_it():
    """``track_slide`` (off by default: docs/tracking.md) adds slides along the fitted axis to the turns about it."""
    from one2any_ros.core.reference_cache import axis_spins

    obj, frames = _spin_about_axis(2577200, 0.0, frames=1)
    f0 = frames[0]
    view = decode_frame(f0["rgb"], f0["depth"], f0["labels"], f0["K"]).view(1, T_cam_obj=f0["T_cam_obj"][0])
    off, on = (PoseEstimator("classic", settings=EstimatorSettings().with_updates(track_slide=v)) for v in (0.0, 0.1))
    motions = {}
    for name, est in (("off", off), ("on", on)):
        ref = est.set_reference(view)
        motions[name] = axis_spins(est._cache, ref, est.settings)
    assert len(motions["on"]) == len(motions["off"]) + 6
    slides = motions["on"][len(motions["off"]):]
    assert np.allclose(slides[:, :3, :3], np.eye(3))
    shifts = slides[:, :3, 3]
    directions = shifts / np.linalg.norm(shifts, axis=1, keepdims=True)
    assert np.allclose(np.abs(directions @ directions[-1]), 1.0, atol=1e-9)  # all along one line: the axis
    assert np.isclose(np.linalg.norm(shifts, axis=1).max(), 0.1 * ref.diameter)
