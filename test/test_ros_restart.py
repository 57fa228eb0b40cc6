"""The saved reference survives kill -9 (restored on start, poses resume without ~/set_reference);
a corrupt file is reported and the node runs without one. Uses the default reference path under
ROS_HOME (conftest: .ros/pytest), named after the node's full name (namespace /cam1)."""
import os
import time

import numpy as np
import pytest

from one2any_ros.core.geometry import rotation_angle_deg
from one2any_ros.ros import conversions as conv
from one2any_ros.ros_tools.harness import GraphClient, NodeProcess, frame_messages
from one2any_ros.ros.params import default_reference_path

pytestmark = pytest.mark.slow
NS = "/cam1"
PARAMS = {"backend": "classic", "max_frame_age_ms": 3000}


@pytest.fixture(scope="module")
def frames():
    from one2any_ros.data.sample import load_sample_sequence

    return load_sample_sequence()["frames"]


@pytest.fixture(scope="module")
def client():
    cl = GraphClient(namespace=NS)
    yield cl
    cl.close()


@pytest.fixture
def start_node(tmp_path):
    procs = []

    def start():
        p = NodeProcess(namespace=NS, params=PARAMS, log_path=tmp_path / f"node{len(procs)}.log").start()
        procs.append(p)
        return p
    yield start
    for p in procs:
        p.stop()


def pose_for(client, frame, timeout=30):
    """Publish the frame (again every 3 s: a restarted node's subscriptions may still be matching) until a pose."""
    _, pose = client.publish_until_pose(frame_messages(frame, time.time_ns()), timeout=timeout, repeat_s=3.0)
    assert pose is not None
    T = conv.pose_to_matrix(pose.pose)
    G = frame["T_cam_obj"]
    return rotation_angle_deg(T[:3, :3].T @ G[:3, :3]), 1000 * np.linalg.norm(T[:3, 3] - G[:3, 3])


def test_kill9_and_restart_restores_the_reference(client, frames, start_node):
    path = default_reference_path(f"{NS}/one2any")
    path.unlink(missing_ok=True)
    node = start_node()
    assert client.wait_ready(60), node.log_text()
    res = client.set_reference_on(frame_messages(frames[0], time.time_ns()), T_cam_obj=frames[0]["T_cam_obj"])
    assert res.success, res.message
    assert path.is_file() and str(path) in res.message
    rot, trans = pose_for(client, frames[1])
    assert rot < 3.0 and trans < 5.0

    node.kill9()
    assert not node.alive()
    t_killed = time.monotonic()  # diagnostics after this are the restarted node's
    node2 = start_node()
    assert client.wait_ready(60), node2.log_text()
    assert client.wait_diagnostics(lambda d: d["reference"] == "set", after=t_killed, timeout=60), node2.log_text()
    rot, trans = pose_for(client, frames[2])  # no set_reference: restored from the file
    assert rot < 3.0 and trans < 5.0
    assert "reference restored" in node2.log_text()


def test_corrupt_reference_file_is_reported_and_the_node_runs_without(client, frames, start_node):
    path = default_reference_path(f"{NS}/one2any")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(256))
    t_start = time.monotonic()
    node = start_node()
    assert client.wait_ready(60), node.log_text()
    # not a frame's failure: seen after this node started (with the file just written), never an earlier node's
    d = client.wait_diagnostics(lambda d: d["last_failure"].startswith("bad_reference_file")
                                and str(path) in d["last_failure"], after=t_start, timeout=30)
    assert d is not None and d["reference"] == "none", (client.diagnostics[-1:], node.log_text())
    assert "could not restore the reference" in node.log_text()
    assert client.set_reference_on(frame_messages(frames[0], time.time_ns())).success  # recovers: a new reference
    assert node.alive()
