"""The node as a separate process, driven over real DDS by an rclpy client (the contract: docs/ros.md).

Frames are the bundled sample's (640x480, one unseen object on a turntable); the classic backend, with
the reference on frame 0 and its ground-truth pose, so outputs are in the model frame. Frames 1-3 turn
6.7-20 degrees from frame 0; classic gets them within ~1 degree / ~1 mm (tolerances below are 3x that).
Tests in this module share one node, but none relies on another having run: each asks for the state it needs
(``referenced``: a reference on frame 0; ``unreferenced``: none), so any one of them runs alone (``-k``) or in
any order; the one about a node that never received a frame starts its own. The node's inputs are best-effort,
so a frame whose answer a test waits for is sent again until it comes (``GraphClient.publish_until``).
"""
import time

import numpy as np
import pytest

from one2any_ros.core.geometry import rotation_angle_deg
from one2any_ros.ros import conversions as conv
from one2any_ros.ros.diagnostics import KEYS
from one2any_ros.ros_tools.harness import GraphClient, NodeProcess, frame_messages

pytestmark = pytest.mark.slow
ROT_TOL_DEG, TRANS_TOL_MM = 3.0, 5.0


@pytest.fixture(scope="module")
def frames():
    from one2any_ros.data.sample import load_sample_sequence

    return load_sample_sequence()["frames"]


@pytest.fixture(scope="module")
def ref_path(tmp_path_factory):
    return tmp_path_factory.mktemp("ros_node") / "reference.zip"


# max_frame_age_ms: generous, the test machine is shared; staleness is tested with a 10 s old frame
NODE_PARAMS = {"backend": "classic", "max_frame_age_ms": 3000}


@pytest.fixture(scope="module")
def client(ref_path, tmp_path_factory):
    log = tmp_path_factory.mktemp("ros_node_log") / "node.log"
    proc = NodeProcess(params={**NODE_PARAMS, "reference_path": str(ref_path)}, log_path=log).start()
    cl = GraphClient()
    cl.has_reference = False  # kept by the fixtures below and the tests that set or clear it
    try:
        assert cl.wait_ready(60), "node did not come up:\n" + proc.log_text()
        yield cl
    finally:
        cl.close()
        rc = proc.stop()
        print(proc.log_text()[-3000:])
    assert rc == 0, "the node did not shut down cleanly on SIGINT"


@pytest.fixture
def referenced(client, frames):
    """The shared node with a reference on frame 0 (its ground-truth pose)."""
    if not client.has_reference:
        res = set_reference_on(client, frames[0], T_cam_obj=frames[0]["T_cam_obj"])
        assert res.success, res.message
        client.has_reference = True
    return client


@pytest.fixture
def own_client(tmp_path):
    """A node of this test's own (namespace /own), for what must not meet, or must not leave, another test's state."""
    proc = NodeProcess(namespace="/own", params={**NODE_PARAMS, "reference_path": str(tmp_path / "ref.zip")},
                       log_path=tmp_path / "node.log").start()
    client = GraphClient(namespace="/own")
    try:
        assert client.wait_ready(60), "node did not come up:\n" + proc.log_text()
        yield client
    finally:
        client.close()
        proc.stop()


@pytest.fixture
def unreferenced(client):
    """The shared node without a reference."""
    assert client.clear_reference().success
    client.has_reference = False
    return client


def pose_errors(T, T_gt):
    return rotation_angle_deg(T[:3, :3].T @ T_gt[:3, :3]), 1000 * np.linalg.norm(T[:3, 3] - T_gt[:3, 3])


def set_reference_on(client, frame, *, T_cam_obj=None, msgs=None):
    """~/set_reference on that frame (GraphClient.set_reference_on: sent after the request, repeated until answered)."""
    return client.set_reference_on(msgs if msgs is not None else frame_messages(frame, time.time_ns()), T_cam_obj=T_cam_obj)


def expect_failure(client, msgs, reason, *, timeout=10.0):
    """Publish a bad frame (again every 2 s until answered): /diagnostics names ``reason`` for one of the stamps sent
    (GraphClient.failure_of: keyed to this frame, never an earlier frame's or test's failure of the same reason), and
    no stamp sent got a pose (frames are taken in stamp order: once the node failed on one stamp it is done with
    the earlier copies, so a pose for one of them would have come already)."""
    stamps: list[int] = []
    diag = client.publish_until_failure(msgs, reason, timeout=timeout, stamps=stamps)
    last = client.diagnostics[-1][0] if client.diagnostics else None
    assert diag is not None, f"no {reason} for the stamps sent {stamps}; last diagnostics: {last}"
    assert not set(stamps) & set(client.poses)
    return diag


def pose_on(client, frame, **kw):
    """Publish ``frame`` (fresh stamp; again every 2 s until answered): (the stamp answered, its ~/pose)."""
    stamp, pose = client.publish_until_pose(frame_messages(frame, time.time_ns(), **kw), timeout=30)
    assert pose is not None, f"no pose; last diagnostics: {client.diagnostics[-1][0] if client.diagnostics else None}"
    return stamp, pose


def test_set_reference_without_any_frame_fails_with_a_reason(own_client):
    """A node that has never received a frame: its own (the shared one may have had frames from other tests)."""
    client = own_client
    res = client.set_reference(use_latest_frame=True)
    assert not res.success and res.message.startswith("no_frame:")
    t = time.monotonic()
    res = client.set_reference(use_latest_frame=False, timeout_s=0.5)
    assert not res.success and "within 0.5 s" in res.message
    assert time.monotonic() - t < 3.0  # ~0.5 s; the node's default wait (2 s) would take 2 s
    # a service's failure, no frame's: on this test's own node, so no other test's no_frame can be the one seen
    d = client.wait_diagnostics(lambda d: d["last_failure"].startswith("no_frame"), after=t, timeout=10)
    assert d is not None and d["reference"] == "none", client.diagnostics[-1:]


def test_frames_before_a_reference_give_no_pose(unreferenced, frames):
    diag = expect_failure(unreferenced, frame_messages(frames[1], time.time_ns()), "no_reference")
    assert diag["reference"] == "none"


def test_reference_then_poses_on_pose_estimate_and_tf_match_ground_truth(client, frames, ref_path):
    res = set_reference_on(client, frames[0], T_cam_obj=frames[0]["T_cam_obj"])
    assert res.success, res.message
    client.has_reference = True
    assert res.num_points > 1000 and 0.04 < res.object_radius < 0.15
    assert ref_path.is_file()
    for i in (1, 2, 3):
        stamp, pose = pose_on(client, frames[i], frame_id="cam_optical")
        assert pose.header.frame_id == "cam_optical" and conv.stamp_to_ns(pose.header.stamp) == stamp
        rot, trans = pose_errors(conv.pose_to_matrix(pose.pose), frames[i]["T_cam_obj"])
        assert rot < ROT_TOL_DEG and trans < TRANS_TOL_MM, (i, rot, trans)
        est = client.wait_for(lambda: client.estimates.get(stamp), 5)[0]
        assert est.backend == "classic" and est.inliers >= 20 and 0.3 < est.confidence <= 1.0
        assert 0 < est.latency_ms < 20000 and est.residual_m < 0.01
        np.testing.assert_allclose(conv.pose_to_matrix(est.pose), conv.pose_to_matrix(pose.pose), atol=1e-6)
        tf = client.wait_for(lambda: [t for t, _ in client.tfs if conv.stamp_to_ns(t.header.stamp) == stamp], 5)
        assert tf and tf[0].header.frame_id == "cam_optical" and tf[0].child_frame_id == "object"
        np.testing.assert_allclose(conv.transform_to_matrix(tf[0].transform), conv.pose_to_matrix(pose.pose), atol=1e-6)
    d = client.wait_diagnostics(lambda d: d["reference"] == "set" and float(d["rate_hz"]) > 0)
    assert tuple(d) == KEYS
    assert d["backend"] == "classic" and d["device"] == "cpu" and int(d["inliers"]) >= 20
    assert float(d["latency_ms"]) > 0 and d["input_age_ms"] != ""


def _bad(frames, kind):
    """Messages of frame 1 (fresh stamp) broken in one way."""
    f = dict(frames[1])
    depth_encoding = "16UC1"
    if kind == "empty_mask":
        f["mask"] = np.zeros_like(f["mask"])
    elif kind == "zero_depth":
        f["depth"] = np.zeros_like(f["depth"])
    elif kind == "nan_depth":
        f["depth"], depth_encoding = np.full_like(f["depth"], np.nan), "32FC1"
    msgs = frame_messages(f, time.time_ns(), depth_encoding=depth_encoding)
    if kind == "rgba_rgb":
        rgba = np.concatenate([f["rgb"], np.full(f["rgb"].shape[:2] + (1,), 255, np.uint8)], axis=2)
        msgs["rgb"].encoding, msgs["rgb"].step, msgs["rgb"].data = "rgba8", 4 * rgba.shape[1], rgba.tobytes()
    elif kind == "8bit_depth":
        msgs["depth"] = conv.array_to_image((f["depth"] * 100).astype(np.uint8), "mono8", stamp=msgs["depth"].header.stamp)
    elif kind == "rgb_mask":
        msgs["mask"] = conv.array_to_image(np.repeat(f["mask"][..., None].astype(np.uint8) * 255, 3, 2), "rgb8",
                                           stamp=msgs["mask"].header.stamp)
    elif kind == "half_mask":
        half = f["mask"][::2, ::2].astype(np.uint8) * 255
        msgs["mask"] = conv.array_to_image(half, "mono8", stamp=msgs["mask"].header.stamp)
    elif kind == "truncated":
        msgs["depth"].data = bytes(msgs["depth"].data)[: len(msgs["depth"].data) // 2]
    elif kind == "zero_K":
        msgs["camera_info"].k = [0.0] * 9
    elif kind == "stale":
        old = conv.ns_to_stamp(time.time_ns() - 10 * 10**9)
        for m in msgs.values():
            m.header.stamp = old
    return msgs


# each case's reason is matched for the stamps it sent (expect_failure): in any order, under -k, repeated reasons too
BAD_INPUTS = [
    ("rgba_rgb", "bad_rgb_encoding"), ("8bit_depth", "bad_depth_encoding"),
    ("rgb_mask", "bad_mask_encoding"), ("zero_depth", "no_depth_in_mask"), ("half_mask", "size_mismatch"),
    ("nan_depth", "no_depth_in_mask"), ("truncated", "truncated_image"), ("zero_K", "bad_intrinsics"),
    ("stale", "stale_frame"),
]


@pytest.mark.parametrize("kind, reason", BAD_INPUTS, ids=[k for k, _ in BAD_INPUTS])
def test_bad_input_gives_no_pose_and_a_reason(referenced, frames, kind, reason):
    expect_failure(referenced, _bad(frames, kind), reason)


def test_an_empty_mask_does_not_stop_tracking(referenced, frames):
    """mask_mode when_needed (the default): a mask without the object's label is no mask for it (segmenters miss
    objects); the object is tracked from its last pose. (every_frame: empty_mask, test_masks_when_needed.py.)"""
    f = dict(frames[2])
    f["mask"] = np.zeros_like(f["mask"])
    _, pose = pose_on(referenced, f)
    rot, trans = pose_errors(conv.pose_to_matrix(pose.pose), frames[2]["T_cam_obj"])
    assert rot < ROT_TOL_DEG and trans < TRANS_TOL_MM


def _twice_as_fine(frame: dict) -> dict:
    """The frame as a camera twice as fine sees it (1280x960): each pixel a 2x2 block, the intrinsics to match."""
    fine = dict(frame)
    for key in ("rgb", "depth", "mask"):
        fine[key] = np.repeat(np.repeat(np.asarray(frame[key]), 2, axis=0), 2, axis=1)
    K = np.array(frame["K"], np.float64)
    K[:2, :2] *= 2
    K[:2, 2] = 2 * K[:2, 2] + 0.5
    fine["K"] = K
    return fine


def test_a_camera_wider_than_max_image_width_is_estimated_at_the_working_width(own_client, frames):
    """1280x960 frames (``max_image_width`` 640, the default): decimated to 640x480 before estimation, a reference
    whose roi is in the camera's pixels (unscaled, it would hold none of the object), then a pose on a later frame."""
    client, f0 = own_client, _twice_as_fine(frames[0])
    v, u = np.nonzero(f0["mask"])
    roi = (int(u.min()) - 8, int(v.min()) - 8, int(u.max() - u.min()) + 16, int(v.max() - v.min()) + 16)
    res = client.set_reference_on(frame_messages(f0, time.time_ns()), T_cam_obj=frames[0]["T_cam_obj"], roi=roi)
    assert res.success, res.message
    _, pose = pose_on(client, _twice_as_fine(frames[2]))
    rot, trans = pose_errors(conv.pose_to_matrix(pose.pose), frames[2]["T_cam_obj"])
    assert rot < ROT_TOL_DEG and trans < TRANS_TOL_MM


def test_missing_camera_info_is_reported(own_client, frames):
    """On a node of its own: the images it leaves waiting for their camera_info in the node's synchronizer would
    hold back an older frame that a later test sends (the 10 s old one of the stale_frame case)."""
    client = own_client
    future = client.set_reference_async(use_latest_frame=False, timeout_s=2.5)
    t0 = time.monotonic()
    stamps = []
    while time.monotonic() - t0 < 3.5:  # images at ~5 Hz without camera_info: no frame ever completes
        msgs = frame_messages(frames[1], time.time_ns())
        msgs["camera_info"] = None
        client.publish(msgs)
        stamps.append(conv.stamp_to_ns(msgs["rgb"].header.stamp))
        time.sleep(0.2)
    assert client.wait_for(future.done, 10)
    res = future.result()
    assert not res.success and res.message.startswith("no_frame:") and "missing_camera_info" in res.message
    # not a frame's failure (no frame ever completes): on this test's own node, after the images began
    d = client.wait_diagnostics(lambda d: d["last_failure"].startswith("missing_camera_info"), after=t0, timeout=10)
    assert d is not None, client.diagnostics[-1:]
    assert "arrive but no camera_info" in d["last_failure"], d["last_failure"]  # the images did arrive
    assert not set(stamps) & set(client.poses)


def test_set_reference_on_a_bad_frame_fails_and_keeps_the_old_reference(referenced, frames):
    client = referenced
    res = set_reference_on(client, frames[1], msgs=_bad(frames, "empty_mask"))
    assert not res.success and res.message.startswith("empty_mask:")
    _, pose = pose_on(client, frames[2])  # the node is up and still tracks with the old reference
    rot, trans = pose_errors(conv.pose_to_matrix(pose.pose), frames[2]["T_cam_obj"])
    assert rot < ROT_TOL_DEG and trans < TRANS_TOL_MM


def test_parameters_change_at_runtime(referenced, frames):
    client = referenced
    try:
        assert client.set_parameters(min_confidence=0.999)[0].successful
        expect_failure(client, frame_messages(frames[2], time.time_ns()), "low_confidence")
        rejected = client.set_parameters(backend="bogus") + client.set_parameters(min_depth=9.0) + \
            client.set_parameters(reference_path="/tmp/elsewhere.zip") + client.set_parameters(min_confidence=2.0)
        assert not any(r.successful for r in rejected), [r.reason for r in rejected]
        assert all(r.successful for r in client.set_parameters(min_confidence=0.05, backend="icp", debug=True))
        stamp, _ = pose_on(client, frames[2])
        assert client.wait_for(lambda: client.estimates.get(stamp), 5)[0].backend == "icp"
        img = client.wait_for(lambda: [m for m in client.debug_images if conv.stamp_to_ns(m.header.stamp) == stamp], 5)
        assert img and img[0].encoding == "rgb8" and (img[0].height, img[0].width) == (480, 640)
        assert all(r.successful for r in client.set_parameters(backend="classic", debug=False, publish_tf=False))
        off: list[int] = []
        assert client.publish_until_pose(frame_messages(frames[2], time.time_ns()), stamps=off)[1] is not None
        # publish_tf false: no /tf for those frames. Proof that none is on its way: /tf back on, a later frame's
        # transform comes, and one writer's reliable messages arrive in the order it sent them
        assert all(r.successful for r in client.set_parameters(publish_tf=True))
        on, _ = pose_on(client, frames[2])
        tf_stamps = lambda: {conv.stamp_to_ns(t.header.stamp) for t, _ in list(client.tfs)}  # noqa: E731
        assert client.wait_for(lambda: on in tf_stamps(), 10), "no /tf with publish_tf back on"
        assert not set(off) & tf_stamps()
    finally:  # the shared node as the other tests expect it (the values NodeProcess and config give)
        assert all(r.successful for r in client.set_parameters(min_confidence=0.05, backend="classic", debug=False,
                                                               publish_tf=True))


def test_clear_reference(referenced, frames, ref_path):
    client = referenced
    assert ref_path.is_file()
    res = client.clear_reference()
    client.has_reference = False
    assert res.success and not ref_path.exists()
    expect_failure(client, frame_messages(frames[2], time.time_ns()), "no_reference")
