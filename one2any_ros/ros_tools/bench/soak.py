"""The soak/overload run of ``one2any bench --ros``: the node with the bundled sample's reference, its processing
time calibrated with frames one at a time, then two phases (30 Hz, 4x the processing rate) while a client makes a
cell controller's calls; every phase measured against the ground truth -> ``<out>/ros_bench.json``."""
from __future__ import annotations

import json
import re
import statistics
import time
from pathlib import Path

import numpy as np

from one2any_ros.ros_tools.bench.camera import Camera
from one2any_ros.ros_tools.bench.common import (AFTER_RECAPTURE_S, FRAME_ID, NAMESPACE, ROT_TOL_DEG,
                                                TARGET_MEMORY_GROWTH_MB, TARGET_P99_X_PROCESSING, TARGET_SERVICE_MS,
                                                TRANS_TOL_MM, frame_index, machine, start_node, stats, stop_run)
from one2any_ros.ros_tools.bench.control import start_control, stop_control
from one2any_ros.ros_tools.bench.rig import MemorySampler, Prober, Truth


def run_ros_bench(*, backend: str = "auto", device: str = "auto", checkpoint: str | None = None,
                  duration: float = 60.0, out_dir: Path = Path("outputs/bench"), hold: float = 0.5,
                  calibration_s: float = 10.0, verbose: bool = True) -> dict:
    """The soak/overload run: reference, calibration, the two phases, memory growth and targets -> ros_bench.json."""
    from one2any_ros.data.sample import load_sample_sequence
    from one2any_ros.ros_tools.harness import GraphClient

    say = print if verbose else (lambda *a, **k: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frames = load_sample_sequence()["frames"]
    truth = Truth(frames)
    node, params = start_node(out_dir, "ros_bench", backend=backend, device=device, checkpoint=checkpoint)
    control = start_control()
    client = GraphClient(namespace=NAMESPACE, client_name="one2any_bench")
    infos: dict[int, int] = {}  # stamp -> sample frame of every frame published (identifies a re-captured reference)
    full_name = f"{NAMESPACE}/one2any"
    wall_minus_mono = time.time() - time.monotonic()  # receipt times (monotonic) -> wall clock, like stamps
    report: dict = {"machine": machine(), "duration_s": duration, "hold_s": hold,
                    "object_speed_deg_s": 60.0 / 9 / hold, "node_params": params}
    mem = None
    try:
        if not client.wait_ready(90):
            raise RuntimeError("the node did not come up; log:\n" + node.log_text()[-3000:])
        mem = MemorySampler(node.proc.pid)
        report["memory_mb_ready"] = mem.now()
        _set_first_reference(client, frames, truth)
        d = client.wait_diagnostics(timeout=5) or {}
        report["backend"], report["device"] = d.get("backend", backend), d.get("device", device)
        say(f"node up: backend {report['backend']} on {report['device']}; reference set. Calibrating ...")
        processing_ms, report["calibration"] = _calibrate(client, node, calibration_s, hold, out_dir)
        say(f"processing time (frames one at a time): median {processing_ms:.0f} ms -> {1000 / processing_ms:.1f} Hz")
        prober = _ready_prober(client, full_name)
        phases = [("30 Hz", 30.0), ("4x processing rate", 4000.0 / processing_ms)]
        report["phases"] = []
        soak_t0 = time.monotonic()
        report["memory_mb_soak_start"] = mem.now()
        for name, rate in phases:
            say(f"phase '{name}': camera at {rate:.1f} Hz for {duration:.0f} s ...")
            report["phases"].append(_phase(name, rate, duration, hold, client, prober, mem, truth, infos, out_dir,
                                           processing_ms, wall_minus_mono, say))
        soak_t1 = time.monotonic()
        report["memory_mb_soak_end"] = mem.now()
        _add_memory_growth(report, mem, soak_t0, soak_t1)
        report["targets"] = _targets(report)
        report["node_alive"] = node.alive()
    finally:
        stop_run(mem, client, node, report)
        stop_control(control)
    _write_report(out_dir / "ros_bench.json", report)
    return report


def _set_first_reference(client, frames: list[dict], truth: Truth) -> None:
    """The reference: frame 0 with its ground-truth pose (outputs in the model frame), noted in ``truth``."""
    from one2any_ros.ros_tools.harness import frame_messages

    # sent after the request and again every 0.5 s until the node answers (GraphClient.set_reference_on): a
    # single frame could reach the node before the request on a loaded machine (seen once in CI)
    try:
        res = client.set_reference_on(frame_messages(frames[0], time.time_ns(), frame_id=FRAME_ID.format(0)),
                                      T_cam_obj=frames[0]["T_cam_obj"], call_timeout=60, repeat_s=0.5)
    except TimeoutError as e:
        raise RuntimeError(f"set_reference failed: {e}") from e
    if not res.success:
        raise RuntimeError("set_reference failed: " + res.message)
    truth.reference.append((time.monotonic(), None))


def _calibrate(client, node, calibration_s: float, hold: float, out_dir: Path) -> tuple[float, dict]:
    """Frames one at a time (2 Hz, below any processing rate): (median processing ms, the report's calibration)."""
    t_cal = time.monotonic()
    cam = Camera(2.0, calibration_s, hold, out_dir / "ros_bench_camera.log")
    cam_res = cam.result(calibration_s + 60)
    with client.lock:
        proc = [e.latency_ms for e, t in client.estimates.values() if t >= t_cal]
    if len(proc) < 3:
        raise RuntimeError(f"calibration gave {len(proc)} poses; node log:\n" + node.log_text()[-3000:])
    processing_ms = statistics.median(proc)
    return processing_ms, {"input_rate_hz": cam_res.get("rate_hz"), "poses": len(proc),
                           "processing_ms": stats(proc), "processing_rate_hz": 1000.0 / processing_ms}


def _ready_prober(client, full_name: str) -> Prober:
    """A Prober whose services are discovered and warmed by one untimed round, so only steady calls are timed."""
    prober = Prober(client, full_name)
    if not prober.warm_up():
        raise RuntimeError("the node's services did not show up")
    prober.parameters()  # one untimed round (first calls allocate on both sides)
    prober.calls.clear()
    return prober


def _add_memory_growth(report: dict, mem: MemorySampler, soak_t0: float, soak_t1: float) -> None:
    """The node's memory over the soak into ``report``: the series, growth (robust and instants) and slope."""
    series = [(t - soak_t0, mb) for t, mb in mem.samples if soak_t0 - 1 <= t <= soak_t1 + 1]
    report["memory_series"] = [(round(t, 2), round(mb, 1)) for t, mb in series]
    # RSS swings by +-15 MB with the image buffers in flight, so growth is judged on the medians of the
    # first and last 10 s (the instants are reported too) and on a fitted slope
    first = [mb for t, mb in series if t <= 10.0]
    last = [mb for t, mb in series if t >= series[-1][0] - 10.0]
    report["memory_growth_mb"] = float(np.median(last) - np.median(first))
    report["memory_growth_mb_instants"] = report["memory_mb_soak_end"] - report["memory_mb_soak_start"]
    report["memory_slope_mb_per_min"] = float(
        60 * np.polyfit([t for t, _ in series], [mb for _, mb in series], 1)[0])


def _targets(report: dict) -> dict:
    """The issue #6 targets over the whole soak, each True when met."""
    return {
        "p99_latency_under_3x_processing": all(p["targets"]["p99_latency"] for p in report["phases"]),
        "memory_growth_under_50mb": report["memory_growth_mb"] < TARGET_MEMORY_GROWTH_MB,
        "clear_reference_and_parameters_under_200ms": all(p["targets"]["services"] for p in report["phases"]),
    }


def _write_report(path: Path, report: dict) -> None:
    """The report as indented JSON, with each [t, value] pair of the series on one line."""
    text = json.dumps(report, indent=2)
    text = re.sub(r"\[\s+(-?[\d.eE+-]+),\s+(-?[\d.eE+-]+)\s+\]", r"[\1, \2]", text)  # series: one pair a line
    path.write_text(text)


def _phase(name, rate, duration, hold, client, prober, mem, truth, infos, out_dir, processing_ms, wall_minus_mono,
           say) -> dict:
    """One phase: the camera at ``rate`` Hz for ``duration`` s with the prober running; what came back, measured."""
    d0 = client.wait_diagnostics(timeout=3) or {}
    dropped0 = int(d0.get("dropped_frames") or 0)
    with client.lock:
        seen = set(client.poses)
    calls0 = len(prober.calls)
    t0, t1, cam_res, node_cpu, machine_cpu = _drive_camera(rate, duration, hold, prober, mem, infos, out_dir)
    time.sleep(max(1.5, 3 * processing_ms / 1000))  # the last poses and one more /diagnostics
    d1 = client.wait_diagnostics(timeout=3) or {}
    calls = prober.calls[calls0:]
    _note_recaptures(calls, infos, truth)
    in_phase, est = _new_poses(client, seen, t0, t1)
    latency = [1000 * (t + wall_minus_mono - s / 1e9) for s, _, t in in_phase]
    steady = _steady_latency(in_phase, calls, wall_minus_mono)
    node_latency = [est[s].latency_ms for s, _, _ in in_phase if s in est]
    accuracy = _accuracy(in_phase, est, truth, t0)
    sent = int(cam_res.get("published", 0))
    dropped = int(d1.get("dropped_frames") or 0) - dropped0
    svc, services_ok = _services(calls)
    mem_phase = mem.between(t0, t1)
    lat = stats(latency)
    phase = {
        "name": name, "target_rate_hz": rate, "camera": cam_res, "duration_s": t1 - t0,
        "frames_sent": sent, "poses": len(in_phase), "poses_per_s": len(in_phase) / max(t1 - t0, 1e-9),
        "dropped_frames": dropped, "frames_without_pose_otherwise": max(sent - len(in_phase) - dropped, 0),
        "latency_ms": lat, "latency_ms_steady": stats(steady), "node_latency_ms": stats(node_latency),
        # poses the node itself took > 3x the calibrated processing time for (re-detection by the global search)
        "slow_in_node": sum(v > TARGET_P99_X_PROCESSING * processing_ms for v in node_latency),
        "services_ms": svc,
        "recaptures": sum(1 for c in calls if c["kind"] == "set_reference"),
        "node_cpu_percent": node_cpu, "machine_cpu_percent": machine_cpu,  # of one core; of all cores
        "memory_mb": {"start": mem_phase[0] if mem_phase else None, "end": mem_phase[-1] if mem_phase else None,
                      "peak": max(mem_phase) if mem_phase else None},
        "accuracy": accuracy,
        "latency_series": [(round(t - t0, 3), round(1000 * (t + wall_minus_mono - s / 1e9), 1))
                           for s, _, t in sorted(in_phase, key=lambda x: x[2])],
        "last_diagnostics": d1,
        "targets": {"p99_latency": lat.get("p99", float("inf")) < TARGET_P99_X_PROCESSING * processing_ms,
                    "p99_latency_bound_ms": TARGET_P99_X_PROCESSING * processing_ms, "services": services_ok},
    }
    _say_phase(say, phase)
    return phase


def _drive_camera(rate: float, duration: float, hold: float, prober: Prober, mem: MemorySampler, infos: dict[int, int],
                  out_dir: Path) -> tuple[float, float, dict, float, float]:
    """The camera for one phase, the prober calling alongside: (t0, t1, camera result, node CPU %, machine CPU %)."""
    import psutil

    psutil.cpu_percent(interval=None)  # starts the machine-wide average
    cpu0 = mem.cpu_s()
    t0 = time.monotonic()
    cam = Camera(rate, duration, hold, out_dir / "ros_bench_camera.log")
    time.sleep(min(2.0, duration / 4))  # the camera process starts and matches; then the client joins in
    prober.start()
    cam_res = cam.result(duration + 60)
    infos.update(cam.frames())
    prober.stop()
    t1 = time.monotonic()
    node_cpu = 100 * (mem.cpu_s() - cpu0) / (t1 - t0)
    machine_cpu = psutil.cpu_percent(interval=None)
    return t0, t1, cam_res, node_cpu, machine_cpu


def _note_recaptures(calls: list[dict], infos: dict[int, int], truth: Truth) -> None:
    """Re-captures into ``truth``: which frame each one took (stamp in the answer -> camera_info stamp -> frame)."""
    for c in calls:
        if c["kind"] == "set_reference" and c["ok"]:
            m = re.search(r"stamped (\d+\.\d+) s", c["message"])
            if m:
                s = float(m.group(1)) * 1e9
                near = min(list(infos.items()), key=lambda x: abs(x[0] - s), default=None)
                if near is not None and abs(near[0] - s) < 0.6e6:
                    truth.reference.append((c["t"], near[1]))
                    continue
            truth.reference.append((c["t"], -1))  # unknown frame: poses until the next re-capture are unchecked
    truth.reference.sort(key=lambda x: x[0])


def _new_poses(client, seen: set, t0: float, t1: float) -> tuple[list, dict]:
    """Poses not ``seen`` before the phase that arrived in it, as (stamp, pose, t); and their estimates by stamp."""
    with client.lock:
        new = [(s, p, t) for s, (p, t) in client.poses.items() if s not in seen]
        est = {s: e for s, (e, _) in client.estimates.items() if s not in seen}
    in_phase = [(s, p, t) for s, p, t in new if t0 <= t <= t1 + 5]
    return in_phase, est


def _steady_latency(in_phase: list, calls: list[dict], wall_minus_mono: float) -> list[float]:
    """Stamp-to-pose latency (ms) of the poses not within AFTER_RECAPTURE_S of a re-capture (its global search)."""
    recaptured = [c["t"] for c in calls if c["kind"] == "set_reference"]
    return [1000 * (t + wall_minus_mono - s / 1e9) for s, _, t in in_phase
            if not any(0 <= t - tr < AFTER_RECAPTURE_S for tr in recaptured)]


def _accuracy(in_phase: list, est: dict, truth: Truth, t0: float) -> dict:
    """A phase's pose errors against the ground truth: counts within tolerance, error stats, the five worst."""
    from one2any_ros.ros import conversions as conv

    errs, worst = [], []
    for s, p, t in in_phase:
        k = frame_index(p.header.frame_id)
        e = None if k is None else truth.error(conv.pose_to_matrix(p.pose), k, t)
        if e is not None:
            errs.append(e)
            worst.append((e[0], e[1], round(t - t0, 3), k, [r for tr, r in truth.reference if abs(tr - t) < 2.0],
                          round(est[s].confidence, 3) if s in est else None))
    return {"checked": len(errs),
            "within_tolerance": sum(r < ROT_TOL_DEG and t < TRANS_TOL_MM for r, t in errs),
            "tolerance": [ROT_TOL_DEG, TRANS_TOL_MM],
            "rot_err_deg": stats([r for r, _ in errs]), "trans_err_mm": stats([t for _, t in errs]),
            "worst": sorted(worst, key=lambda w: -w[0])[:5]}  # (deg, mm, t, frame, refs near, confidence)


def _services(calls: list[dict]) -> tuple[dict, bool]:
    """Round-trip stats and failures per service kind; and whether parameters and clear_reference met the target."""
    svc = {}
    for kind in ("get_parameters", "set_parameters", "clear_reference", "set_reference", "control_get_parameters",
                 "control_set_parameters"):
        ms = [c["ms"] for c in calls if c["kind"] == kind]
        svc[kind] = {**stats(ms), "failed": sum(not c["ok"] for c in calls if c["kind"] == kind)}
    bounded = [svc[k].get("max", float("inf")) < TARGET_SERVICE_MS and svc[k]["failed"] == 0
               for k in ("get_parameters", "set_parameters", "clear_reference")]
    return svc, all(bounded)


def _say_phase(say, phase: dict) -> None:
    """The phase's one-line summary: frames, poses, drops, latency, service maxima, memory."""
    sent, n_poses, dropped = phase["frames_sent"], phase["poses"], phase["dropped_frames"]
    lat, svc, cam_res = phase["latency_ms"], phase["services_ms"], phase["camera"]
    say(f"  sent {sent} ({cam_res.get('rate_hz', 0):.1f} Hz), poses {n_poses} ({phase['poses_per_s']:.1f}/s), "
        f"dropped {dropped}; latency median {lat.get('median', float('nan')):.0f} ms "
        f"p99 {lat.get('p99', float('nan')):.0f} ms; "
        + ", ".join(f"{k} max {v.get('max', float('nan')):.0f} ms" for k, v in svc.items())
        + f"; RSS {phase['memory_mb']['start']:.0f} -> {phase['memory_mb']['end']:.0f} MB")
