"""The several-objects run of ``one2any bench --ros --objects N``: a rendered scene of N held-out objects on one
labelled stream, the node holding one reference per label; the per-frame cost with frames one at a time, then poses
per second per object and latency at 30 Hz, then the first object leaving the view and coming back (frames one at
a time: no pose while it is away, frames until its pose is right again) ->
``<out>/ros_bench_objects_<N>[_reference].json``."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from one2any_ros.ros_tools.bench.camera import Camera, save_scene
from one2any_ros.ros_tools.bench.common import (FRAME_ID, NAMESPACE, PING_PONG, ROT_TOL_DEG, TRANS_TOL_MM, machine,
                                                start_node, stats, stop_run)
from one2any_ros.ros_tools.bench.rig import MemorySampler


OBJECTS_PREFIX = "obj_"  # TF child frames of the benchmark's objects: obj_1, obj_2, ...
OBJECTS_CALIBRATION_HZ = 1.0  # frames one at a time even for four objects (a few times one object's cost)
OBJECTS_RATE_HZ = 30.0
# the leave-and-return phase (issue 26): the first object in view on these scene frames, gone from the view on
# these (the scene rendered again without it, the others turning on), then back, turned on by as many steps
LEAVE_SHOWN = (1, 2, 3, 4)
LEAVE_AWAY = (5, 6, 7, 8)
LEAVE_BACK = (9, 8, 7, 6, 5)


def run_objects_bench(n_objects: int, *, backend: str = "auto", device: str = "auto", checkpoint: str | None = None,
                      duration: float = 25.0, out_dir: Path = Path("outputs/bench"), hold: float = 0.5,
                      calibration_s: float | None = None, verbose: bool = True, masks: str = "every",
                      size: tuple[int, int] = (640, 480), max_image_width: int | None = None) -> dict:
    """The node with ``n_objects`` references on one labelled stream: per-frame cost (frames one at a time), then
    ``duration`` s at 30 Hz (poses/s per object, latency). Writes ``<out_dir>/ros_bench_objects_<N>.json``
    (``..._<N>_reference.json`` with ``masks`` "reference": the label image only with the reference frame, then
    rgb + depth + camera_info alone: the node tracks every object without one, as a workcell runs it).
    ``calibration_s`` defaults to one whole turn back and forth, so the load phase starts where the object is (a
    jump would cost a global search inside the measurement). ``size``: the rendered camera's (width, height), the
    report's name saying it when it is not 640x480; ``max_image_width``: the node's parameter (None: its default)."""
    from one2any_ros.data.multi_scene import SCENE_OBJECTS, multi_object_scene
    from one2any_ros.ros_tools.demo_graph import estimate_receipts
    from one2any_ros.ros_tools.harness import GraphClient, frame_messages

    say = print if verbose else (lambda *a, **k: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    specs, frames = multi_object_scene(n_objects, max(PING_PONG) + 1, width=size[0], height=size[1],
                                       slots=SCENE_OBJECTS, without_first=LEAVE_AWAY)
    scene = save_scene(out_dir / "ros_bench_objects_scene.npz", frames)
    ids = [str(k + 1) for k in range(n_objects)]
    extra = {} if max_image_width is None else {"max_image_width": int(max_image_width)}
    node, params = start_node(out_dir, "ros_bench_objects", backend=backend, device=device, checkpoint=checkpoint,
                              object_frame_prefix=OBJECTS_PREFIX, **extra)
    client = GraphClient(namespace=NAMESPACE, client_name="one2any_bench")
    receipts = estimate_receipts(client)
    report: dict = {"machine": machine(), "n_objects": n_objects, "duration_s": duration, "hold_s": hold,
                    "size": f"{size[0]}x{size[1]}",
                    "masks": "reference frame only" if masks == "reference" else "every frame",
                    "node_params": params, "objects": [
                        {"object_id": oid, "mask_label": k + 1, "name": o.name, "obj_id": o.obj_id,
                         "diameter_mm": o.diameter * 1000, "pixels_frame0": int((frames[0]["labels"] == k + 1).sum())}
                        for k, (oid, o) in enumerate(zip(ids, specs))]}
    mem = None
    try:
        if not client.wait_ready(90):
            raise RuntimeError("the node did not come up; log:\n" + node.log_text()[-3000:])
        mem = MemorySampler(node.proc.pid)
        for k, oid in enumerate(ids):
            res = client.set_reference_on(frame_messages(frames[0], time.time_ns(), frame_id=FRAME_ID.format(0)),
                                          object_id=oid, mask_label=k + 1, T_cam_obj=frames[0]["T_cam_obj"][k],
                                          call_timeout=60, repeat_s=0.5)
            if not res.success:
                raise RuntimeError(f"set_reference of object {oid} failed: {res.message}")
        d = client.wait_diagnostics(timeout=5) or {}
        report["backend"], report["device"] = d.get("backend", backend), d.get("device", device)
        say(f"node up: backend {report['backend']} on {report['device']}; {n_objects} references set")
        run = _ObjectsRun(client, receipts, ids, frames, scene, mem, out_dir, specs, masks=masks != "reference")
        # one step of the turn per frame while calibrating (as the soak's 2 Hz x 0.5 s): every frame is tracked
        calibration_s = calibration_s or len(PING_PONG) / OBJECTS_CALIBRATION_HZ
        report["phases"] = [run.phase("frames one at a time", OBJECTS_CALIBRATION_HZ, calibration_s,
                                      1.0 / OBJECTS_CALIBRATION_HZ, say),
                            run.phase(f"{OBJECTS_RATE_HZ:.0f} Hz", OBJECTS_RATE_HZ, duration, hold, say),
                            run.leave_and_return(max(PING_PONG) + 1, say)]
        report["summary"] = _objects_summary(report["phases"])
        report["node_alive"] = node.alive()
    finally:
        stop_run(mem, client, node, report)
    (out_dir / objects_report_name(n_objects, masks, size)).write_text(json.dumps(report, indent=2))
    return report


def objects_report_name(n_objects: int, masks: str = "every", size: tuple[int, int] = (640, 480)) -> str:
    suffix = "" if tuple(size) == (640, 480) else f"_{size[0]}x{size[1]}"
    return f"ros_bench_objects_{n_objects}{'_reference' if masks == 'reference' else ''}{suffix}.json"


class _ObjectsRun:
    """The phases of one objects benchmark: the camera plays the scene at a rate; what came back is measured."""

    def __init__(self, client, receipts: dict, ids: list[str], frames: list[dict], scene: Path, mem,
                 out_dir: Path, specs: list, *, masks: bool = True) -> None:
        self.client, self.receipts, self.ids, self.frames = client, receipts, ids, frames
        self.specs, self.masks = specs, masks
        self.scene, self.mem, self.out_dir = scene, mem, out_dir
        self.wall_minus_mono = time.time() - time.monotonic()  # receipt times (monotonic) -> wall clock, like stamps
        self.last_got: dict = {}  # the last phase's poses ((stamp, object id) -> (estimate, receipt)) and frames shown
        self.last_shown: dict[int, int] = {}

    def phase(self, name: str, rate: float, duration: float, hold: float, say,
              order: tuple[int, ...] | None = None) -> dict:
        """The camera at ``rate`` Hz for ``duration`` s, each scene frame shown ``hold`` s (the frames of ``order``,
        default ``PING_PONG``, round and round); what came back."""
        d0 = self.client.wait_diagnostics(timeout=3) or {}
        cpu0, t0 = self.mem.cpu_s(), time.monotonic()
        cam = Camera(rate, duration, hold, self.out_dir / "ros_bench_objects_camera.log", scene=self.scene,
                     masks=self.masks, order=order)
        cam_res = cam.result(duration + 60)
        node_cpu = 100 * (self.mem.cpu_s() - cpu0) / (time.monotonic() - t0)
        time.sleep(2.0)  # the last poses and one more /diagnostics
        d1 = self.client.wait_diagnostics(timeout=3) or {}
        shown = cam.frames()  # stamp -> scene frame of every frame the camera sent in this phase
        with self.client.lock:
            got = {key: (e, self.receipts.get(key)) for key, e in self.client.object_estimates.items()
                   if key[0] in shown}
        seconds = float(cam_res.get("duration_s") or duration)
        per_object = {oid: self._object(oid, k, got, shown, seconds) for k, oid in enumerate(self.ids)}
        complete = [s for s in shown if all((s, oid) in got for oid in self.ids)]
        per_frame = [max(got[(s, oid)][0].latency_ms for oid in self.ids) for s in complete]
        latency = [v for o in per_object.values() for v in o.pop("_latency")]
        ph = {"name": name, "target_rate_hz": rate, "camera": cam_res, "frames_sent": len(shown),
              "frames_with_every_pose": len(complete), "frames_per_s": len(complete) / seconds,
              "dropped_frames": int(d1.get("dropped_frames") or 0) - int(d0.get("dropped_frames") or 0),
              "per_frame_ms": stats(per_frame), "latency_ms": stats(latency), "node_cpu_percent": node_cpu,
              "memory_mb": self.mem.now(), "objects": per_object}
        say(f"  {name}: sent {len(shown)} ({cam_res.get('rate_hz', 0):.1f} Hz), frames with every pose "
            f"{len(complete)}; per frame median {ph['per_frame_ms'].get('median', float('nan')):.0f} ms; poses/s per "
            "object " + ", ".join(f"{oid} {o['poses_per_s']:.1f}" for oid, o in per_object.items())
            + f"; latency median {ph['latency_ms'].get('median', float('nan')):.0f} ms "
              f"p99 {ph['latency_ms'].get('p99', float('nan')):.0f} ms")
        self.last_got, self.last_shown = got, shown
        return ph

    def leave_and_return(self, first_away: int, say) -> dict:
        """The first object leaves the view and comes back (``LEAVE_*``; the scene's frames from ``first_away`` on
        are ``LEAVE_AWAY`` without it), frames one at a time, so every frame is estimated: the phase's numbers, and
        ``first_object``: poses published for it while it was away (any is wrong), and the frames after its return
        until its pose is right (0: on the frame it came back; None: not within the phase)."""
        order = LEAVE_SHOWN + tuple(first_away + j for j in range(len(LEAVE_AWAY))) + LEAVE_BACK
        ph = self.phase("the first object leaves and returns", OBJECTS_CALIBRATION_HZ,
                        (len(order) - 1) / OBJECTS_CALIBRATION_HZ, 1.0 / OBJECTS_CALIBRATION_HZ, say, order=order)
        ph["first_object"] = _return_of(0, self.ids[0], self.specs[0], self.frames, self.last_shown, self.last_got)
        f = ph["first_object"]
        say(f"    {OBJECTS_PREFIX}{self.ids[0]} away {f['away_frames']} frames: poses while away {f['poses_while_away']}"
            f", right again {f['frames_to_reacquire']} frame(s) after its return")
        return ph

    def _object(self, oid: str, k: int, got: dict, shown: dict[int, int], seconds: float) -> dict:
        """One object's poses in a phase: rate, latency (stamp -> estimate here), node latency, errors."""
        from one2any_ros.core.geometry import rotation_angle_deg
        from one2any_ros.core.metrics import add
        from one2any_ros.ros import conversions as conv

        mine = [(s, e, t) for (s, o), (e, t) in got.items() if o == oid]
        latency = [1000 * (t + self.wall_minus_mono - s / 1e9) for s, _, t in mine if t is not None]
        errs, wrong, spec = [], 0, self.specs[k]
        for s, e, _ in mine:
            T, G = conv.pose_to_matrix(e.pose), self.frames[shown[s]]["T_cam_obj"][k]
            if not np.isfinite(G).all():  # a pose for an object that is not in the frame
                wrong += 1
                continue
            errs.append((float(rotation_angle_deg(T[:3, :3].T @ G[:3, :3])), float(1000 * np.linalg.norm(T[:3, 3] - G[:3, 3]))))
            wrong += add(T, G, spec.vertices) > 0.1 * spec.diameter
        return {"poses": len(mine), "poses_per_s": len(mine) / seconds, "latency_ms": stats(latency),
                "published_wrong": int(wrong),  # ADD > 0.1 d: what a grasping pipeline fears most
                "node_latency_ms": stats([e.latency_ms for _, e, _ in mine]),
                "within_tolerance": sum(r < ROT_TOL_DEG and t < TRANS_TOL_MM for r, t in errs),
                "rot_err_deg": stats([r for r, _ in errs]), "trans_err_mm": stats([t for _, t in errs]),
                "_latency": latency}


def _return_of(k: int, oid: str, spec, frames: list[dict], shown: dict[int, int], got: dict) -> dict:
    """What the node published for the scene's object ``k`` (id ``oid``, ``spec`` its ObjectSpec) around the frames
    it was away (its ground truth NaN): poses while away, and frames from its return to its first right pose (ADD <
    0.1 d)."""
    from one2any_ros.core.metrics import add
    from one2any_ros.ros import conversions as conv

    stamps = sorted(shown)
    away = [np.isnan(frames[shown[s]]["T_cam_obj"][k]).any() for s in stamps]
    out = {"away_frames": int(sum(away)), "poses_while_away": sum((s, oid) in got for s, a in zip(stamps, away) if a),
           "frames_to_reacquire": None}
    if not any(away):
        return out
    back = stamps[len(away) - away[::-1].index(True):]  # the frames after the last one it was away
    for n, s in enumerate(back):
        if (s, oid) in got:
            T, G = conv.pose_to_matrix(got[(s, oid)][0].pose), frames[shown[s]]["T_cam_obj"][k]
            if add(T, G, spec.vertices) < 0.1 * spec.diameter:
                out["frames_to_reacquire"] = n
                break
    out["frames_back"] = len(back)
    return out


def _objects_summary(phases: list[dict]) -> dict:
    """The numbers the docs' table shows: per-frame cost with frames one at a time, the rest under load, and the
    first object's leave-and-return."""
    cal, load, leave = phases
    objs = load["objects"].values()
    return {"per_frame_ms": cal["per_frame_ms"].get("median"), "per_frame_ms_p90": cal["per_frame_ms"].get("p90"),
            "poses_per_s_per_object": float(np.mean([o["poses_per_s"] for o in objs])),
            "latency_ms_median": load["latency_ms"].get("median"), "latency_ms_p99": load["latency_ms"].get("p99"),
            "frames_per_s": load["frames_per_s"],
            "ms_per_frame_under_load": 1000.0 / load["frames_per_s"] if load["frames_per_s"] else None,
            "within_tolerance": sum(o["within_tolerance"] for o in objs),
            "poses": sum(o["poses"] for o in objs), "tolerance": [ROT_TOL_DEG, TRANS_TOL_MM],
            "poses_while_away": leave["first_object"]["poses_while_away"],
            "frames_to_reacquire": leave["first_object"]["frames_to_reacquire"]}
