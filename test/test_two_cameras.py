"""Two cameras: two namespaced nodes in one graph (``-r __ns:=/cam1``, ``/cam2``) from the same
config/one2any.yaml plus config/two_cameras.yaml (per-camera ``object_frame``). Each keeps its own
reference file (default path: named after the node's full name, docs/ros.md), its own topics, TF child frame
and diagnostics, and both are right: cam1 takes frame 0 of the bundled sample as its reference and sees
frames 1-3, cam2 takes frame 9 and sees frames 8-6 (so a mix-up between the two would show as a wrong
pose), published at the same time (one thread per camera). The inputs are best-effort, so each camera sends
its frame again until its node answers (``GraphClient.publish_until``).

backend:=classic is set on the command line after the two --params-file (rcl applies the arguments in order,
so it wins over the yaml's `auto`, which loads torch in both processes and runs the learned backend now that a
trained checkpoint is bundled; this test is about the graph, not backends), and /diagnostics must say classic.
"""
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from one2any_ros.core.geometry import rotation_angle_deg
from one2any_ros.ros import conversions as conv
from one2any_ros.ros_tools.harness import GraphClient, NodeProcess, frame_messages
from one2any_ros.ros.params import default_reference_path

pytestmark = pytest.mark.slow
REPO = __import__("pathlib").Path(__file__).resolve().parent.parent
ROT_TOL_DEG, TRANS_TOL_MM = 3.0, 5.0  # classic on single sample frames (as in test_ros_node.py)
CAMERAS = {"/cam1": {"ref": 0, "queries": (1, 2, 3)}, "/cam2": {"ref": 9, "queries": (8, 7, 6)}}


@pytest.fixture(scope="module")
def frames():
    from one2any_ros.data.sample import load_sample_sequence

    return load_sample_sequence()["frames"]


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("two_cameras")
    nodes, clients = {}, {}
    for ns in CAMERAS:
        default_reference_path(f"{ns}/one2any").unlink(missing_ok=True)
        p = NodeProcess(namespace=ns, params={"backend": "classic", "max_frame_age_ms": 3000},
                        params_files=[REPO / "config" / "one2any.yaml", REPO / "config" / "two_cameras.yaml"],
                        log_path=log_dir / f"{ns.strip('/')}.log")
        nodes[ns] = p.start()
    try:
        for ns in CAMERAS:
            clients[ns] = GraphClient(namespace=ns, client_name=f"client_{ns.strip('/')}")
        for ns, c in clients.items():
            assert c.wait_ready(60), nodes[ns].log_text()
        yield nodes, clients
    finally:
        for c in clients.values():
            c.close()
        for p in nodes.values():
            p.stop()
        for ns in CAMERAS:
            default_reference_path(f"{ns}/one2any").unlink(missing_ok=True)


def _msgs(ns: str, frame: dict, stamp_ns: int) -> dict:
    return frame_messages(frame, stamp_ns, frame_id=f"{ns.strip('/')}_optical")


def test_two_namespaced_nodes_keep_their_own_reference_topics_frames_and_poses(graph, frames):
    nodes, clients = graph
    with ThreadPoolExecutor(len(clients)) as pool:  # one thread per camera: both publish at the same time
        # both references requested at once; each node takes the next frame on its own topics
        t = time.time_ns()
        ref_stamps = {ns: [] for ns in CAMERAS}
        futures = {ns: pool.submit(c.set_reference_on, _msgs(ns, frames[CAMERAS[ns]["ref"]], t + k * 10**6),
                                   T_cam_obj=frames[CAMERAS[ns]["ref"]]["T_cam_obj"], stamps=ref_stamps[ns])
                   for k, (ns, c) in enumerate(clients.items())}
        paths = {}
        for ns, fut in futures.items():
            res = fut.result(timeout=60)
            assert res.success, (ns, res.message)
            paths[ns] = default_reference_path(f"{ns}/one2any")
            assert paths[ns].is_file() and str(paths[ns]) in res.message
        assert paths["/cam1"] != paths["/cam2"] and paths["/cam1"].read_bytes() != paths["/cam2"].read_bytes()
        assert paths["/cam1"].name == "cam1.one2any.reference.zip"
        # after setting the reference each worker goes on to estimate that same frame (the global search); let it
        # finish (its pose, or its failure on /diagnostics), or on a loaded machine the next frame waits behind it
        # past max_frame_age_ms (stale)
        for ns, c in clients.items():
            c.wait_for(lambda: c.answer_of(ref_stamps[ns]), 30)

        stamps = {ns: [] for ns in CAMERAS}
        for j in range(3):
            t = time.time_ns()
            sent = {ns: pool.submit(c.publish_until_pose, _msgs(ns, frames[CAMERAS[ns]["queries"][j]], t + k * 10**6),
                                    timeout=30, stamps=stamps[ns])
                    for k, (ns, c) in enumerate(clients.items())}
            for ns, c in clients.items():
                _, pose = sent[ns].result(timeout=60)
                assert pose is not None, f"{ns}: no pose for frame {CAMERAS[ns]['queries'][j]}\n" + nodes[ns].log_text()
                assert pose.header.frame_id == f"{ns.strip('/')}_optical"
                T, G = conv.pose_to_matrix(pose.pose), frames[CAMERAS[ns]["queries"][j]]["T_cam_obj"]
                rot, trans = rotation_angle_deg(T[:3, :3].T @ G[:3, :3]), 1000 * np.linalg.norm(T[:3, 3] - G[:3, 3])
                assert rot < ROT_TOL_DEG and trans < TRANS_TOL_MM, (ns, j, rot, trans)

    for ns, c in clients.items():
        name = ns.strip("/")
        other = "/cam2" if ns == "/cam1" else "/cam1"
        # the graph: this camera's inputs go to this camera's node only, and its outputs come from it only (the
        # other camera's frames cannot reach it: a proof the absence of their stamps below does not need)
        ours = {(ns, "one2any")}
        for topic in ("rgb", "depth", "mask", "camera_info"):
            subs = {(i.node_namespace, i.node_name) for i in c.node.get_subscriptions_info_by_topic(f"{ns}/{topic}")}
            assert subs == ours, (topic, subs)
        for topic in ("pose", "estimate"):
            pubs = {(i.node_namespace, i.node_name) for i in c.node.get_publishers_info_by_topic(f"{ns}/one2any/{topic}")}
            assert pubs == ours, (topic, pubs)
        # poses only for this camera's frames: nothing crossed over from the other namespace
        assert set(c.poses) <= set(stamps[ns]) | set(ref_stamps[ns])
        assert not set(c.poses) & (set(stamps[other]) | set(ref_stamps[other]))
        # TF: parent = this camera's frame, child = this camera's object_frame (two_cameras.yaml)
        tfs = c.wait_for(lambda: [tf for tf, _ in list(c.tfs) if conv.stamp_to_ns(tf.header.stamp) in stamps[ns]], 5)
        assert tfs and {tf.child_frame_id for tf in tfs} == {f"object_{name}"}
        assert {tf.header.frame_id for tf in tfs} == {f"{name}_optical"}
        # diagnostics under the node's full name
        d = c.wait_diagnostics(lambda d: d["reference"] == "set" and float(d["rate_hz"]) > 0, timeout=5)
        assert d is not None and d["backend"] == "classic"  # -p backend:=classic won over the yaml's auto
        assert c.diagnostics[-1][2].name == f"{ns}/one2any"
