"""The code path of a full ROS 2 install, taken in CI: test doubles of ``tf2_ros`` and ``message_filters``
(test/doubles, API-faithful: see its README) are put on the path, so the node uses
``tf2_ros.TransformBroadcaster.sendTransform`` and ``message_filters.ApproximateTimeSynchronizer`` exactly as
it does where the real libraries are installed. Also here: the node's own resilience (publishing errors,
a dying worker, stamp order, failure texts), checked on a node object in this process.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from geometry_msgs.msg import TransformStamped
from std_msgs.msg import Header

from one2any_ros.core.geometry import rotation_angle_deg
from one2any_ros.ros import conversions as conv
from one2any_ros.ros_tools.harness import GraphClient, NodeProcess, frame_messages

DOUBLES = Path(__file__).resolve().parent / "doubles"
MS = 1_000_000


@pytest.fixture
def full_install(monkeypatch):
    """``import tf2_ros`` / ``import message_filters`` find the doubles for this test only."""
    for name in ("tf2_ros", "message_filters"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.syspath_prepend(str(DOUBLES))
    yield
    for name in ("tf2_ros", "message_filters"):
        sys.modules.pop(name, None)


@pytest.fixture
def ros_context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.try_shutdown(context=ctx)


@pytest.fixture(scope="module")
def frames():
    from one2any_ros.data.sample import load_sample_sequence

    return load_sample_sequence()["frames"]


def header(stamp_ns: int) -> Header:
    return Header(stamp=conv.ns_to_stamp(stamp_ns), frame_id="cam")


class Stamped:
    """A message with a header, as message_filters needs."""

    def __init__(self, stamp_ns: int, tag: str = "") -> None:
        self.header, self.tag = header(stamp_ns), tag


# --- the doubles follow the real APIs ---------------------------------------------------------------------

def test_tf2_ros_double_has_the_real_api_and_the_node_module_uses_it(full_install, ros_context):
    from one2any_ros.ros import tf

    node = rclpy.create_node("tf_api", context=ros_context)
    try:
        b = tf.create_broadcaster(node)
        assert type(b).__module__ == "tf2_ros" and tf.broadcaster_name(b) == "tf2_ros.TransformBroadcaster"
        assert hasattr(b, "sendTransform") and not hasattr(b, "send_transform")
        assert b.pub_tf.topic_name == "/tf"
        t = TransformStamped(header=header(5 * MS), child_frame_id="object")
        b.sendTransform(t)  # one, a list, any iterable: as tf2_ros takes them
        b.sendTransform([t, t])
        b.sendTransform(iter([t]))
        # the stand-in used without tf2_ros has the same constructor and method, nothing else
        ours = tf.TfBroadcaster(node)
        assert hasattr(ours, "sendTransform") and not hasattr(ours, "send_transform")
        ours.sendTransform([t])
    finally:
        node.destroy_node()


def test_message_filters_double_matches_like_the_real_one(full_install, ros_context):
    """The first combination in closeness order with spread < slop; only the matched messages deleted, so an
    older set can still complete after a newer one (what the node's stamp-order guard is for)."""
    import message_filters as mf

    node = rclpy.create_node("mf_api", context=ros_context)
    try:
        a = mf.Subscriber(node, TransformStamped, "a", qos_profile=5)
        b = mf.Subscriber(node, TransformStamped, "b")
        assert a.getTopic() == "a" and a.sub.topic_name.endswith("/a") and a.topic_name == a.sub.topic_name
        sync = mf.ApproximateTimeSynchronizer([a, b], 5, 0.05)
        out = []
        sync.registerCallback(lambda x, y: out.append((x.tag, y.tag)))
        a.callback(Stamped(100 * MS, "a100"))
        a.callback(Stamped(200 * MS, "a200"))
        b.callback(Stamped(205 * MS, "b205"))  # the newer set completes first
        b.callback(Stamped(101 * MS, "b101"))  # then the older one, still queued
        assert out == [("a200", "b205"), ("a100", "b101")]
        b.callback(Stamped(300 * MS, "b300"))
        a.callback(Stamped(350 * MS, "a350"))  # spread exactly slop: not below it, no set
        assert len(out) == 2
    finally:
        node.destroy_node()


def test_frame_synchronizer_takes_the_message_filters_path(full_install, ros_context):
    from sensor_msgs.msg import CameraInfo, Image
    from rclpy.qos import qos_profile_sensor_data

    from one2any_ros.ros.sync import FrameSynchronizer

    node = rclpy.create_node("sync_api", context=ros_context)
    try:
        sets = []
        fs = FrameSynchronizer(node, {"rgb": Image, "depth": Image, "mask": Image, "camera_info": CameraInfo},
                               qos=qos_profile_sensor_data, slop_s=0.05, callback=sets.append)
        assert fs.backend == "message_filters" and len(fs.filters) == 4
        assert all(f.sub.qos_profile.reliability == qos_profile_sensor_data.reliability for f in fs.filters)
        for i, f in enumerate(fs.filters):
            msg = Image() if i < 3 else CameraInfo()
            msg.header = header(10 * MS + i * MS)
            f.callback(msg)
        assert len(sets) == 1 and set(sets[0]) == {"rgb", "depth", "mask", "camera_info"}
        fs.set_slop(0.001)
        assert fs._sync.slop.nanoseconds == 1 * MS
    finally:
        node.destroy_node()


# --- the node object in this process: resilience ---------------------------------------------------------

@pytest.fixture
def node_factory(ros_context, tmp_path):
    made = []

    def make(**params):
        from rclpy.parameter import Parameter

        from one2any_ros.ros.node import One2AnyNode

        overrides = [Parameter(k, value=v) for k, v in
                     {"backend": "classic", "reference_path": str(tmp_path / "ref.zip"), "max_frame_age_ms": 0,
                      **params}.items()]
        node = One2AnyNode(context=ros_context, parameter_overrides=overrides)
        made.append(node)
        return node
    yield make
    for node in made:
        node.destroy_node()


class Recorded(list):
    """The node's /diagnostics statuses as published, and beside them (``threads``) the thread that published each."""

    threads: list


def record_diagnostics(node) -> Recorded:
    got = Recorded()
    got.threads = []
    real = node._diag_pub.publish
    node._diag_pub.publish = lambda arr: (got.threads.append(threading.current_thread().name),
                                          got.append(arr.status[0]), real(arr))
    return got


def values(status) -> dict:
    return {kv.key: kv.value for kv in status.values}


def test_a_publishing_exception_costs_one_frame_and_is_reported(node_factory, frames, full_install):
    node = node_factory()
    assert type(node._outputs.tf).__module__ == "tf2_ros"  # the full-install path
    diags = record_diagnostics(node)
    ref_msgs = frame_messages(frames[0], 1_000 * MS)
    node._table.objects.set_reference("", conv.view_from_messages(ref_msgs, min_depth=0.1, max_depth=4.0,
                                                            T_cam_obj=frames[0]["T_cam_obj"]))
    node._table.refresh_listing()
    published = []
    real_send = node._outputs.tf.sendTransform

    def failing_once(t):
        if not published:
            published.append("raised")
            raise RuntimeError("publisher handle is gone")
        published.append(t)
        real_send(t)

    node._outputs.tf.sendTransform = failing_once
    poses_before = node._stats.poses
    node._on_frame(frame_messages(frames[1], 2_000 * MS))
    this_frame = f"publish_error: frame stamped {conv.stamp_text(2_000 * MS)} s: "  # the failure of that frame
    assert GraphClient.wait_for(lambda: node._stats.last_failure.startswith(this_frame), 60), \
        node._stats.last_failure
    assert "publisher handle is gone" in node._stats.last_failure
    # published at once, by the worker itself (_fail), not by the 1 Hz tick on the executor: waited for, since the
    # worker records the failure just before it publishes it
    assert GraphClient.wait_for(lambda: any(values(d)["last_failure"].startswith(this_frame) and t == "one2any_worker"
                                            for d, t in zip(list(diags), list(diags.threads))), 5), diags.threads
    node._on_frame(frame_messages(frames[2], 3_000 * MS))  # the worker goes on
    assert GraphClient.wait_for(lambda: node._stats.poses > poses_before, 60)
    assert isinstance(published[-1], TransformStamped) and published[-1].child_frame_id == "object"
    assert node._worker.is_alive() and not node._worker_error


class WorkerKiller(BaseException):
    """Escapes every `except Exception`: the kind of error that used to end the worker silently."""


def test_a_dead_worker_is_reported_error_and_restarted_and_set_reference_answers(node_factory, frames):
    node = node_factory()
    diags = record_diagnostics(node)
    old_worker = node._worker

    def die():
        raise WorkerKiller("boom")

    future = node._submit(die)  # a job in progress when the worker dies (as ~/set_reference's is)
    assert GraphClient.wait_for(future.done, 10)
    assert isinstance(future.exception(), RuntimeError) and "worker died" in str(future.exception())
    assert GraphClient.wait_for(lambda: not old_worker.is_alive(), 10)
    assert node._stats.last_failure.startswith("worker_died: WorkerKiller: boom")
    node._publish_diagnostics()  # the 1 Hz tick: ERROR, then a new worker
    errors = [d for d in diags if d.level == d.ERROR]
    assert errors and "worker not running" in errors[0].message, [d.message for d in diags]
    assert node._worker is not old_worker and node._worker.is_alive() and node._stats.worker_restarts == 1
    node._publish_diagnostics()
    assert diags[-1].level != diags[-1].ERROR
    ok = node._submit(lambda: 42)
    assert GraphClient.wait_for(ok.done, 10) and ok.result() == 42  # the new worker takes jobs


def test_sets_are_taken_in_stamp_order(node_factory, frames):
    node = node_factory()
    msgs = {t: frame_messages(frames[1], t * MS) for t in (10_000, 9_990, 10_020, 10_020 - 5_000)}
    dropped = node._stats.dropped
    node._on_frame(msgs[10_000])
    node._on_frame(msgs[9_990])  # older than the last taken: dropped, never estimated
    assert node._mailbox.last_taken_ns == 10_000 * MS and node._stats.dropped >= dropped + 1
    node._on_frame(msgs[10_020])
    assert node._mailbox.last_taken_ns == 10_020 * MS
    node._on_frame(msgs[10_020 - 5_000])  # 5 s back: a restarted stream (bag loop), followed
    assert node._mailbox.last_taken_ns == (10_020 - 5_000) * MS


def test_failure_texts_are_never_empty(node_factory, frames):
    """/diagnostics never says "reason: " alone. A failure with no frame (a service's, a startup's) and nothing to
    say gets placeholders; a frame's failure always names the frame, and an error with an empty text is named by
    its type."""
    from one2any_ros.core.errors import InputError

    node = node_factory()
    diags = record_diagnostics(node)
    node.fail("empty_mask", "", frame=False)
    assert node._stats.last_failure == "empty_mask: no detail given"
    assert values(diags[-1])["last_failure"] == "empty_mask: no detail given"  # a new reason goes out at once
    node.fail("", "   ", frame=False)
    assert node._stats.last_failure == "unknown: no detail given"
    # a frame whose processing raises an error with neither a reason nor a text
    ref_msgs = frame_messages(frames[0], 1_000 * MS)
    node._table.objects.set_reference("", conv.view_from_messages(ref_msgs, min_depth=0.1, max_depth=4.0,
                                                            T_cam_obj=frames[0]["T_cam_obj"]))
    node._table.refresh_listing()

    def no_words(frame, s):
        raise InputError("", reason="")

    node._check_age = no_words
    node._on_frame(frame_messages(frames[1], 2_000 * MS))
    expected = f"unknown: frame stamped {conv.stamp_text(2_000 * MS)} s: InputError"
    assert GraphClient.wait_for(lambda: node._stats.last_failure == expected, 60), node._stats.last_failure
    node._publish_status()  # the 1 Hz tick's status (no executor spins this node; the reason "" is not new)
    assert values(diags[-1])["last_failure"] == expected, values(diags[-1])


def test_a_backend_change_loads_on_the_worker_after_the_callback(node_factory, tmp_path):
    from rclpy.parameter import Parameter

    node = node_factory()
    on_worker = []
    real_make = node._make_backend
    node._make_backend = lambda s: (on_worker.append(threading.current_thread().name), real_make(s))[1]
    assert node.set_parameters([Parameter("backend", value="icp")])[0].successful
    assert GraphClient.wait_for(lambda: node._table.objects.backend.name == "icp", 30)
    assert on_worker == ["one2any_worker"]
    # a checkpoint that cannot even be read is refused at once, naming the file
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    node2 = node_factory(checkpoint=str(tmp_path / "broken.safetensors"))
    r = node2.set_parameters([Parameter("backend", value="one2any")])[0]
    assert not r.successful and "broken.json" in r.reason


def test_a_backend_that_fails_to_load_is_reported_and_the_parameter_set_back(node_factory, tmp_path):
    from rclpy.parameter import Parameter

    from one2any_ros.core.errors import CheckpointError

    node = node_factory()

    def cannot_load(s):
        raise CheckpointError("weights truncated", reason="checkpoint_corrupt")

    node._make_backend = cannot_load
    assert node.set_parameters([Parameter("backend", value="icp")])[0].successful  # the callback says yes
    assert GraphClient.wait_for(lambda: node.get_parameter("backend").value == "classic", 30)
    assert node._stats.last_failure.startswith("checkpoint_corrupt: backend 'icp' could not be loaded")
    assert node._table.objects.backend.name == "classic"


# --- a node process on the full-install path ---------------------------------------------------------------

@pytest.mark.slow
def test_node_process_on_the_full_install_path_tracks_a_whole_sequence(frames, tmp_path):
    """poses on ~/pose and /tf for every frame of the sample, through tf2_ros/message_filters doubles; the
    2nd sendTransform is forced to raise: reported as publish_error, and the node goes on."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(DOUBLES), os.environ.get("PYTHONPATH", "")]),
           "ONE2ANY_TEST_TF_RAISE_AT": "2"}
    log = tmp_path / "node.log"
    proc = NodeProcess(params={"backend": "classic", "reference_path": str(tmp_path / "ref.zip"),
                               "max_frame_age_ms": 0}, log_path=log, env=env).start()
    client = GraphClient()
    try:
        assert client.wait_ready(90), proc.log_text()
        # the services come up a moment before the node logs its "ready: ..." line
        assert client.wait_for(lambda: "ready:" in proc.log_text(), 30), proc.log_text()
        text = proc.log_text()
        assert "synchronizer message_filters" in text and "tf tf2_ros.TransformBroadcaster" in text, text
        sent: list[int] = []  # every frame's stamp: the forced publish_error is one of theirs
        assert client.set_reference_on(frame_messages(frames[0], time.time_ns()),
                                       T_cam_obj=frames[0]["T_cam_obj"], stamps=sent).success, proc.log_text()
        tf_stamps = lambda: {conv.stamp_to_ns(t.header.stamp) for t, _ in client.tfs}  # noqa: E731
        for i, frame in enumerate(frames[1:], start=1):
            stamp = time.time_ns()
            sent.append(stamp)
            msgs = frame_messages(frame, stamp)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not (stamp in client.poses and stamp in tf_stamps()):
                client.publish(msgs)  # best effort: sent again (same stamp) until both arrived
                client.wait_for(lambda: stamp in client.poses and stamp in tf_stamps(), 1.0)
            assert stamp in client.poses and stamp in tf_stamps(), f"frame {i}: no pose/TF\n{proc.log_text()[-3000:]}"
            T = conv.pose_to_matrix(client.poses[stamp][0].pose)
            assert rotation_angle_deg(T[:3, :3].T @ frame["T_cam_obj"][:3, :3]) < 10.0, i
            tf = next(t for t, _ in client.tfs if conv.stamp_to_ns(t.header.stamp) == stamp)
            assert tf.child_frame_id == "object" and tf.header.frame_id == "camera_color_optical_frame"
            assert np.allclose(conv.transform_to_matrix(tf.transform), T, atol=1e-6)
        d = client.wait_for(lambda: client.failure_of(sent, "publish_error"), 10)
        assert d is not None and "forced to fail" in d["last_failure"], client.diagnostics[-1:]
        assert proc.alive()
    finally:
        client.close()
        rc = proc.stop()
    assert rc == 0, log.read_text()[-3000:]


def test_service_deadlines_run_on_the_steady_clock_under_sim_time(node_factory, ros_context, monkeypatch):
    """With use_sim_time a bag's /clock jumps from 0 to its stamps (1.7e9 s): a service deadline on ROS time expired at
    once (the demo's node answered worker_timeout 0.3 s after it started). Deadlines are wall-clock (steady) time."""
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rosgraph_msgs.msg import Clock as ClockMsg

    from one2any_ros.ros import node as node_module
    from one2any_ros.srv import RemoveReference

    monkeypatch.setattr(node_module, "SERVICE_SLACK_S", 5.0)
    node = node_factory(use_sim_time=True)
    source = Node("bag_clock", context=ros_context)
    pub = source.create_publisher(ClockMsg, "/clock", 10)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    executor.add_node(source)
    release = threading.Event()
    held = node._submit(lambda: release.wait(30))
    try:
        task = executor.create_task(node._references.remove_reference(RemoveReference.Request(object_id="x"),
                                                                      RemoveReference.Response()))
        t, k = time.monotonic(), 0
        while node.get_clock().now().nanoseconds < 1_700_000_000 * 10**9 and time.monotonic() - t < 10:
            msg = ClockMsg()
            msg.clock.sec = 1_700_000_000 + 60 * k  # the bag's clock, jumping ahead a minute a message
            pub.publish(msg)
            k += 1
            executor.spin_once(timeout_sec=0.05)
        assert node.get_clock().now().nanoseconds >= 1_700_000_000 * 10**9, "the node never took the bag's clock"
        for _ in range(10):  # some wall time with the worker still held: nothing may expire yet
            executor.spin_once(timeout_sec=0.05)
        assert not task.done(), task.result().message
        release.set()
        executor.spin_until_future_complete(task, timeout_sec=10)
        assert task.done() and not task.result().message.startswith("worker_timeout"), task.result().message
    finally:
        release.set()
        executor.remove_node(node)
        executor.remove_node(source)
        source.destroy_node()
    assert GraphClient.wait_for(held.done, 10)


def test_a_stuck_worker_is_error_and_services_answer_by_their_deadline(node_factory, ros_context, monkeypatch):
    """A worker held by a job that never ends (a library stuck): /diagnostics says ERROR (stuck) and a service that
    needs the worker answers worker_timeout by its deadline; a request not yet taken is withdrawn (nothing changes)."""
    from rclpy.executors import SingleThreadedExecutor

    from one2any_ros.ros import node as node_module
    from one2any_ros.srv import RemoveReference

    monkeypatch.setattr(node_module, "WORKER_STALL_S", 0.3)
    monkeypatch.setattr(node_module, "SERVICE_SLACK_S", 0.5)
    node = node_factory()
    diags = record_diagnostics(node)
    release = threading.Event()
    held = node._submit(lambda: release.wait(30))
    try:
        assert GraphClient.wait_for(lambda: node._busy_since is not None
                                    and time.monotonic() - node._busy_since > 0.3, 10)
        node._publish_status()
        assert diags[-1].level == diags[-1].ERROR and "stuck" in diags[-1].message, diags[-1].message
        executor = SingleThreadedExecutor(context=ros_context)
        executor.add_node(node)
        t = time.monotonic()
        task = executor.create_task(node._references.remove_reference(RemoveReference.Request(object_id="x"),
                                                                      RemoveReference.Response()))
        executor.spin_until_future_complete(task, timeout_sec=10)
        res = task.result()
        assert time.monotonic() - t < 5.0
        assert not res.success and res.message.startswith("worker_timeout:") and "withdrawn" in res.message, res.message
        assert not node._mailbox._jobs  # withdrawn: the worker will never run it
        executor.remove_node(node)
    finally:
        release.set()
    assert GraphClient.wait_for(held.done, 10)
    assert GraphClient.wait_for(lambda: node._busy_since is None, 10)
    node._publish_status()
    assert diags[-1].level != diags[-1].ERROR
