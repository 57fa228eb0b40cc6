"""Overload: ~10 s of frames at ~4x the rate the node can process. The node keeps only the newest frame
(latest wins), counts the rest as dropped in /diagnostics, keeps publishing correct poses, and its
services and parameters keep answering within a generous bound (~5x what one frame's processing allows).

The global search runs on every frame here (track_min_confidence 1.0: tracking is never trusted), so
every frame costs the same (~0.1 s with classic on 2 shared cores) and the flood rate (~4x) is measured,
not assumed. Frames are frame 1 of the sample, the reference too (its ground-truth pose given).
Bounds are relative to that measured processing time (~5x), so a slower machine does not fail them.
"""
import statistics
import threading
import time

import numpy as np
import pytest

from one2any_ros.core.geometry import rotation_angle_deg
from one2any_ros.ros import conversions as conv
from one2any_ros.ros_tools.harness import GraphClient, NodeProcess, frame_messages

pytestmark = pytest.mark.slow
FLOOD_S = 10.0


def test_flood_drops_old_frames_and_services_keep_answering(tmp_path):
    from one2any_ros.data.sample import load_sample_sequence

    frames = load_sample_sequence()["frames"]
    node = NodeProcess(params={"backend": "classic", "reference_path": str(tmp_path / "ref.zip"),
                               "track_min_confidence": 1.0, "max_frame_age_ms": 0}, log_path=tmp_path / "node.log").start()
    client = GraphClient()
    try:
        assert client.wait_ready(60), node.log_text()
        f1, T1 = frames[1], frames[1]["T_cam_obj"]
        assert client.set_reference_on(frame_messages(f1, time.time_ns()), T_cam_obj=T1).success

        # the processing time of one frame, frames sent one at a time (each again every 2 s until its pose comes)
        proc_ms = []
        for _ in range(3):
            stamp, pose = client.publish_until_pose(frame_messages(f1, time.time_ns()), timeout=30)
            assert pose is not None, node.log_text()[-3000:]
            proc_ms.append(client.wait_for(lambda: client.estimates.get(stamp), 5)[0].latency_ms)
        proc_s = statistics.median(proc_ms) / 1000
        # 4x the processing rate, but no faster than 60 Hz (above any RGB-D camera): tracking takes ~25 ms, and 160 Hz of 640x480
        # RGB-D is more than any camera sends; one2any bench --ros measures the node at 4x (docs/benchmarks.md)
        period = max(proc_s / 4, 1 / 60)

        # service and parameter calls from another thread while the flood runs
        calls: list[tuple[str, float, bool]] = []
        stop = threading.Event()

        def caller():
            while not stop.wait(1.5):
                t = time.monotonic()
                ok = client.set_reference(use_latest_frame=True, T_cam_obj=T1, call_timeout=60).success
                calls.append(("set_reference", time.monotonic() - t, ok))
                t = time.monotonic()
                ok = client.set_parameters(min_confidence=0.05, call_timeout=60)[0].successful
                calls.append(("set_parameters", time.monotonic() - t, ok))

        msgs = frame_messages(f1, time.time_ns())
        th = threading.Thread(target=caller)
        th.start()
        t0, sent, stamps = time.monotonic(), 0, []
        while time.monotonic() - t0 < FLOOD_S:
            stamp = conv.ns_to_stamp(time.time_ns())
            for m in msgs.values():
                m.header.stamp = stamp
            client.publish(msgs)
            stamps.append(conv.stamp_to_ns(stamp))
            sent += 1
            time.sleep(max(0.0, t0 + sent * period - time.monotonic()))  # paces the flood, waits for nothing
        stop.set()
        th.join(120)
        elapsed = time.monotonic() - t0
        # the node is done with every flood frame once it has published the pose of a later frame (frames are taken
        # in stamp order; one writer's poses arrive in the order sent); then a /diagnostics published after that
        stamp, pose = client.publish_until_pose(frame_messages(f1, time.time_ns()), timeout=30)
        assert pose is not None, node.log_text()[-3000:]
        diag = client.wait_diagnostics(after=client.poses[stamp][1], timeout=10)
        assert diag is not None, "no /diagnostics after the flood"
        poses = sum(s in client.poses for s in stamps)
        dropped = int(diag["dropped_frames"])
        lat = [client.estimates[s][0].latency_ms for s in stamps if s in client.estimates]
        errs = [(rotation_angle_deg(conv.pose_to_matrix(client.poses[s][0].pose)[:3, :3].T @ T1[:3, :3]),
                 1000 * np.linalg.norm(conv.pose_to_matrix(client.poses[s][0].pose)[:3, 3] - T1[:3, 3]))
                for s in stamps if s in client.poses]
        bound = max(1.5, 5 * (proc_s + 0.1))  # ~5x the expected wait: one frame in progress + encoding
        min_rate = min(2.0, 1 / (5 * proc_s))  # poses/s: ~1/5 of what the node does with frames one at a time
        print(f"\nflood: processing {proc_s * 1000:.0f} ms/frame; sent {sent} frames in {elapsed:.1f} s "
              f"({sent / elapsed:.1f} Hz), poses {poses} ({poses / elapsed:.2f} Hz), dropped {dropped}, "
              f"latency median {statistics.median(lat):.0f} ms max {max(lat):.0f} ms; calls (s): "
              + ", ".join(f"{n} {d:.2f}" for n, d, _ in calls) + f"; bound {bound:.2f} s")
        assert calls and all(ok for _, _, ok in calls)
        assert max(d for _, d, _ in calls) < bound, calls
        assert poses >= min_rate * elapsed, f"the node stopped producing poses under load (< {min_rate:.2f} Hz)"
        assert dropped > 0 and dropped >= 0.5 * (sent - poses), (sent, poses, dropped)
        assert max(r for r, _ in errs) < 3.0 and max(t for _, t in errs) < 5.0
        assert node.alive()
    finally:
        client.close()
        node.stop()
