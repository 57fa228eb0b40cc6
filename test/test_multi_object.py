"""Several objects, one frame (issue 17, the library): named references from one label image, each tracked from its
own last pose; one object's missing label or bad input never touches the others."""
import numpy as np
import pytest

from one2any_ros.core import metrics
from one2any_ros.core.errors import InputError
from one2any_ros.core.multi_object import MultiObjectEstimator
from one2any_ros.core.frame import decode_frame, validate_object_id

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


def _set_both(m, f0, poses):
    m.set_reference("a", f0, mask_label=1, T_cam_obj=poses["a"][0])
    m.set_reference("b", f0, mask_label=2, T_cam_obj=poses["b"][0])


def test_objects_in_a_helper_process_give_what_they_give_here(two_objects):
    """A helper process only changes where an object is estimated, never its result: a global search, tracking, a
    frame of another size (a new shared frame file) and a missing label, each the same as in this process."""
    _, poses, frames, K = two_objects
    f0, f1 = (decode_frame(*f, K) for f in frames)
    rgb, depth, labels = frames[1]
    taller = decode_frame(*(np.concatenate([a, np.zeros((16,) + a.shape[1:], a.dtype)]) for a in (rgb, depth, labels)), K)
    only_a = decode_frame(rgb, depth, np.where(labels == 1, labels, 0).astype(np.uint16), K)
    out = []
    for processes in (0, 1):
        m = MultiObjectEstimator("classic", processes=processes)
        _set_both(m, f0, poses)
        assert len(m.helper_pids()) == processes  # "b" went to the helper, when there is one
        out.append([m.estimate_all(f1, track=False), m.estimate_all(f1), m.estimate_all(taller), m.estimate_all(only_a)])
        m.close()
    for here, there in zip(*out):
        assert list(here) == list(there) == ["a", "b"]
        for key in "ab":
            if isinstance(here[key], Exception):
                assert type(there[key]) is type(here[key]) and there[key].reason == here[key].reason
            else:
                assert there[key].mode == here[key].mode
                np.testing.assert_allclose(there[key].T_camera_object, here[key].T_camera_object, atol=1e-9)
    assert out[1][3]["b"].reason == "empty_mask"


@pytest.fixture
def with_helper(two_objects):
    """(estimator with one helper process: "a" here, "b" in the helper; the next frame). Closed afterwards."""
    _, poses, frames, K = two_objects
    f0, f1 = (decode_frame(*f, K) for f in frames)
    m = MultiObjectEstimator("classic", processes=1)
    try:
        _set_both(m, f0, poses)
        assert [m.get(k).shard for k in "ab"] == [0, 1]
        yield m, f1
    finally:
        m.close()
    assert m.helper_pids() == []


def test_a_helper_that_dies_is_started_again_with_its_objects(two_objects, with_helper):
    import os
    import signal

    from one2any_ros.core.object_processes import HelperStopped

    objs, poses, _, _ = two_objects
    m, f1 = with_helper
    assert {k: r.mode for k, r in m.estimate_all(f1).items()} == {"a": "global", "b": "global"}
    (pid,) = m.helper_pids()
    os.kill(pid, signal.SIGKILL)
    res = m.estimate_all(f1)
    assert res["a"].mode == "track"  # this process's object is untouched
    assert isinstance(res["b"], HelperStopped) and res["b"].reason == "internal_error", res["b"]
    assert m.helper_pids() != [pid] and m.object_ids == ["a", "b"]
    res = m.estimate_all(f1)  # the new helper has "b" again, and its track (kept in this process: core/tracking.py)
    assert res["b"].mode == "track" and _add(res["b"].T_camera_object, poses["b"][1], objs[1]) < 0.1 * objs[1].diameter
    m.remove("b")
    assert list(m.estimate_all(f1)) == ["a"]


def test_removing_from_a_dead_helper_and_setting_again(two_objects, with_helper):
    import os
    import signal

    objs, poses, frames, K = two_objects
    m, f1 = with_helper
    os.kill(m.helper_pids()[0], signal.SIGKILL)
    m.remove("b")  # its helper is gone already: nothing to tell it
    assert m.object_ids == ["a"]
    m.set_reference("b", decode_frame(*frames[0], K), mask_label=2, T_cam_obj=poses["b"][0])
    assert m.get("b").shard == 1 and len(m.helper_pids()) == 1  # a new helper took it
    res = m.estimate_all(f1)
    assert _add(res["b"].T_camera_object, poses["b"][1], objs[1]) < 0.1 * objs[1].diameter


def test_another_backend_reaches_the_helper(with_helper):
    """Switching the backend (the node's runtime `backend` parameter) starts the helper again with the new one."""
    m, f1 = with_helper
    before = m.helper_pids()
    m.set_backend("icp")
    assert m.helper_pids() != before and len(m.helper_pids()) == 1
    res = m.estimate_all(f1, track=False)
    assert {k: (r.backend, r.source) for k, r in res.items()} == {"a": ("icp", "centroid"), "b": ("icp", "centroid")}


def test_a_helper_that_cannot_start_leaves_every_object_here(two_objects, monkeypatch):
    """No interpreter to start, or one that dies as it starts: the objects are estimated here, and it says why."""
    from one2any_ros.core import object_processes

    _, poses, frames, K = two_objects
    f0, f1 = (decode_frame(*f, K) for f in frames)
    monkeypatch.setattr(object_processes.sys, "executable", "/nonexistent/python3")
    m = MultiObjectEstimator("classic", processes=1)
    _set_both(m, f0, poses)
    assert m.helper_pids() == [] and {m.get(k).shard for k in "ab"} == {0}
    assert "off" in m.helper_error and "nonexistent" in m.helper_error, m.helper_error
    monkeypatch.undo()
    m = MultiObjectEstimator("classic", processes=1)
    m.backend.recipe = ("no_such_backend", "auto", None)  # the helper's create_backend raises: it exits at once
    _set_both(m, f0, poses)
    assert m.helper_pids() == [] and {m.get(k).shard for k in "ab"} == {0} and "off" in m.helper_error
    assert {k: r.mode for k, r in m.estimate_all(f1).items()} == {"a": "global", "b": "global"}


def test_a_backend_without_a_recipe_keeps_every_object_here(two_objects):
    from one2any_ros.core.backends.classic import ClassicBackend

    _, poses, frames, K = two_objects
    m = MultiObjectEstimator(ClassicBackend(), processes=1)  # made directly: no recipe for another process
    _set_both(m, decode_frame(*frames[0], K), poses)
    assert m.helper_pids() == [] and {m.get(k).shard for k in "ab"} == {0}


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


def test_removing_an_object_from_a_live_helper_with_the_shipped_backend(two_objects):
    """The helper's answer to a removal once carried the object's estimator back (torch tensors: multiprocessing's
    pickler sent them through a resource sharer the helper could not authenticate to), so every removal of a helper's
    object failed with the learned backend. Removed, it is gone here and there; the other objects go on."""
    _, poses, frames, K = two_objects
    f0, f1 = (decode_frame(*f, K) for f in frames)
    m = MultiObjectEstimator("auto", processes=1)
    try:
        _set_both(m, f0, poses)
        assert m.backend.name == "one2any" and [m.get(k).shard for k in "ab"] == [0, 1]
        m.remove("b")
        assert m.object_ids == ["a"] and len(m.helper_pids()) == 1 and m.degraded == "" and m.helper_error == ""
        res = m.estimate_all(f1)
        assert list(res) == ["a"] and not isinstance(res["a"], Exception), res
        m.set_reference("b", f0, mask_label=2, T_cam_obj=poses["b"][0])  # and set again, in the same helper
        assert m.get("b").shard == 1 and not isinstance(m.estimate_all(f1)["b"], Exception)
    finally:
        m.close()


def test_a_stopped_helper_misses_its_deadline_and_its_objects_are_estimated_here(two_objects):
    """SIGSTOP (a helper stopped, swapped out or stuck): the frame waits at most the deadline, the helper's objects get
    helper_timeout on that frame, the helper is killed and started again in the background, its objects are
    estimated here meanwhile (``degraded`` says so) and go back to the new helper once it has started."""
    import os
    import signal
    import time

    import psutil

    objs, poses, frames, K = two_objects
    f0, f1 = (decode_frame(*f, K) for f in frames)
    m = MultiObjectEstimator("classic", processes=1, helper_timeout_s=1.0)
    try:
        _set_both(m, f0, poses)
        m.estimate_all(f1)
        (pid,) = m.helper_pids()
        os.kill(pid, signal.SIGSTOP)
        t = time.monotonic()
        res = m.estimate_all(f1)
        took = time.monotonic() - t
        assert res["a"].mode == "track"  # this process's object is untouched
        assert res["b"].reason == "helper_timeout", res["b"]
        assert took < 5 * 1.0 + 2.0, took  # the deadline (1 s), not forever
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # killed
        assert "helper_timeout" in m.degraded and set(m.degraded_objects()) == {"b"}
        res = m.estimate_all(f1)  # "b" here now, tracked from its last pose (kept in this process)
        assert res["b"].mode == "track" and _add(res["b"].T_camera_object, poses["b"][1], objs[1]) < 0.1 * objs[1].diameter
        # the new helper takes "b" back once it has started
        deadline = time.monotonic() + 60
        while m.degraded and time.monotonic() < deadline:
            m.estimate_all(f1)
        assert m.degraded == "" and m.helper_error == "" and m.helper_pids() not in ([], [pid])
        res = m.estimate_all(f1)
        assert not isinstance(res["b"], Exception) and m.get("b").estimator is None  # estimated by the helper
        # a helper stopped while an object is set on it: the request is not taken (a reference is megabytes), the
        # set still succeeds here, and the object is estimated here until the new helper has it
        m.remove("b")
        (pid,) = m.helper_pids()
        os.kill(pid, signal.SIGSTOP)
        t = time.monotonic()
        m.set_reference("b", f0, mask_label=2, T_cam_obj=poses["b"][0])
        assert time.monotonic() - t < 5 * 1.0 + 2.0
        assert set(m.degraded_objects()) == {"b"} and not isinstance(m.estimate_all(f1)["b"], Exception)
    finally:
        m.close()
    assert m.helper_pids() == []


def test_a_helper_that_keeps_failing_turns_the_helpers_off(two_objects):
    """Started again and again, never answering a frame: after MAX_HELPER_RESTARTS the objects all stay here."""
    import os
    import signal

    from one2any_ros.core.multi_object import MAX_HELPER_RESTARTS

    _, poses, frames, K = two_objects
    f0, f1 = (decode_frame(*f, K) for f in frames)
    m = MultiObjectEstimator("classic", processes=1, helper_timeout_s=1.0)
    try:
        _set_both(m, f0, poses)
        kills = 0
        while not m.helper_error and kills < 5 * MAX_HELPER_RESTARTS:
            for pid in m.helper_pids():  # each new helper killed as soon as it is there (starting or not)
                os.kill(pid, signal.SIGKILL)
                kills += 1
            m.estimate_all(f1)
        assert kills >= MAX_HELPER_RESTARTS + 1, kills
        assert m.helper_pids() == [] and "off" in m.helper_error and {m.get(k).shard for k in "ab"} == {0}
        assert all(not isinstance(r, Exception) for r in m.estimate_all(f1).values())
    finally:
        m.close()
