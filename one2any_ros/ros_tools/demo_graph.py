"""The demo through a real ROS graph: the frames are recorded to a rosbag2 (MCAP, with rosbags), the node runs in
its own process (use_sim_time, remapped to camera-driver topic names), the bag is replayed through rclpy with
/clock, a client sets the reference on frame 0 (with its ground-truth pose, so outputs are in the model frame) and
collects ~/pose, ~/estimate and /tf for the other frames.

- ``run_ros_demo``: the bundled sample, one object (``one2any demo``);
- ``run_ros_multi_demo``: N procedural test objects in one rendered scene with a mono16 label image, one reference
  each (``one2any demo --objects N``): every object's ~/estimate and /tf child frame, overlays with all of them.

Prints per-frame errors, rates and latency; writes ``summary.json``, ``overlay_XXX.png`` (estimate | ground
truth), the bag and the node's log to ``out_dir``. Bounded: every wait has a timeout, and the node is always
stopped (SIGINT, then SIGTERM/SIGKILL).
"""
from __future__ import annotations

import json
import shutil
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Container, Iterator

import numpy as np

TOPICS = {"rgb": "/camera/color/image_raw", "depth": "/camera/aligned_depth_to_color/image_raw",
          "mask": "/camera/color/object_mask", "camera_info": "/camera/color/camera_info"}
FRAME_ID = "camera_color_optical_frame"
BAG_T0_NS = 1_700_000_000 * 10**9
OBJECT_FRAME_PREFIX = "obj_"  # the several-objects demo's TF child frames: obj_1, obj_2, ...
OBJECT_COLOURS = ((255, 220, 0), (255, 90, 255), (90, 255, 90), (255, 150, 40))  # RGB, object k's cloud and tag
IDLE_S = 5.0  # stop waiting when nothing new came for this long (a dropped or failed frame never answers)


class DemoError(RuntimeError):
    """A step of the demo failed; the message says which and why (printed, exit code 1)."""


def _mask_image(f: dict) -> tuple[np.ndarray, str, int]:
    """What the mask topic carries: the frame's label image (mono16 / mono8, as a segmenter publishes it) when it
    has one, else its object mask as mono8 0/255; (array, encoding, bytes per pixel)."""
    labels = f.get("labels")
    if labels is None:
        return (np.asarray(f["mask"]) > 0).astype(np.uint8) * 255, "mono8", 1
    labels = np.asarray(labels)
    if labels.dtype == np.uint16:
        return labels.astype("<u2"), "mono16", 2
    return labels.astype(np.uint8), "mono8", 1


def write_sample_bag(path: Path, frames: list[dict], *, period_s: float = 1.0, t0_ns: int = BAG_T0_NS,
                     mask_frames: Container[int] | None = None) -> Path:
    """Record ``frames`` (rgb, depth m, mask or labels, K) as rgb8 / 16UC1 mm / mono8 or mono16 / CameraInfo to an
    MCAP rosbag2, serialized with rosbags' ROS 2 Kilted typestore; header stamps = bag times, ``period_s`` apart.
    ``mask_frames``: the frames whose mask is recorded (None: every frame's; a workcell has one for the reference)."""
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
                "mask": image(t, *_mask_image(f)),
                "depth": image(t, np.round(np.nan_to_num(f["depth"]) * 1000).astype("<u2"), "16UC1", 2),
                "rgb": image(t, np.asarray(f["rgb"], np.uint8), "rgb8", 3),
            }
            if mask_frames is not None and i not in mask_frames:
                del msgs["mask"]
            for k, m in msgs.items():
                w.write(conns[k], t, ts.serialize_cdr(m, m.__msgtype__))
    return path


# --- the pieces both demos are made of ----------------------------------------------------------------------

@dataclass
class Recording:
    """The recorded frames as the player sends them: every message, and each frame's messages and stamp."""

    bag: Path
    messages: list
    by_frame: dict[int, list]
    stamp_of: dict[int, int]

    def later(self) -> list:
        """The messages of every frame after the reference frame 0, in order."""
        return [m for i in sorted(self.by_frame) if i > 0 for m in self.by_frame[i]]

    def later_frames(self) -> list[int]:
        return [i for i in sorted(self.by_frame) if i > 0]


def _fresh(out_dir: Path) -> Path:
    """``out_dir``, made, without an earlier run's overlays (a run with fewer frames would leave some behind)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("overlay_*.png"):
        old.unlink()
    return out_dir


def record(frames: list[dict], out_dir: Path, period_s: float, mask_frames: Container[int] | None = None) -> Recording:
    """Write the frames to ``out_dir/sample_bag`` and read them back (the player replays what was recorded)."""
    from one2any_ros.ros_tools.player import read_bag

    bag = write_sample_bag(out_dir / "sample_bag", frames, period_s=period_s, mask_frames=mask_frames)
    messages = read_bag(bag)
    by_frame: dict[int, list] = {}
    for m in messages:
        by_frame.setdefault(int(round((m.t_ns - BAG_T0_NS) / (period_s * 1e9))), []).append(m)
    print(f"recorded {len(frames)} frames ({len(messages)} messages) to {bag} (MCAP)")
    return Recording(bag, messages, by_frame, {i: ms[0].t_ns for i, ms in by_frame.items()})


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


def pose_errors(T: np.ndarray, T_gt: np.ndarray, points: np.ndarray, diameter: float, symmetric: bool) -> dict:
    """One pose against its ground truth: rotation (deg) and translation (mm) errors, ADD (ADD-S for a symmetric
    object, mm) and whether it is within 0.1 of the diameter (the BOP-style recall criterion)."""
    from one2any_ros.core.geometry import rotation_angle_deg
    from one2any_ros.core.metrics import add, add_s
    from one2any_ros.core.protocol import is_hit

    err = (add_s if symmetric else add)(T, T_gt, points)
    return {"rot_err_deg": float(rotation_angle_deg(T[:3, :3].T @ T_gt[:3, :3])),
            "trans_err_mm": float(np.linalg.norm(T[:3, 3] - T_gt[:3, 3]) * 1000), "add_mm": float(err * 1000),
            "add_01d": bool(is_hit(err, diameter))}


def _median(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return float(statistics.median(values)) if values else None


def _rate(times: list[float]) -> float | None:
    """Answers per second between the first and the last."""
    times = sorted(times)
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else None


def _tf_seen(client, stamp: int, child: str) -> bool:
    from one2any_ros.ros import conversions as conv

    return any(conv.stamp_to_ns(t.header.stamp) == stamp and t.child_frame_id == child for t, _ in client.tfs)


# --- one object: the bundled sample -------------------------------------------------------------------------

MASKS = ("reference", "every")  # the demo's masks: the reference frame's only (the default, as a workcell runs), or all


def run_ros_demo(backend: str = "auto", out_dir: Path = Path("outputs/demo"), *, device: str = "auto",
                 period_s: float = 1.0, timeout_s: float = 60.0, masks: str = "reference") -> int:
    """``masks`` "reference": the bag carries a mask for frame 0 only, and the node (mask_mode when_needed) tracks
    the object without one from then on; "every": a mask with every frame."""
    from one2any_ros.data.sample import load_sample_sequence

    if masks not in MASKS:
        raise ValueError(f"masks must be one of {MASKS}, got {masks!r}")
    out_dir = _fresh(out_dir)
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
    from one2any_ros.core.geometry import transform_points
    from one2any_ros.core.visualize import draw_pose, save_rgb, side_by_side
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
                     "end_to_end_ms": e2e, "tf": _tf_seen(client, s, "object")})
        print(f"{i:>5} {has_mask:>4} {state:>11} {e['rot_err_deg']:>11.2f} {e['trans_err_mm']:>12.1f} "
              f"{e['add_mm']:>7.1f} {est.confidence:>5.2f} {est.inliers:>7d} {est.latency_ms:>8.1f} {e2e:>7.1f}")
        img = side_by_side(
            draw_pose(frames[i]["rgb"], frames[i]["K"], T, axis_len=0.5 * diameter,
                      cloud_cam=transform_points(T, model_pts),
                      label=f"ROS frame {i}, {'mask' if has_mask == 'yes' else 'no mask'}, {state}: "
                            f"{e['rot_err_deg']:.1f} deg, {e['trans_err_mm']:.0f} mm"),
            draw_pose(frames[i]["rgb"], frames[i]["K"], T_gt, axis_len=0.5 * diameter,
                      cloud_cam=transform_points(T_gt, model_pts), cloud_colour=(0, 220, 255), label="ground truth"))
        save_rgb(out_dir / f"overlay_{i:03d}.png", img)
    ok = [r for r in rows if r["ok"]]
    recv = [client.poses[rec.stamp_of[r["frame"]]][1] for r in ok]
    summary = {
        "backend": est.backend if ok and est else backend, "transport": "rosbag2 MCAP -> rclpy player -> node process",
        "masks": "reference frame only" if masks == "reference" else "every frame",
        "n_frames": len(rows), "n_ok": len(ok), "tf_received": sum(r["tf"] for r in ok),
        "add_01d_recall": sum(r["add_01d"] for r in ok) / max(len(rows), 1),
        "median_rot_err_deg": _median(ok, "rot_err_deg"), "median_trans_err_mm": _median(ok, "trans_err_mm"),
        "median_node_latency_ms": _median(ok, "node_latency_ms"), "median_end_to_end_ms": _median(ok, "end_to_end_ms"),
        "input_rate_hz": (len(rec.later_frames()) - 1) / play_s if play_s > 0 else None,
        "pose_rate_hz": _rate(recv), "dropped_frames": int(diag.get("dropped_frames", 0) or 0), "diagnostics": diag,
        "frames": rows,
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"{summary['backend']}: {len(ok)}/{len(rows)} poses (/tf {summary['tf_received']}), "
          f"{_accuracy_text(summary)}; {_rates_text(summary)}")
    print(f"-> {out_dir / 'summary.json'}, {out_dir}/overlay_*.png, node log {out_dir / 'node.log'}")
    return 0 if ok else 1


def _accuracy_text(s: dict) -> str:
    return (f"ADD(-S)@0.1d {s['add_01d_recall']:.2f}, median {s['median_rot_err_deg'] or 0:.2f} deg / "
            f"{s['median_trans_err_mm'] or 0:.1f} mm")


def _rates_text(s: dict) -> str:
    rate = f"{s['pose_rate_hz']:.2f}" if s["pose_rate_hz"] else "-"
    return (f"input {s['input_rate_hz']:.2f} Hz, poses {rate} Hz, dropped {s['dropped_frames']}; "
            f"latency median {s['median_node_latency_ms'] or 0:.0f} ms in the node, "
            f"{s['median_end_to_end_ms'] or 0:.0f} ms end to end")


# --- several objects: a rendered scene with a label image ---------------------------------------------------

@dataclass
class SceneObject:
    """One object of the several-objects demo: its node id, label, TF frame and what its errors are measured on."""

    object_id: str
    mask_label: int
    spec: object  # data.objects.ObjectSpec
    points: np.ndarray  # surface samples, object frame (m): ADD and the overlay's cloud

    @property
    def child_frame(self) -> str:
        return OBJECT_FRAME_PREFIX + self.object_id


def run_ros_multi_demo(n_objects: int = 2, backend: str = "auto", out_dir: Path = Path("outputs/demo"), *,
                       device: str = "auto", n_frames: int = 8, size: tuple[int, int] = (640, 480),
                       period_s: float = 1.0, timeout_s: float = 60.0) -> int:
    """``one2any demo --objects N``: N test objects side by side, turning ~7 deg per frame, rendered with a mono16
    label image (object k = label k+1), recorded and played like the sample; one reference per object on frame 0
    (id "k", its label, its ground-truth pose), every object's estimates collected and scored."""
    from one2any_ros.data.multi_scene import multi_object_scene

    out_dir = _fresh(out_dir)
    specs, frames = multi_object_scene(n_objects, n_frames, width=size[0], height=size[1])
    objects = [SceneObject(str(k + 1), k + 1, o, o.sample_surface(2000, seed=k)) for k, o in enumerate(specs)]
    print("objects: " + ", ".join(f"{o.child_frame} = {o.spec.name} {o.spec.obj_id} "
                                  f"({o.spec.diameter * 1000:.0f} mm, label {o.mask_label})" for o in objects))
    rec = record(frames, out_dir, period_s)
    params = {"backend": backend, "device": device, "object_frame_prefix": OBJECT_FRAME_PREFIX}
    try:
        with demo_graph(out_dir, rec, params, timeout_s) as (client, player):
            receipts = estimate_receipts(client)
            for k, o in enumerate(objects):
                res = set_reference_by_replay(client, player, rec.by_frame[0], object_id=o.object_id,
                                              mask_label=o.mask_label, T_cam_obj=frames[0]["T_cam_obj"][k])
                print(f"reference {o.child_frame}: {res.message}")
            ids = [o.object_id for o in objects]

            def answered(s: int) -> float | None:
                with client.lock:
                    got = [receipts.get((s, oid)) for oid in ids]
                return max(got) if all(t is not None for t in got) else None
            sent, play_s = stream(player, rec, answered, timeout_s)
            diag = client.wait_diagnostics(timeout=3.0) or {}
            return _report_multi(client, receipts, objects, frames, rec, sent, play_s, diag, backend, out_dir)
    except DemoError as e:
        print(e)
        return 1


def _object_row(client, receipts: dict, o: SceneObject, k: int, frame: dict, s: int,
                sent: dict) -> tuple[dict, np.ndarray | None]:
    """One object in one frame: (its estimate against the ground truth, or ok False; the estimated pose)."""
    from one2any_ros.ros import conversions as conv

    est = client.object_estimates.get((s, o.object_id))
    if est is None:
        return {"ok": False}, None
    T = conv.pose_to_matrix(est.pose)
    t_recv = receipts.get((s, o.object_id))
    e2e = (t_recv - sent[s]) * 1000 if s in sent and t_recv is not None else None
    return {"ok": True, **pose_errors(T, frame["T_cam_obj"][k], o.points, o.spec.diameter, o.spec.symmetric),
            "confidence": float(est.confidence), "inliers": int(est.inliers), "node_latency_ms": float(est.latency_ms),
            "end_to_end_ms": e2e, "tf": _tf_seen(client, s, o.child_frame), "backend": est.backend}, T


def _report_multi(client, receipts: dict, objects: list[SceneObject], frames: list[dict], rec: Recording,
                  sent: dict, play_s: float, diag: dict, backend: str, out_dir: Path) -> int:
    """Per-frame table, overlays, summary.json and a line per object plus the overall line; exit code."""
    from one2any_ros.core.visualize import save_rgb, side_by_side

    rows = []
    print(f"{'frame':>5} {'object':>7} {'rot_err_deg':>11} {'trans_err_mm':>12} {'add_mm':>7} {'conf':>5} "
          f"{'inliers':>7} {'node_ms':>8} {'e2e_ms':>7}")
    for i in rec.later_frames():
        s = rec.stamp_of[i]
        both = {o.object_id: _object_row(client, receipts, o, k, frames[i], s, sent) for k, o in enumerate(objects)}
        got = {oid: r for oid, (r, _) in both.items()}
        for o in objects:
            r = got[o.object_id]
            if not r["ok"]:
                print(f"{i:>5} {o.child_frame:>7}  no pose (dropped or failed; see {out_dir / 'node.log'})")
                continue
            e2e = r["end_to_end_ms"] if r["end_to_end_ms"] is not None else float("nan")
            print(f"{i:>5} {o.child_frame:>7} {r['rot_err_deg']:>11.2f} {r['trans_err_mm']:>12.1f} {r['add_mm']:>7.1f} "
                  f"{r['confidence']:>5.2f} {r['inliers']:>7d} {r['node_latency_ms']:>8.1f} {e2e:>7.1f}")
        save_rgb(out_dir / f"overlay_{i:03d}.png", side_by_side(
            _objects_overlay(frames[i], objects, {oid: T for oid, (_, T) in both.items()}, got,
                             f"ROS frame {i}: estimates"),
            _objects_overlay(frames[i], objects, {o.object_id: frames[i]["T_cam_obj"][k] for k, o in enumerate(objects)},
                             None, "ground truth")))
        rows.append({"frame": i, "objects": got})
    summary = _multi_summary(objects, rows, rec, play_s, diag, backend, receipts)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    for o in summary["objects"]:
        print(f"{o['child_frame']} ({o['name']}): {o['n_ok']}/{o['n_frames']} poses (/tf {o['tf_received']}), "
              f"{_accuracy_text(o)}")
    print(f"{summary['backend']}: {summary['n_objects']} objects, {summary['n_ok']}/{summary['n_frames']} frames with "
          f"every object's pose, {_accuracy_text(summary)}; {_rates_text(summary)}")
    print(f"-> {out_dir / 'summary.json'}, {out_dir}/overlay_*.png, node log {out_dir / 'node.log'}")
    return 0 if summary["n_ok"] else 1


def _multi_summary(objects: list[SceneObject], rows: list[dict], rec: Recording, play_s: float, diag: dict,
                   backend: str, receipts: dict) -> dict:
    """summary.json of the several-objects demo: per object (poses / frames, ADD(-S)@0.1d, medians) and overall
    (over every object in every frame), with the same keys as the one-object demo's where they mean the same."""
    per_object, every = [], []
    stamps = {rec.stamp_of[r["frame"]] for r in rows}
    for o in objects:
        mine = [r["objects"][o.object_id] for r in rows]
        ok = [r for r in mine if r["ok"]]
        every += mine
        per_object.append({
            "object_id": o.object_id, "child_frame": o.child_frame, "mask_label": o.mask_label, "name": o.spec.name,
            "obj_id": o.spec.obj_id, "diameter_mm": o.spec.diameter * 1000, "n_frames": len(mine), "n_ok": len(ok),
            "tf_received": sum(r["tf"] for r in ok), "add_01d_recall": sum(r["add_01d"] for r in ok) / max(len(mine), 1),
            "median_rot_err_deg": _median(ok, "rot_err_deg"), "median_trans_err_mm": _median(ok, "trans_err_mm"),
            "median_node_latency_ms": _median(ok, "node_latency_ms"),
            "median_end_to_end_ms": _median(ok, "end_to_end_ms"),
            "pose_rate_hz": _rate([t for (s, oid), t in receipts.items() if oid == o.object_id and s in stamps])})
    ok = [r for r in every if r["ok"]]
    complete = [r for r in rows if all(x["ok"] for x in r["objects"].values())]
    return {
        "backend": next((r["backend"] for r in ok), backend), "transport": "rosbag2 MCAP -> rclpy player -> node process",
        "n_objects": len(objects), "n_frames": len(rows), "n_ok": len(complete), "n_poses": len(ok),
        "add_01d_recall": sum(r["add_01d"] for r in ok) / max(len(every), 1),
        "median_rot_err_deg": _median(ok, "rot_err_deg"), "median_trans_err_mm": _median(ok, "trans_err_mm"),
        "median_node_latency_ms": _median(ok, "node_latency_ms"), "median_end_to_end_ms": _median(ok, "end_to_end_ms"),
        "input_rate_hz": (len(rec.later_frames()) - 1) / play_s if play_s > 0 else None,
        "pose_rate_hz": _rate([max(receipts.get((rec.stamp_of[r["frame"]], o.object_id), 0.0) for o in objects)
                               for r in complete]),
        "dropped_frames": int(diag.get("dropped_frames", 0) or 0), "objects": per_object, "diagnostics": diag,
        "frames": rows,
    }


def _objects_overlay(frame: dict, objects: list[SceneObject], poses: dict, rows: dict | None, title: str) -> np.ndarray:
    """Every object's pose drawn on the frame (axes, its cloud in its colour, a tag with its TF frame and, for
    estimates, its errors), the title top left; an object without a pose is named in the title."""
    from one2any_ros.core.camera import project
    from one2any_ros.core.geometry import transform_points
    from one2any_ros.core.visualize import draw_pose

    img, K = frame["rgb"], frame["K"]
    drawn = [(k, o, poses[o.object_id]) for k, o in enumerate(objects) if poses.get(o.object_id) is not None]
    clouds = {k: transform_points(T, o.points) for k, o, T in drawn}
    uv = {k: _visible(*project(c, K)) for k, c in clouds.items()}
    # the tags in two rows under the lowest object, neighbours alternating: they never overlap in the row
    bottom = max([float(p[:, 1].max()) for p in uv.values() if len(p)] + [0.0])
    for k, o, T in drawn:
        colour = OBJECT_COLOURS[k % len(OBJECT_COLOURS)]
        img = draw_pose(img, K, T, axis_len=0.5 * o.spec.diameter, cloud_cam=clouds[k], cloud_colour=colour)
        r = (rows or {}).get(o.object_id)
        tag = (f"{o.child_frame}: {r['rot_err_deg']:.1f} deg, {r['trans_err_mm']:.0f} mm" if r
               else f"{o.child_frame} ({o.spec.name})")
        u = float(np.median(uv[k][:, 0])) if len(uv[k]) else img.shape[1] / 2
        _tag(img, tag, (int(u), int(bottom) + 6 + 22 * (k % 2)), colour)
    missing = [o.child_frame for o in objects if poses.get(o.object_id) is None]
    _tag(img, title + (f" (no pose: {', '.join(missing)})" if missing else ""), (2, 2), (255, 255, 255),
         centred=False)
    return img


def _visible(uv: np.ndarray, z: np.ndarray) -> np.ndarray:
    """The projected points in front of the camera."""
    return uv[(z > 0) & np.all(np.isfinite(uv), axis=1)]


def _tag(img: np.ndarray, text: str, anchor: tuple[int, int], colour: tuple[int, int, int], *,
         centred: bool = True) -> None:
    """``text`` in ``colour`` on a dark box (readable on any background), in place; ``anchor`` is the box's top
    centre (``centred``) or top-left corner; the box is kept inside the image."""
    import cv2

    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
    x = anchor[0] - (tw + 8) // 2 if centred else anchor[0]
    x = int(np.clip(x, 0, max(img.shape[1] - tw - 8, 0)))
    y = int(np.clip(anchor[1], 0, max(img.shape[0] - th - base - 6, 0)))
    box = img[y:y + th + base + 6, x:x + tw + 8]
    box[:] = (0.3 * box).astype(np.uint8)
    cv2.putText(img, text, (x + 4, y + 3 + th), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
