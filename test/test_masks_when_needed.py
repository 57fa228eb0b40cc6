"""Masks only when needed (issue 26), the library: a mask or a box registers an object, then it is tracked without
one from its predicted silhouette; loss is said at once and the object is found again where it was; instance ids
that change every frame; boxes instead of masks. The node over the wire: test_ros_masks_when_needed.py."""
import threading
import time

import numpy as np
import pytest

from one2any_ros.core import metrics
from one2any_ros.core.box_segment import Box
from one2any_ros.core.errors import EstimationFailure, InputError
from one2any_ros.core.geometry import transform_points
from one2any_ros.core.multi_object import MultiObjectEstimator
from one2any_ros.core.frame import decode_frame
from one2any_ros.core.estimator_settings import EstimatorSettings
from one2any_ros.core.tracking import Cue, _search_view, claimed_masks, predicted_mask, track_margin_m
from one2any_ros.ros.cue_buffer import CueBuffer

AWAY = (5, 8)  # object "b" is out of the view on frames 5, 6, 7


@pytest.fixture(scope="module")
def sequence():
    pytest.importorskip("pybullet")
    from one2any_ros.data.multi_scene import tracking_sequence

    return tracking_sequence(12, away=AWAY)


_KEEP = object()


def _frame(f, labels=_KEEP):
    return decode_frame(f["rgb"], f["depth"], f["labels"] if labels is _KEEP else labels, f["K"])


def _right(r, f, objs, i) -> bool:
    return not isinstance(r, Exception) and \
        metrics.add(r.T_camera_object, f["T_cam_obj"][i], objs[i].vertices) < 0.1 * objs[i].diameter


def _box_of(mask: np.ndarray, pad: int = 6) -> Box:
    v, u = np.nonzero(mask)
    return Box(int(u.min()) - pad, int(v.min()) - pad, int(u.max() - u.min()) + 2 * pad, int(v.max() - v.min()) + 2 * pad)


@pytest.fixture
def tracked(sequence):
    """Both objects set from frame 0's mask (labels 1 and 2), helpers off (the same code runs in them)."""
    objs, frames = sequence
    m = MultiObjectEstimator("classic", processes=0)
    f0 = _frame(frames[0])
    m.set_reference("a", f0, mask_label=1, T_cam_obj=frames[0]["T_cam_obj"][0])
    m.set_reference("b", f0, mask_label=2, T_cam_obj=frames[0]["T_cam_obj"][1])
    yield m
    m.close()


def test_the_predicted_silhouette_is_the_object_and_not_its_neighbour(sequence):
    objs, frames = sequence
    f1 = frames[1]
    m = MultiObjectEstimator("classic", processes=0)
    ref = m.set_reference("b", _frame(frames[0]), mask_label=2, T_cam_obj=frames[0]["T_cam_obj"][1])
    mask = predicted_mask(f1["depth"], f1["K"], transform_points(ref.T_refcam_C, ref.points_C), 0.2 * ref.diameter)
    true = f1["labels"] == 2
    assert (mask & true).sum() / (mask | true).sum() > 0.6
    assert not (mask & (f1["labels"] == 1)).any()  # the neighbour never leaks in
    assert not (mask & (f1["depth"] == 0)).any()  # only pixels with depth


def _touching_boxes():
    """Depth of two 6 cm cubes' front faces side by side 5 mm apart at 0.5 m (a camera looking at them), and each
    one's surface points: each within the other's tracking margin."""
    K = np.array([[300.0, 0, 79.5], [0, 300.0, 59.5], [0, 0, 1]])
    g = np.linspace(-0.03, 0.03, 25)
    face = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    clouds = [np.column_stack([face[:, 0] + x, face[:, 1], np.full(len(face), 0.5)]) for x in (-0.0325, 0.0325)]
    depth = np.zeros((120, 160), np.float32)
    v, u = np.mgrid[0:120, 0:160]
    x = (u - K[0, 2]) * 0.5 / K[0, 0]
    y = (v - K[1, 2]) * 0.5 / K[1, 1]
    truth = [(np.abs(x - cx) <= 0.03) & (np.abs(y) <= 0.03) for cx in (-0.0325, 0.0325)]
    depth[truth[0] | truth[1]] = 0.5
    return depth, K, clouds, truth


def test_touching_objects_share_their_predicted_pixels_by_nearest_surface():
    """Each within the other's margin: alone, each predicted mask takes the neighbour's near side; shared out, every
    pixel goes to the surface nearest it, so the two shares are the two objects."""
    depth, K, clouds, truth = _touching_boxes()
    margin = 0.02
    alone = [predicted_mask(depth, K, c, margin) for c in clouds]
    assert (alone[0] & truth[1]).sum() > 50 and (alone[1] & truth[0]).sum() > 50  # what sharing is for
    shares = claimed_masks(depth, K, {"left": (clouds[0], margin), "right": (clouds[1], margin)})
    assert not (shares["left"] & shares["right"]).any()
    np.testing.assert_array_equal(shares["left"] | shares["right"], alone[0] | alone[1])  # nothing lost
    for share, own in zip(shares.values(), truth):
        assert (share & own).sum() / (share | own).sum() > 0.97
    # one cloud alone: its share is its predicted mask
    np.testing.assert_array_equal(claimed_masks(depth, K, {"left": (clouds[0], margin)})["left"], alone[0])
    # a cloud that projects outside the image claims nothing and takes nothing from the other
    away = claimed_masks(depth, K, {"left": (clouds[0], margin), "gone": (clouds[1] + [5.0, 0, 0], margin)})
    assert not away["gone"].any() and np.array_equal(away["left"], alone[0])


@pytest.fixture(scope="module")
def side_by_side():
    pytest.importorskip("pybullet")
    from one2any_ros.data.multi_scene import SIDE_BY_SIDE_AWAY, side_by_side_sequence

    return (*side_by_side_sequence(8, n_frames=SIDE_BY_SIDE_AWAY[1] + 4), SIDE_BY_SIDE_AWAY)


def test_neighbours_that_touch_keep_their_own_pixels(side_by_side):
    """Three unseen objects side by side, each touching the next, masks only on the reference (b from a box alone);
    c leaves for 5 frames and comes back next to b, turned ~35 deg. Each one's predicted pixels took its neighbour's
    near side before they were shared out by nearest surface (``claimed_masks``): b was lost on 5 of 29 frames and
    drifted to 9 % of its diameter between, a drifted to a wrong pose, and c's search took b and came back 6 frames
    late."""
    objs, frames, away = side_by_side
    m = MultiObjectEstimator("classic", processes=0)
    f0 = frames[0]
    m.set_reference("a", _frame(f0), mask_label=1, T_cam_obj=f0["T_cam_obj"][0])
    m.set_reference("b", _frame(f0, labels=None), box=_box_of(f0["labels"] == 2), T_cam_obj=f0["T_cam_obj"][1])
    m.set_reference("c", _frame(f0), mask_label=3, T_cam_obj=f0["T_cam_obj"][2])
    right = {o: [] for o in "abc"}
    for k, f in enumerate(frames[1:], 1):
        res = m.estimate_all(_frame(f, labels=None), mask_mode="when_needed")
        for i, oid in enumerate("abc"):
            if oid == "c" and away[0] <= k < away[1]:
                assert isinstance(res[oid], EstimationFailure), (k, res[oid])
                continue
            assert _published_right(res[oid], f, objs, i), (k, oid, res[oid])  # never a wrong pose
            right[oid].append(_right(res[oid], f, objs, i))
    m.close()
    assert sum(right["a"]) >= len(right["a"]) - 1 and sum(right["b"]) >= len(right["b"]) - 1, right
    back = right["c"][away[0] - 1:]  # c from its return
    assert any(back[:2]) and all(back[back.index(True):]), right["c"]


def test_a_box_around_an_object_that_touches_a_known_one_leaves_that_one_out(side_by_side):
    """b's box holds a strip of a, which touches it at b's depth: depth alone kept it with b (10 % of b's reference
    points were a's). Set after a and c, b's segment leaves out their pixels (their clouds at their poses on this
    frame): its reference is b's surface."""
    from one2any_ros.core import camera

    objs, frames, _ = side_by_side
    f0 = frames[0]
    box = _box_of(f0["labels"] == 2)

    def own_share(ref) -> float:  # the share of the reference's points that lie on b's pixels of the frame
        uv, _ = camera.project(transform_points(ref.T_refcam_C, ref.points_C), f0["K"])
        u, v = np.rint(uv).astype(int).T
        return float(np.mean(f0["labels"][v, u] == 2))

    alone = MultiObjectEstimator("classic", processes=0)
    before = own_share(alone.set_reference("b", _frame(f0, labels=None), box=box))
    assert before < 0.95, before  # what it is for (0.90 here)
    alone.close()
    m = MultiObjectEstimator("classic", processes=0)
    m.set_reference("a", _frame(f0), mask_label=1, T_cam_obj=f0["T_cam_obj"][0])
    m.set_reference("c", _frame(f0), mask_label=3, T_cam_obj=f0["T_cam_obj"][2])
    ref = m.set_reference("b", _frame(f0, labels=None), box=box, T_cam_obj=f0["T_cam_obj"][1])
    assert own_share(ref) > 0.98, own_share(ref)
    m.close()
    # the segment itself: all of b that the box holds, none of a
    b = f0["labels"] == 2
    view = _frame(f0, labels=None).view(None, box=box, others=(f0["labels"] == 1) | (f0["labels"] == 3))
    assert (view.mask & b).sum() / (view.mask | b).sum() > 0.95


def test_a_detectors_box_leaves_out_the_tracked_neighbour(side_by_side, monkeypatch):
    """A detector's box around b holds strips of a and c, which touch it; a and c are tracked: b is estimated on
    its box's segment without their shares of the frame."""
    from one2any_ros.core import tracking

    objs, frames, _ = side_by_side
    f0, f1 = frames[0], frames[1]
    m = MultiObjectEstimator("classic", processes=0)
    for oid, label in (("a", 1), ("b", 2), ("c", 3)):
        m.set_reference(oid, _frame(f0), mask_label=label, T_cam_obj=f0["T_cam_obj"][label - 1])
    views = {}
    estimate = tracking.PoseEstimator.estimate

    def spy(est, view, **kw):
        views.setdefault(est.reference.diameter, view.mask.copy())
        return estimate(est, view, **kw)

    monkeypatch.setattr(tracking.PoseEstimator, "estimate", spy)
    b = f1["labels"] == 2
    box = _box_of(b)
    res = m.estimate_all(_frame(f1, labels=None), mask_mode="when_needed", boxes={"b": box})
    m.close()
    inside = np.zeros_like(b)
    inside[box.y:box.y + box.height, box.x:box.x + box.width] = True
    view = views[m.get("b").reference.diameter]
    in_box = {k: ((f1["labels"] == k) & inside).sum() for k in (1, 3)}
    assert in_box[1] > 100  # the box holds a's strip (before: most of it in b's view)
    for k in (1, 3):  # nothing of a or c but a few pixels on the line where they touch b
        assert (view & (f1["labels"] == k)).sum() <= 0.05 * in_box[k] + 5, k
    assert (view & b).sum() / (view | b).sum() > 0.9
    assert _right(res["b"], f1, objs, 1)


def test_a_lost_objects_search_leaves_out_what_passes_in_front(sequence):
    """An occluder that hid the object stands in its search region, nearer the camera and bigger than what shows of
    the object: the search takes the object's visible part, never the occluder (docs/tracking.md)."""
    objs, frames = sequence
    m = MultiObjectEstimator("classic", processes=0)
    ref = m.set_reference("b", _frame(frames[0]), mask_label=2, T_cam_obj=frames[0]["T_cam_obj"][1])
    f = frames[1]
    obj = f["labels"] == 2
    v, u = np.nonzero(obj)
    front = float(f["depth"][obj & (f["depth"] > 0)].min())
    depth = f["depth"].copy()  # a slab 0.6 diameters in front of it, over its left half and well beyond
    slab = np.zeros_like(obj)
    slab[max(v.min() - 30, 0):v.max() + 30, max(u.min() - 40, 0):(u.min() + u.max()) // 2] = True
    depth[slab] = front - 0.6 * ref.diameter
    assert slab.sum() > (obj & ~slab).sum()
    s = EstimatorSettings()
    margin = track_margin_m(s, ref.diameter)
    for lost_frames in (0, 3):  # its silhouette widened on the first frame lost, then the box about its last place
        cue = Cue(seen_T_C=ref.T_refcam_C, lost_frames=lost_frames)
        mask = _search_view(decode_frame(f["rgb"], depth, None, f["K"]), ref, cue, margin, s.search_radii).mask
        assert not (mask & slab).any(), lost_frames
        visible = obj & ~slab
        assert (mask & visible).sum() > 0.6 * visible.sum(), lost_frames
    # the object itself came half its diameter towards the camera while lost (lifted towards it): the search in the
    # box about its last place still takes all of it
    nearer = np.where(obj & (f["depth"] > 0), f["depth"] - 0.5 * ref.diameter, f["depth"]).astype(f["depth"].dtype)
    seen = obj & (f["depth"] > 0)
    mask = _search_view(decode_frame(f["rgb"], nearer, None, f["K"]), ref, Cue(seen_T_C=ref.T_refcam_C, lost_frames=3),
                        margin, s.search_radii).mask
    assert (mask & seen).sum() > 0.6 * seen.sum()


def _published_right(results, f, objs, i) -> bool:
    """A pose given is right (a failure gives none: lost is honest, a wrong pose is not)."""
    return isinstance(results, Exception) or _right(results, f, objs, i)


def test_tracked_without_masks_after_the_reference(tracked, sequence):
    objs, frames = sequence
    right = []
    for f in frames[1:AWAY[0]]:
        res = tracked.estimate_all(_frame(f, labels=None), mask_mode="when_needed")
        for i, oid in enumerate("ab"):
            assert _published_right(res[oid], f, objs, i), (oid, res[oid])
            right.append(_right(res[oid], f, objs, i))
    assert np.mean(right) >= 0.85, right  # the small hammer may be lost for a frame (appearance noise), never wrong


def test_loss_is_said_at_once_and_the_object_found_again_where_it_was(tracked, sequence):
    objs, frames = sequence
    got = []
    for k, f in enumerate(frames[1:], 1):
        res = tracked.estimate_all(_frame(f, labels=None), mask_mode="when_needed")
        assert _published_right(res["a"], f, objs, 0), (k, res["a"])  # the other object goes on
        assert _published_right(res["b"], f, objs, 1), (k, res["b"])
        got.append(res["b"])
        if AWAY[0] <= k < AWAY[1]:  # gone: no pose, reason lost, from its first frame away
            assert isinstance(res["b"], EstimationFailure) and res["b"].reason == "lost", (k, res["b"])
    back = [_right(r, f, objs, 1) for r, f in zip(got[AWAY[1] - 1:], frames[AWAY[1]:])]
    assert any(back[:5]), back  # found again within 5 frames of its return, with no mask or box
    first = back.index(True)
    assert all(back[first:]), back  # and kept


def test_every_frame_mode_wants_the_mask(tracked, sequence):
    objs, frames = sequence
    f = dict(frames[1])
    only_a = np.where(f["labels"] == 1, f["labels"], 0).astype(np.uint16)
    res = tracked.estimate_all(_frame(f, labels=only_a), mask_mode="every_frame")
    assert isinstance(res["b"], InputError) and res["b"].reason == "empty_mask"
    assert _right(res["a"], f, objs, 0)  # its mask: the global search behind tracking
    res = tracked.estimate_all(_frame(f, labels=only_a), mask_mode="when_needed")  # a missing label: tracked
    assert _right(res["b"], f, objs, 1) and res["b"].mode == "track"


def test_instance_ids_that_change_every_frame(tracked, sequence):
    objs, frames = sequence
    for k, f in enumerate(frames[1:AWAY[0]], 1):
        ids = (7, 3) if k % 2 else (3, 9)  # new values each frame, sometimes swapped
        labels = np.zeros_like(f["labels"])
        labels[f["labels"] == 1], labels[f["labels"] == 2] = ids
        res = tracked.estimate_all(_frame(f, labels=labels), mask_mode="when_needed", instance_labels=True)
        for i, oid in enumerate("ab"):
            assert _right(res[oid], f, objs, i), (k, oid, res[oid])  # each on its own instance: global if need be


def test_a_lost_object_is_searched_again_without_the_one_found_beside_it(tracked, sequence):
    """Two lost objects on one frame: when one is found and the other's search found nothing, the other is searched
    once more on that frame, never among the found one's pixels; nothing is searched again otherwise."""
    objs, frames = sequence
    f = frames[1]
    res = tracked.estimate_all(_frame(f, labels=None), mask_mode="when_needed")
    assert all(_right(res[oid], f, objs, i) for i, oid in enumerate("ab"))
    frame = _frame(frames[2], labels=None)
    cues = {oid: Cue(seen_T_C=res[oid].T_camera_C, lost_frames=1) for oid in "ab"}  # both lost
    lost = EstimationFailure("searching where it was last seen: nothing there", reason="lost")
    again = tracked._search_again(frame, cues, {"a": res["a"], "b": lost})
    assert list(again) == ["b"] and again["b"].searching
    labels = frames[2]["labels"]
    taken = again["b"].exclude
    assert (taken & (labels == 1)).sum() > 0.8 * ((labels == 1) & (frames[2]["depth"] > 0)).sum()
    assert not (taken & (labels == 2)).any()
    assert tracked._search_again(frame, cues, {"a": lost, "b": lost}) == {}  # nothing found: nothing to retry
    assert tracked._search_again(frame, cues, {"a": res["a"], "b": res["b"]}) == {}  # both found


def test_an_untracked_object_takes_the_free_instance_its_verifier_likes(sequence):
    """After a restart (references loaded, no last pose), instance ids: each object finds its own instance."""
    objs, frames = sequence
    m = MultiObjectEstimator("classic", processes=0)
    f0 = _frame(frames[0])
    for i, oid in enumerate("ab"):
        tmp = MultiObjectEstimator("classic", processes=0)
        ref = tmp.set_reference(oid, f0, mask_label=i + 1, T_cam_obj=frames[0]["T_cam_obj"][i])
        m.set_reference(oid, ref, mask_label=i + 1)  # a loaded Reference: no last pose to track from
    f = frames[2]
    labels = np.zeros_like(f["labels"])
    labels[f["labels"] == 1], labels[f["labels"] == 2] = 5, 4
    res = m.estimate_all(_frame(f, labels=labels), mask_mode="when_needed", instance_labels=True)
    for i, oid in enumerate("ab"):
        assert _right(res[oid], f, objs, i), (oid, res[oid])


def test_registered_from_a_box_alone_then_tracked(sequence):
    objs, frames = sequence
    m = MultiObjectEstimator("classic", processes=0)
    ref = m.set_reference("b", _frame(frames[0], labels=None), box=_box_of(frames[0]["labels"] == 2),
                          T_cam_obj=frames[0]["T_cam_obj"][1])
    assert ref.num_points > 100
    for f in frames[1:AWAY[0]]:
        r = m.estimate_all(_frame(f, labels=None), mask_mode="when_needed")["b"]
        assert _right(r, f, objs, 1), r


def test_a_box_finds_a_lost_object_and_a_bad_box_says_why(tracked, sequence):
    objs, frames = sequence
    for f in frames[1:AWAY[1]]:  # "b" leaves and is lost
        res = tracked.estimate_all(_frame(f, labels=None), mask_mode="when_needed")
    assert res["b"].reason == "lost"
    f = frames[AWAY[1]]
    res = tracked.estimate_all(_frame(f, labels=None), mask_mode="when_needed", boxes={"b": Box(400, 10, 20, 20)})
    assert isinstance(res["b"], InputError) and res["b"].reason == "bad_roi", res["b"]  # outside the 320x240 image
    assert _published_right(res["a"], f, objs, 0)
    res = tracked.estimate_all(_frame(f, labels=None), mask_mode="when_needed",
                               boxes={"b": _box_of(f["labels"] == 2)})
    assert _right(res["b"], f, objs, 1), res["b"]


def test_cue_buffer_matches_by_stamp_and_waits_only_while_cues_arrive():
    buf = CueBuffer(size=3)
    assert buf.match(100, 10) is None and not buf.active()
    t = time.monotonic()
    assert buf.wait(100, 10, until=t + 5.0) is None and time.monotonic() - t < 1.0  # nothing arriving: no wait
    for s in (100, 200, 300, 400):
        buf.add(s, f"m{s}")
    assert buf.match(100, 10) is None  # the oldest was dropped (size 3)
    assert buf.match(205, 10) == "m200" and buf.match(250, 10) is None and buf.active()

    threading.Timer(0.2, lambda: buf.add(500, "m500")).start()
    t = time.monotonic()
    assert buf.wait(500, 10, until=t + 5.0) == "m500"  # arriving: waited for
    assert time.monotonic() - t < 4.0
    t = time.monotonic()
    assert buf.wait(900, 10, until=t + 0.3) is None and time.monotonic() - t >= 0.25  # waited until the deadline
    buf.stop()
    t = time.monotonic()
    assert buf.wait(901, 10, until=t + 5.0) is None and time.monotonic() - t < 1.0


def test_detector_boxes_become_object_boxes():
    vision_msgs = pytest.importorskip("vision_msgs.msg")
    from one2any_ros.ros import conversions as conv

    def det(class_id, cx, cy, sx, sy):
        d = vision_msgs.Detection2D()
        d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.size_x, d.bbox.size_y = cx, cy, sx, sy
        if class_id is not None:
            h = vision_msgs.ObjectHypothesisWithPose()
            h.hypothesis.class_id = class_id
            d.results = [h]
        return d

    msg = vision_msgs.Detection2DArray(detections=[det("cup", 50.0, 40.0, 20.0, 10.0), det("nope", 1, 1, 2, 2)])
    assert conv.boxes_from_detections(msg, ["cup", "bowl"]) == {"cup": Box(40, 35, 20, 10)}
    one = vision_msgs.Detection2DArray(detections=[det(None, 50.5, 40.5, 21.0, 11.0)])
    assert conv.boxes_from_detections(one, [""]) == {"": Box(40, 35, 21, 11)}  # the only box: the default object
    bad = conv.boxes_from_detections(vision_msgs.Detection2DArray(detections=[det("cup", 5, 5, float("nan"), 3)]),
                                     ["cup"])["cup"]
    with pytest.raises(InputError) as e:
        bad.pixels(240, 320)
    assert e.value.reason == "bad_roi"


def test_a_box_registered_object_among_labelled_ones_takes_its_own_instance(sequence):
    """Set from a box with mask_label 0 beside an object with label 1: when masks come, 0 cannot mean "every non-zero
    pixel" (the neighbour's too): it takes the instance its predicted silhouette overlaps."""
    objs, frames = sequence
    m = MultiObjectEstimator("classic", processes=0)
    f0 = frames[0]
    m.set_reference("a", _frame(f0), mask_label=1, T_cam_obj=f0["T_cam_obj"][0])
    m.set_reference("b", _frame(f0, labels=None), box=_box_of(f0["labels"] == 2), T_cam_obj=f0["T_cam_obj"][1])
    for f in frames[1:AWAY[0]]:
        res = m.estimate_all(_frame(f), mask_mode="when_needed")
        assert _right(res["b"], f, objs, 1), res["b"]
        assert _published_right(res["a"], f, objs, 0)
