"""The demo through a real ROS graph: the bundled sample is recorded to a rosbag2 (MCAP, with rosbags),
the node runs in its own process (use_sim_time, remapped to camera-driver topic names), the bag is
replayed through rclpy with /clock, a client sets the reference on frame 0 (with its ground-truth pose,
so outputs are in the model frame) and collects ~/pose, ~/estimate and /tf for the other frames.

Prints per-frame errors, rates and latency; writes ``summary.json``, ``overlay_XXX.png`` (estimate |
ground truth), the bag and the node's log to ``out_dir``. Bounded: every wait has a timeout, and the
node is always stopped (SIGINT, then SIGTERM/SIGKILL).
"""
from __future__ import annotations

import json
import shutil
import statistics
import time
from pathlib import Path

import numpy as np

TOPICS = {"rgb": "/camera/color/image_raw", "depth": "/camera/aligned_depth_to_color/image_raw",
          "mask": "/camera/color/object_mask", "camera_info": "/camera/color/camera_info"}
FRAME_ID = "camera_color_optical_frame"
BAG_T0_NS = 1_700_000_000 * 10**9


def write_sample_bag(path: Path, frames: list[dict], *, period_s: float = 1.0, t0_ns: int = BAG_T0_NS) -> Path:
    """Record ``frames`` (rgb, depth m, mask, K) as rgb8 / 16UC1 mm / mono8 / CameraInfo to an MCAP rosbag2,
    serialized with rosbags' ROS 2 Kilted typestore; header stamps = bag times, ``period_s`` apart."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(getattr(Stores, "ROS2_KILTED", Stores.ROS2_JAZZY))
    T = ts.types
    shutil.rmtree(path, ignore_errors=True)

    def header(t):
        return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=t // 10**9, nanosec=t % 10**9),
                                        frame_id=FRAME_ID)

    def image(t, arr, enc, bpp):
        return T["sensor_msgs/msg/Image"](header=header(t), height=arr.shape[0], width=arr.shape[1], encoding=enc,
                                          is_bigendian=0, step=arr.shape[1] * bpp,
                                          data=np.frombuffer(np.ascontiguousarray(arr).tobytes(), np.uint8))

    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conns = {k: w.add_connection(topic, "sensor_msgs/msg/CameraInfo" if k == "camera_info" else "sensor_msgs/msg/Image",
                                     typestore=ts) for k, topic in TOPICS.items()}
        for i, f in enumerate(frames):
            t = t0_ns + int(round(i * period_s * 1e9))
            h, wd = f["depth"].shape
            K = np.asarray(f["K"], np.float64)
            msgs = {
                "camera_info": T["sensor_msgs/msg/CameraInfo"](
                    header=header(t), height=h, width=wd, distortion_model="plumb_bob", d=np.zeros(5), k=K.ravel(),
                    r=np.eye(3).ravel(), p=np.hstack([K, np.zeros((3, 1))]).ravel(), binning_x=0, binning_y=0,
                    roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)),
                "mask": image(t, (np.asarray(f["mask"]) > 0).astype(np.uint8) * 255, "mono8", 1),
                "depth": image(t, np.round(np.nan_to_num(f["depth"]) * 1000).astype("<u2"), "16UC1", 2),
                "rgb": image(t, np.asarray(f["rgb"], np.uint8), "rgb8", 3),
            }
            for k, m in msgs.items():
                w.write(conns[k], t, ts.serialize_cdr(m, m.__msgtype__))
    return path


def run_ros_demo(backend: str = "auto", out_dir: Path = Path("outputs/demo"), *, device: str = "auto",
                 period_s: float = 1.0, timeout_s: float = 60.0) -> int:
    from ..data.sample import load_sample_sequence
    from ..geometry import rotation_angle_deg, transform_points
    from ..metrics import add, add_s
    from ..visualize import draw_pose, save_rgb, side_by_side
    from . import conversions as conv
    from .harness import GraphClient, NodeProcess
    from .player import BagPlayer, read_bag

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seq = load_sample_sequence()
    frames, model_pts, diameter = seq["frames"], seq["model_points"], seq["diameter_m"]
    bag = write_sample_bag(out_dir / "sample_bag", frames, period_s=period_s)
    messages = read_bag(bag)
    by_frame: dict[int, list] = {}
    for m in messages:
        by_frame.setdefault(int(round((m.t_ns - BAG_T0_NS) / (period_s * 1e9))), []).append(m)
    stamp_of = {i: ms[0].t_ns for i, ms in by_frame.items()}
    print(f"recorded {len(frames)} frames ({len(messages)} messages) to {bag} (MCAP)")

    ref_file = out_dir / "reference.zip"
    ref_file.unlink(missing_ok=True)
    node = NodeProcess(params={"backend": backend, "device": device, "use_sim_time": True,
                               "reference_path": str(ref_file)},
                       remaps={k: v for k, v in TOPICS.items()}, log_path=out_dir / "node.log")
    client = None
    rows, rc = [], 1
    try:
        node.start()
        client = GraphClient(client_name="one2any_demo", inputs=False)
        player = BagPlayer(client.node, messages, clock=True)
        if not (client.wait_ready(timeout_s) and player.wait_for_subscribers(timeout_s)):
            print("the node did not come up; its log:\n" + node.log_text()[-3000:])
            return 1
        # reference: ask for the next frame, then play frame 0 (again, if the request was not in yet)
        res = None
        for _ in range(3):
            fut = client.set_reference_async(use_latest_frame=False, timeout_s=3.0, T_cam_obj=frames[0]["T_cam_obj"])
            time.sleep(0.3)
            for m in by_frame[0]:
                player.publish(m)
            if client.wait_for(fut.done, 30) and fut.result().success:
                res = fut.result()
                break
        if res is None:
            print("set_reference failed: " + (fut.result().message if fut.done() else "no answer"))
            return 1
        print(f"reference: {res.message}")
        sent: dict[int, float] = {}
        rest = [m for i in sorted(by_frame) if i > 0 for m in by_frame[i]]
        t_play = time.monotonic()
        def on_published(m, stamp):
            if m.topic == TOPICS["rgb"]:
                sent.setdefault(stamp, time.monotonic())
        player.play(rest, on_published=on_published)
        play_s = time.monotonic() - t_play
        want = [stamp_of[i] for i in sorted(by_frame) if i > 0]
        # until every frame has its pose, or nothing new came for 5 s (a dropped or failed frame never will)
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and not all(s in client.poses for s in want):
            last = max([t for _, t in client.poses.values()] + [t_play + play_s])
            if time.monotonic() - last > 5.0:
                break
            time.sleep(0.05)
        diag = client.wait_diagnostics(timeout=3.0) or {}

        print(f"{'frame':>5} {'rot_err_deg':>11} {'trans_err_mm':>12} {'add_mm':>7} {'conf':>5} {'inliers':>7} "
              f"{'node_ms':>8} {'e2e_ms':>7}")
        for i in sorted(by_frame)[1:]:
            s, T_gt = stamp_of[i], frames[i]["T_cam_obj"]
            if s not in client.poses:
                rows.append({"frame": i, "ok": False})
                print(f"{i:>5}  no pose (dropped or failed; see {out_dir / 'node.log'})")
                continue
            pose_msg, t_recv = client.poses[s]
            est = client.estimates.get(s, (None,))[0]
            T = conv.pose_to_matrix(pose_msg.pose)
            rot = float(rotation_angle_deg(T[:3, :3].T @ T_gt[:3, :3]))
            trans = float(np.linalg.norm(T[:3, 3] - T_gt[:3, 3]) * 1000)
            err = (add_s if seq["symmetric"] else add)(T, T_gt, model_pts)
            tf_ok = any(conv.stamp_to_ns(t.header.stamp) == s and t.child_frame_id == "object" for t, _ in client.tfs)
            e2e = (t_recv - sent[s]) * 1000 if s in sent else float("nan")
            rows.append({"frame": i, "ok": True, "rot_err_deg": rot, "trans_err_mm": trans, "add_mm": err * 1000,
                         "add_01d": bool(err < 0.1 * diameter), "confidence": est.confidence if est else None,
                         "inliers": est.inliers if est else None, "node_latency_ms": est.latency_ms if est else None,
                         "end_to_end_ms": e2e, "tf": tf_ok})
            print(f"{i:>5} {rot:>11.2f} {trans:>12.1f} {err * 1000:>7.1f} {est.confidence:>5.2f} {est.inliers:>7d} "
                  f"{est.latency_ms:>8.1f} {e2e:>7.1f}")
            img = side_by_side(
                draw_pose(frames[i]["rgb"], frames[i]["K"], T, axis_len=0.5 * diameter,
                          cloud_cam=transform_points(T, model_pts),
                          label=f"ROS frame {i}: {rot:.1f} deg, {trans:.0f} mm"),
                draw_pose(frames[i]["rgb"], frames[i]["K"], T_gt, axis_len=0.5 * diameter,
                          cloud_cam=transform_points(T_gt, model_pts), cloud_colour=(0, 220, 255), label="ground truth"))
            save_rgb(out_dir / f"overlay_{i:03d}.png", img)
        ok = [r for r in rows if r["ok"]]
        recv = sorted(client.poses[stamp_of[r["frame"]]][1] for r in ok)
        med = lambda k: float(statistics.median(r[k] for r in ok)) if ok else None  # noqa: E731
        summary = {
            "backend": est.backend if ok and est else backend, "transport": "rosbag2 MCAP -> rclpy player -> node process",
            "n_frames": len(rows), "n_ok": len(ok), "tf_received": sum(r["tf"] for r in ok),
            "add_01d_recall": sum(r["add_01d"] for r in ok) / max(len(rows), 1),
            "median_rot_err_deg": med("rot_err_deg"), "median_trans_err_mm": med("trans_err_mm"),
            "median_node_latency_ms": med("node_latency_ms"), "median_end_to_end_ms": med("end_to_end_ms"),
            "input_rate_hz": (len(rest) / len(TOPICS) - 1) / play_s if play_s > 0 else None,
            "pose_rate_hz": (len(recv) - 1) / (recv[-1] - recv[0]) if len(recv) > 1 else None,
            "dropped_frames": int(diag.get("dropped_frames", 0) or 0), "diagnostics": diag, "frames": rows,
        }
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        rate = f"{summary['pose_rate_hz']:.2f}" if summary["pose_rate_hz"] else "-"
        print(f"{summary['backend']}: {len(ok)}/{len(rows)} poses (/tf {summary['tf_received']}), ADD(-S)@0.1d "
              f"{summary['add_01d_recall']:.2f}, median {med('rot_err_deg') or 0:.2f} deg / "
              f"{med('trans_err_mm') or 0:.1f} mm; "
              f"input {summary['input_rate_hz']:.2f} Hz, poses {rate} Hz, dropped {summary['dropped_frames']}; "
              f"latency median {med('node_latency_ms') or 0:.0f} ms in the node, "
              f"{med('end_to_end_ms') or 0:.0f} ms end to end")
        print(f"-> {out_dir / 'summary.json'}, {out_dir}/overlay_*.png, node log {out_dir / 'node.log'}")
        rc = 0 if ok else 1
    finally:
        if client is not None:
            client.close()
        code = node.stop()
        if code not in (0, None):
            print(f"the node exited with {code}; log: {out_dir / 'node.log'}")
    return rc


if __name__ == "__main__":  # pragma: no cover
    import sys

    sys.exit(run_ros_demo(*(sys.argv[1:2] or ["auto"])))
