"""The several-objects ROS demo (``one2any demo --objects N``): N procedural test objects in one rendered scene
with a mono16 label image, one reference each; every object's ~/estimate and /tf child frame collected and scored,
overlays with all of them (the graph both demos run on: ros_tools/demo_graph.py)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from one2any_ros.ros_tools.demo_bag import Recording, record
from one2any_ros.ros_tools.demo_graph import (DemoError, demo_graph, estimate_receipts, fresh_dir,
                                              set_reference_by_replay, stream)
from one2any_ros.ros_tools.demo_report import accuracy_text, median_of, pose_errors, rate_of, rates_text, tf_seen

OBJECT_FRAME_PREFIX = "obj_"  # the several-objects demo's TF child frames: obj_1, obj_2, ...
OBJECT_COLOURS = ((255, 220, 0), (255, 90, 255), (90, 255, 90), (255, 150, 40))  # RGB, object k's cloud and tag


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

    out_dir = fresh_dir(out_dir)
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
            "end_to_end_ms": e2e, "tf": tf_seen(client, s, o.child_frame), "backend": est.backend}, T


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
              f"{accuracy_text(o)}")
    print(f"{summary['backend']}: {summary['n_objects']} objects, {summary['n_ok']}/{summary['n_frames']} frames with "
          f"every object's pose, {accuracy_text(summary)}; {rates_text(summary)}")
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
            "median_rot_err_deg": median_of(ok, "rot_err_deg"), "median_trans_err_mm": median_of(ok, "trans_err_mm"),
            "median_node_latency_ms": median_of(ok, "node_latency_ms"),
            "median_end_to_end_ms": median_of(ok, "end_to_end_ms"),
            "pose_rate_hz": rate_of([t for (s, oid), t in receipts.items() if oid == o.object_id and s in stamps])})
    ok = [r for r in every if r["ok"]]
    complete = [r for r in rows if all(x["ok"] for x in r["objects"].values())]
    return {
        "backend": next((r["backend"] for r in ok), backend), "transport": "rosbag2 MCAP -> rclpy player -> node process",
        "n_objects": len(objects), "n_frames": len(rows), "n_ok": len(complete), "n_poses": len(ok),
        "add_01d_recall": sum(r["add_01d"] for r in ok) / max(len(every), 1),
        "median_rot_err_deg": median_of(ok, "rot_err_deg"), "median_trans_err_mm": median_of(ok, "trans_err_mm"),
        "median_node_latency_ms": median_of(ok, "node_latency_ms"), "median_end_to_end_ms": median_of(ok, "end_to_end_ms"),
        "input_rate_hz": (len(rec.later_frames()) - 1) / play_s if play_s > 0 else None,
        "pose_rate_hz": rate_of([max(receipts.get((rec.stamp_of[r["frame"]], o.object_id), 0.0) for o in objects)
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
