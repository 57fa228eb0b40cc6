"""The demo through a real ROS graph: the frames are recorded to a rosbag2 (MCAP, with rosbags), the node runs in
its own process (use_sim_time, remapped to camera-driver topic names), the bag is replayed through rclpy with
/clock, a client sets the reference on frame 0 (with its ground-truth pose, so outputs are in the model frame) and
collects ~/pose, ~/estimate and /tf for the other frames.

- ``run_ros_demo`` (here): the bundled sample, one object (``one2any demo``);
- ``run_ros_multi_demo`` (ros_tools/demo_multi.py): N procedural test objects in one rendered scene with a mono16
  label image, one reference each (``one2any demo --objects N``).

The pieces both demos are made of are here too (the graph, setting references by replay, streaming); the bag is
ros_tools/demo_bag.py, the numbers they report ros_tools/demo_report.py.

Prints per-frame errors, rates and latency; writes ``summary.json``, ``overlay_XXX.png`` (estimate | ground
truth), the bag and the node's log to ``out_dir``. Bounded: every wait has a timeout, and the node is always
stopped (SIGINT, then SIGTERM/SIGKILL).
"""
from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from one2any_ros.ros_tools.demo_bag import TOPICS, Recording, record
from one2any_ros.ros_tools.demo_report import accuracy_text, median_of, pose_errors, rate_of, rates_text, tf_seen

IDLE_S = 5.0  # stop waiting when nothing new came for this long (a dropped or failed frame never answers)


class DemoError(RuntimeError):
    """A step of the demo failed; the message says which and why (printed, exit code 1)."""


# --- the pieces both demos are made of ----------------------------------------------------------------------

def fresh_dir(out_dir: Path) -> Path:
    """``out_dir``, made, without an earlier run's overlays (a run with fewer frames would leave some behind)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("overlay_*.png"):
        old.unlink()
    return out_dir



@contextmanager
def demo_graph(out_dir: Path, rec: Recording, params: dict, timeout_s: float) -> Iterator[tuple]:
    """The node (sim time, camera-driver topic names, its reference file and log in ``out_dir``), a client and a
    player of ``rec``, all up: yields (client, player); raises DemoError when the node does not come up. The node
    is always stopped on the way out."""
    from one2any_ros.core.reference_store import ReferenceStore
    from one2any_ros.ros_tools.harness import GraphClient, NodeProcess
    from one2any_ros.ros_tools.player import BagPlayer

    ref_file = out_dir / "reference.zip"
    ReferenceStore(ref_file).clear()  # every object of an earlier run here, or the node would start with them
    (out_dir / "node.log").unlink(missing_ok=True)  # this run's log only
    node = NodeProcess(params={**params, "use_sim_time": True, "reference_path": str(ref_file)},
                       remaps=dict(TOPICS), log_path=out_dir / "node.log")
    client = None
    try:
        node.start()
        client = GraphClient(client_name="one2any_demo", inputs=False)
        player = BagPlayer(client.node, rec.messages, clock=True)
        if not (client.wait_ready(timeout_s) and player.wait_for_subscribers(timeout_s)):
            raise DemoError("the node did not come up; its log:\n" + node.log_text()[-3000:])
        yield client, player
    finally:
        if client is not None:
            client.close()
        code = node.stop()
        if code not in (0, None):
            print(f"the node exited with {code}; log: {out_dir / 'node.log'}")


def set_reference_by_replay(client, player, frame0: list, *, tries: int = 3, **request):
    """~/set_reference for the next frame (``request``: object_id, mask_label, T_cam_obj), then frame 0 played
    (again, if the request was not in yet); the answer, or DemoError."""
    fut = None
    for _ in range(tries):
        fut = client.set_reference_async(use_latest_frame=False, timeout_s=3.0, **request)
        time.sleep(0.3)
        for m in frame0:
            player.publish(m)
        if client.wait_for(fut.done, 30) and fut.result().success:
            return fut.result()
    raise DemoError("set_reference failed: " + (fut.result().message if fut.done() else "no answer"))


def stream(player, rec: Recording, answered: Callable[[int], float | None], timeout_s: float) -> tuple[dict, float]:
    """Play frames 1.. at the bag's pace, then wait until every frame is ``answered`` (its receipt time, or None),
    or nothing new came for IDLE_S. Returns ({stamp: monotonic time its rgb was sent}, seconds of playing)."""
    sent: dict[int, float] = {}

    def on_published(m, stamp):
        if m.topic == TOPICS["rgb"]:
            sent.setdefault(stamp, time.monotonic())
    t_play = time.monotonic()
    player.play(rec.later(), on_published=on_published)
    play_s = time.monotonic() - t_play
    want = [rec.stamp_of[i] for i in rec.later_frames()]
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        got = [answered(s) for s in want]
        if all(t is not None for t in got):
            break
        if time.monotonic() - max([t for t in got if t is not None] + [t_play + play_s]) > IDLE_S:
            break
        time.sleep(0.05)
    return sent, play_s


def estimate_receipts(client) -> dict[tuple[int, str], float]:
    """(stamp ns, object_id) -> monotonic receipt time of every ~/estimate from now on, filled by ``client``'s
    executor. GraphClient keeps every object's estimate but one receipt time per stamp; per-object latency needs
    both."""
    from one2any_ros.msg import PoseEstimate
    from one2any_ros.ros import conversions as conv

    times: dict[tuple[int, str], float] = {}

    def on_estimate(msg) -> None:
        with client.lock:
            times[(conv.stamp_to_ns(msg.header.stamp), msg.object_id)] = time.monotonic()
    client.node.create_subscription(PoseEstimate, f"{client.full_name}/estimate", on_estimate, 50)
    return times



# --- one object: the bundled sample -------------------------------------------------------------------------

MASKS = ("reference", "every")  # the demo's masks: the reference frame's only (the default, as a workcell runs), or all


def run_ros_demo(backend: str = "auto", out_dir: Path = Path("outputs/demo"), *, device: str = "auto",
                 period_s: float = 1.0, timeout_s: float = 60.0, masks: str = "reference") -> int:
    """``masks`` "reference": the bag carries a mask for frame 0 only, and the node (mask_mode when_needed) tracks
    the object without one from then on; "every": a mask with every frame."""
    from one2any_ros.data.sample import load_sample_sequence

    if masks not in MASKS:
        raise ValueError(f"masks must be one of {MASKS}, got {masks!r}")
    out_dir = fresh_dir(out_dir)
    seq = load_sample_sequence()
    rec = record(seq["frames"], out_dir, period_s, mask_frames={0} if masks == "reference" else None)
    print("masks: " + ("the reference frame's only; the node tracks the object without one" if masks == "reference"
                       else "every frame's"))
    try:
        with demo_graph(out_dir, rec, {"backend": backend, "device": device}, timeout_s) as (client, player):
            res = set_reference_by_replay(client, player, rec.by_frame[0], T_cam_obj=seq["frames"][0]["T_cam_obj"])
            print(f"reference: {res.message}")
            sent, play_s = stream(player, rec, lambda s: (client.poses.get(s) or (None, None))[1], timeout_s)
            diag = client.wait_diagnostics(timeout=3.0) or {}
            return _report_single(client, seq, rec, sent, play_s, diag, backend, out_dir, masks)
    except DemoError as e:
        print(e)
        return 1


def _report_single(client, seq: dict, rec: Recording, sent: dict, play_s: float, diag: dict, backend: str,
                   out_dir: Path, masks: str) -> int:
    """Per-frame table, overlays, summary.json and the summary line of the one-object demo; exit code. The ``state``
    column is what the outputs show: a pose after a pose is tracking, a pose after none is found again, no pose after
    a pose is lost, and then searching (the node's own per-object state is on /diagnostics, at 1 Hz)."""
    from one2any_ros.core.visualize import save_rgb
    from one2any_ros.ros import conversions as conv

    frames, model_pts, diameter = seq["frames"], seq["model_points"], seq["diameter_m"]
    rows, est, had_pose = [], None, True  # the reference frame gave it
    print(f"{'frame':>5} {'mask':>4} {'state':>11} {'rot_err_deg':>11} {'trans_err_mm':>12} {'add_mm':>7} {'conf':>5} "
          f"{'inliers':>7} {'node_ms':>8} {'e2e_ms':>7}")
    for i in rec.later_frames():
        s, T_gt = rec.stamp_of[i], frames[i]["T_cam_obj"]
        has_mask = "yes" if masks == "every" else "no"
        if s not in client.poses:
            state = "lost" if had_pose else "searching"
            had_pose = False
            rows.append({"frame": i, "ok": False, "mask": has_mask == "yes", "state": state})
            print(f"{i:>5} {has_mask:>4} {state:>11}  no pose (see {out_dir / 'node.log'})")
            continue
        state = "tracking" if had_pose else "found again"
        had_pose = True
        pose_msg, t_recv = client.poses[s]
        est = client.estimates.get(s, (None,))[0]
        T = conv.pose_to_matrix(pose_msg.pose)
        e = pose_errors(T, T_gt, model_pts, diameter, seq["symmetric"])
        e2e = (t_recv - sent[s]) * 1000 if s in sent else float("nan")
        rows.append({"frame": i, "ok": True, "mask": has_mask == "yes", "state": state, **e,
                     "confidence": est.confidence if est else None,
                     "inliers": est.inliers if est else None, "node_latency_ms": est.latency_ms if est else None,
                     "end_to_end_ms": e2e, "tf": tf_seen(client, s, "object")})
        print(f"{i:>5} {has_mask:>4} {state:>11} {e['rot_err_deg']:>11.2f} {e['trans_err_mm']:>12.1f} "
              f"{e['add_mm']:>7.1f} {est.confidence:>5.2f} {est.inliers:>7d} {est.latency_ms:>8.1f} {e2e:>7.1f}")
        label = (f"ROS frame {i}, {'mask' if has_mask == 'yes' else 'no mask'}, {state}: "
                 f"{e['rot_err_deg']:.1f} deg, {e['trans_err_mm']:.0f} mm")
        save_rgb(out_dir / f"overlay_{i:03d}.png", _overlay(frames[i], T, T_gt, model_pts, diameter, label))
    ok = [r for r in rows if r["ok"]]
    recv = [client.poses[rec.stamp_of[r["frame"]]][1] for r in ok]
    summary = {
        "backend": est.backend if ok and est else backend, "transport": "rosbag2 MCAP -> rclpy player -> node process",
        "masks": "reference frame only" if masks == "reference" else "every frame",
        "n_frames": len(rows), "n_ok": len(ok), "tf_received": sum(r["tf"] for r in ok),
        "add_01d_recall": sum(r["add_01d"] for r in ok) / max(len(rows), 1),
        "median_rot_err_deg": median_of(ok, "rot_err_deg"), "median_trans_err_mm": median_of(ok, "trans_err_mm"),
        "median_node_latency_ms": median_of(ok, "node_latency_ms"), "median_end_to_end_ms": median_of(ok, "end_to_end_ms"),
        "input_rate_hz": (len(rec.later_frames()) - 1) / play_s if play_s > 0 else None,
        "pose_rate_hz": rate_of(recv), "dropped_frames": int(diag.get("dropped_frames", 0) or 0), "diagnostics": diag,
        "frames": rows,
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"{summary['backend']}: {len(ok)}/{len(rows)} poses (/tf {summary['tf_received']}), "
          f"{accuracy_text(summary)}; {rates_text(summary)}")
    print(f"-> {out_dir / 'summary.json'}, {out_dir}/overlay_*.png, node log {out_dir / 'node.log'}")
    return 0 if ok else 1


def _overlay(frame: dict, T, T_gt, model_pts, diameter: float, label: str):
    """The estimate (``label``) beside the ground truth: axes and the model cloud on the frame's image."""
    from one2any_ros.core.geometry import transform_points
    from one2any_ros.core.visualize import draw_pose, side_by_side

    return side_by_side(
        draw_pose(frame["rgb"], frame["K"], T, axis_len=0.5 * diameter, cloud_cam=transform_points(T, model_pts),
                  label=label),
        draw_pose(frame["rgb"], frame["K"], T_gt, axis_len=0.5 * diameter,
                  cloud_cam=transform_points(T_gt, model_pts), cloud_colour=(0, 220, 255), label="ground truth"))
