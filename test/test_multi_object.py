"""Several objects, one frame (issue 17, the library): named references from one label image, each tracked from its
own last pose; one object's missing label or bad input never touches the others."""
import numpy as np
import pytest

from one2any_ros.core import metrics
from one2any_ros.core.errors import InputError
from one2any_ros.core.multi_object import (MultiObjectEstimator, decode_frame, validate_object_id)

def _add(T_est, T_gt, obj):
    return metrics.add(T_est, T_gt, obj.vertices)


@pytest.fixture(scope="module")
def two_objects(two_object_scene):
    """(objects, {"a"|"b": (pose at frame 0, pose at frame 1)}, [(rgb, depth, labels) of frames 0 and 1], K):
    label 1 = object a, 2 = object b."""
    objs, K, rendered = two_object_scene
    poses = {key: (rendered[0]["T_cam_obj"][i], rendered[1]["T_cam_obj"][i]) for i, key in enumerate("ab")}
    frames = [(f["rgb"], f["depth"], f["labels"]) for f in rendered[:2]]
    return objs, poses, frames, K


def test_each_object_from_its_own_label(two_objects):
    objs, poses, frames, K = two_objects
    f0, f1 = (decode_frame(rgb, depth, labels, K) for rgb, depth, labels in frames)
    m = MultiObjectEstimator("classic")
    m.set_reference("a", f0, mask_label=1, T_cam_obj=poses["a"][0])
    m.set_reference("b", f0, mask_label=2, T_cam_obj=poses["b"][0])
    assert m.object_ids == ["a", "b"]
    res = m.estimate_all(f1, track=False)
    for obj, key in zip(objs, "ab"):
        r = res[key]
        assert not isinstance(r, Exception), r
        assert _add(r.T_camera_object, poses[key][1], obj) < 0.1 * obj.diameter, key
    # tracking: each object from its own last pose
    res2 = m.estimate_all(f1, track=True)
    assert {r.mode for r in res2.values()} == {"track"}


def test_a_missing_label_costs_only_its_object(two_objects):
    objs, poses, frames, K = two_objects
    f0 = decode_frame(*frames[0], K)
    rgb, depth, labels = frames[1]
    only_a = decode_frame(rgb, depth, np.where(labels == 1, labels, 0).astype(np.uint16), K)
    m = MultiObjectEstimator("classic")
    m.set_reference("a", f0, mask_label=1, T_cam_obj=poses["a"][0])
    m.set_reference("b", f0, mask_label=2, T_cam_obj=poses["b"][0])
    res = m.estimate_all(only_a, track=False)
    assert isinstance(res["b"], InputError) and res["b"].reason == "empty_mask"
    assert _add(res["a"].T_camera_object, poses["a"][1], objs[0]) < 0.1 * objs[0].diameter


def test_objects_side_by_side_give_what_they_give_in_turn(two_objects):
    """Threads only change when each object is estimated, never its result."""
    _, poses, frames, K = two_objects
    f0, f1 = (decode_frame(*f, K) for f in frames)
    out = []
    for workers in (1, 2):
        m = MultiObjectEstimator("classic", workers=workers)
        m.set_reference("a", f0, mask_label=1, T_cam_obj=poses["a"][0])
        m.set_reference("b", f0, mask_label=2, T_cam_obj=poses["b"][0])
        out.append(m.estimate_all(f1, track=False))
        m.close()
    assert list(out[0]) == list(out[1]) == ["a", "b"]
    for key in "ab":
        np.testing.assert_allclose(out[1][key].T_camera_object, out[0][key].T_camera_object, atol=1e-9)


def test_sharing_the_frame_changes_nothing(two_objects):
    """The free-space depth computed once per frame gives the same pose as each object computing its own."""
    from one2any_ros.core.estimator import PoseEstimator
    from one2any_ros.core.verify import near_depth

    _, poses, frames, K = two_objects
    f0, f1 = (decode_frame(*f, K) for f in frames)
    est = PoseEstimator("classic")
    est.set_reference(f0.view(2, T_cam_obj=poses["b"][0]))
    alone = est.estimate(f1.view(2)).T_camera_object
    est.last_T_C = None  # the same search again (the last good pose would join it)
    shared = est.estimate(f1.view(2), near_depth=near_depth(f1.depth)).T_camera_object
    np.testing.assert_allclose(shared, alone, atol=1e-9)


def test_bad_requests_are_refused_and_keep_the_others(two_objects):
    _, poses, frames, K = two_objects
    f0 = decode_frame(*frames[0], K)
    m = MultiObjectEstimator("classic", max_objects=2)
    m.set_reference("", f0, mask_label=1)  # the default object
    cases = [
        (dict(object_id="bad name!", mask_label=2), "bad_object_id"),
        (dict(object_id="x" * 33, mask_label=2), "bad_object_id"),
        (dict(object_id="b", mask_label=1), "duplicate_mask_label"),
        (dict(object_id="b", mask_label=70000), "bad_mask_label"),
        (dict(object_id="b", mask_label=7), "empty_mask"),  # no pixel carries label 7
    ]
    for kw, reason in cases:
        with pytest.raises(InputError) as e:
            m.set_reference(kw["object_id"], f0, mask_label=kw["mask_label"])
        assert e.value.reason == reason, kw
        assert m.object_ids == [""]
    m.set_reference("b", f0, mask_label=2)
    with pytest.raises(InputError) as e:
        m.set_reference("c", f0, mask_label=0)
    assert e.value.reason == "too_many_objects"
    with pytest.raises(InputError) as e:
        m.remove("nope")
    assert e.value.reason == "unknown_object"
    mono8 = decode_frame(frames[0][0], frames[0][1], frames[0][2].astype(np.uint8), K)
    with pytest.raises(InputError) as e:
        mono8.mask_for(300)  # a label an 8-bit image cannot hold
    assert e.value.reason == "bad_mask_label"
    # replacing keeps the count, moves it to the end; removing and clearing forget
    m.set_reference("", f0, mask_label=1)
    assert m.object_ids == ["b", ""]
    m.remove("b")
    assert m.object_ids == [""]
    m.clear()
    assert len(m) == 0 and m.estimate_all(f0) == {}


def test_object_ids_and_label_images():
    assert validate_object_id("") == "" and validate_object_id("mug_2") == "mug_2"
    for bad in ("a b", "é", "x" * 33, "a-b"):
        with pytest.raises(InputError):
            validate_object_id(bad)
    d = np.full((4, 5), 0.5, np.float32)
    with pytest.raises(InputError) as e:
        decode_frame(None, d, np.zeros((4, 5), np.float32), np.eye(3) * [100, 100, 1])
    assert e.value.reason == "bad_mask_encoding"
    f = decode_frame(None, d, np.array([[0, 1, 2, 2, 0]] * 4, np.uint8), np.eye(3) * [100, 100, 1])
    assert f.mask_for(0).sum() == 12 and f.mask_for(2).sum() == 8 and f.max_label == 255
