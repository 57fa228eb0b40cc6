"""The ROS node's sections of docs/benchmarks.md (tools/make_benchmarks_doc.py): the soak and overload run
(ros_bench.json), several objects on one stream (ros_bench_objects.json) and the faults (faults.json). Verdicts
are computed from the reports' numbers; the words around them are blocks of tools/benchmarks_template.md."""
from __future__ import annotations

import numpy as np
from benchmarks_text import f, render, short, table

SERVICES = ("get_parameters", "set_parameters", "clear_reference", "set_reference", "control_get_parameters",
            "control_set_parameters")
BOUNDED_SERVICES = ("get_parameters", "set_parameters", "clear_reference")  # the < 200 ms target's calls
SUBLINEAR, SUPERLINEAR = 0.9, 1.1  # N objects' cost / (N x one object's): below, "less than N"; above, "more than N"
GIL_BOUND_PERCENT = 90  # the node's process at this share of one core or more: bound by the GIL


def _phase_rows(r: dict) -> list[list[str]]:
    rows = []
    for p in r["phases"]:
        lat, st, nl = p["latency_ms"], p["latency_ms_steady"], p["node_latency_ms"]
        rows.append([p["name"], f(p["camera"].get("rate_hz"), 1), f(p["poses_per_s"], 1),
                     f"{f(lat.get('median'), 0)} / {f(lat.get('p90'), 0)} / {f(lat.get('p99'), 0)} / {f(lat.get('max'), 0)}",
                     f(st.get("p99"), 0), f"{f(nl.get('median'), 0)} ({p.get('slow_in_node', '-')})",
                     f"{p['frames_sent']} / {p['dropped_frames']} / {p['frames_without_pose_otherwise']}",
                     f"{p['accuracy']['within_tolerance']} / {p['accuracy']['checked']}",
                     f"{f(p.get('node_cpu_percent'), 0)} % / {f(p.get('machine_cpu_percent'), 0)} %"])
    return rows


def _service_rows(r: dict) -> list[list[str]]:
    rows = []
    for p in r["phases"]:
        for k in SERVICES:
            s = p["services_ms"].get(k)
            if s is None:
                continue
            name = f"control node: `{k[8:]}`" if k.startswith("control_") else f"`{k}`"
            rows.append([p["name"], name, str(s.get("n", 0)), f(s.get("median"), 0), f(s.get("p90"), 0),
                         f(s.get("p99"), 0), f(s.get("max"), 0), str(s.get("failed", 0))])
    return rows


def _memory_rows(r: dict) -> list[list[str]]:
    rows = [["node up, reference set", f(r["memory_mb_ready"], 0)],
            ["start of the soak (after calibration)", f(r["memory_mb_soak_start"], 0)]]
    for p in r["phases"]:
        mm = p["memory_mb"]
        rows.append([f"phase {p['name']}: start / end / peak", f"{f(mm['start'], 0)} / {f(mm['end'], 0)} / {f(mm['peak'], 0)}"])
    rows.append(["end of the soak", f(r["memory_mb_soak_end"], 0)])
    rows.append(["growth: median of the last 10 s - median of the first 10 s", f"{r['memory_growth_mb']:+.1f}"])
    rows.append(["growth: end - start (single samples)", f"{r['memory_growth_mb_instants']:+.1f}"])
    ms = r.get("memory_series") or []
    half = [(t, v) for t, v in ms if ms and t >= ms[-1][0] / 2]
    if len(half) > 2:
        slope = 60 * np.polyfit([t for t, _ in half], [v for _, v in half], 1)[0]
        rows.append(["fitted slope over the second half of the soak (after the warm-up), MB/min", f"{slope:+.1f}"])
    return rows


def _verdict(r: dict) -> str:
    """The issue #6 targets, each with what was measured and PASS/FAIL as the report's targets say."""
    t = r["targets"]
    bound = 3 * r["calibration"]["processing_ms"]["median"]
    worst_p99 = max(p["latency_ms"].get("p99", 0) for p in r["phases"])
    worst_svc = max(max(p["services_ms"][k].get("max", 0) for k in BOUNDED_SERVICES) for p in r["phases"])
    steady = ", ".join(f"{p['name']} {f(p['latency_ms_steady'].get('p99'), 0)} ms" for p in r["phases"])
    verdict = lambda ok: "PASS" if ok else "FAIL"
    return table(["target (issue #6)", "measured", ""], [
        ["p99 stamp-to-pose latency < 3x median processing time",
         f"worst phase p99 {f(worst_p99, 0)} ms vs {f(bound, 0)} ms (steady state: {steady})",
         verdict(t["p99_latency_under_3x_processing"])],
        ["memory growth < 50 MB over the soak", f"{r['memory_growth_mb']:+.1f} MB (medians of the first and last 10 s; "
         f"{r['memory_growth_mb_instants']:+.1f} MB between single samples)", verdict(t["memory_growth_under_50mb"])],
        ["`~/clear_reference` and parameter calls < 200 ms throughout", f"worst {f(worst_svc, 0)} ms",
         verdict(t["clear_reference_and_parameters_under_200ms"])],
    ])


def ros_section(r: dict) -> str:
    """ros_bench.json: the phases, the service round trips, the node's memory, the targets."""
    cal, m = r["calibration"], r["machine"]
    phases_head = ["phase", "input Hz", "poses/s", "latency ms", "steady p99", "node median (n > 3x proc.)",
                   "frames sent / dropped / other", "correct poses", "CPU node / machine"]
    return render("ros", backend=r.get("backend"), device=r.get("device"), duration=r["duration_s"],
                  cpu_count=m["cpu_count"], cpu=m["cpu"], load=f(m["load_avg_1m"], 1),
                  shared=render("ros_shared") if m["load_avg_1m"] > 1 else "", speed=f(r["object_speed_deg_s"], 0),
                  hold=r["hold_s"], proc=f(cal["processing_ms"]["median"], 0), proc_p90=f(cal["processing_ms"]["p90"], 0),
                  proc_rate=f(cal["processing_rate_hz"], 1), phases=table(phases_head, _phase_rows(r)),
                  services=table(["phase", "call", "n", "median", "p90", "p99", "max", "failed"], _service_rows(r)),
                  memory=table(["when", "RSS MB"], _memory_rows(r)), verdict=_verdict(r), gil=gil_note(r))


def gil_note(r: dict) -> str:
    """A remark, generated only when the data show it: the node's process bound at one core."""
    bound = [p for p in r["phases"] if (p.get("node_cpu_percent") or 0) >= GIL_BOUND_PERCENT]
    if not bound:
        return ""
    return render("gil", parts=", ".join(f"{f(p['node_cpu_percent'], 0)} % in phase {p['name']} "
                                         f"(machine {f(p.get('machine_cpu_percent'), 0)} %)" for p in bound))


def objects_section(d: dict) -> str:
    """ros_bench_objects.json: what N objects on one stream cost against one."""
    runs = sorted(d["runs"], key=lambda r: r["n_objects"])
    base = next((r["summary"]["per_frame_ms"] for r in runs if r["n_objects"] == 1), None)  # one object's cost
    rows = []
    for r in runs:
        s, n = r["summary"], r["n_objects"]
        cost = s["per_frame_ms"]
        rows.append([str(n), ", ".join(o["name"] for o in r["objects"]), f(cost, 0, " ms"),
                     f(cost / base if base else None, 2, "x"), f(cost / (n * base) if base else None, 2),
                     f(s["poses_per_s_per_object"], 1), f"{f(s['latency_ms_median'], 0)} / {f(s['latency_ms_p99'], 0)}",
                     f"{s['within_tolerance']}/{s['poses']}", _left_and_back(s),
                     f(r["phases"][1]["node_cpu_percent"], 0, " %"), f(r["machine"]["load_avg_1m"], 1)])
    top = runs[-1]
    diam = [o["diameter_mm"] / 10 for o in top["objects"]]
    head = ["N", "objects", "per-frame cost", "vs N = 1", "vs N x (N = 1)", "poses/s per object (30 Hz in)",
            "latency median / p99 ms", "correct poses", "the first object away: poses while away / frames to right "
            "again", "CPU node", "load avg"]
    return render("objects", backend=top.get("backend"), duration=top["duration_s"], device=top.get("device"),
                  counts=", ".join(str(r["n_objects"]) for r in runs), cpu_count=top["machine"]["cpu_count"],
                  half_cores=top["machine"]["cpu_count"] // 2, sizes=f"{min(diam):.0f}-{max(diam):.0f}",
                  table=table(head, rows), verdict=_objects_verdict(runs, base))


def _left_and_back(s: dict) -> str:
    """The leave-and-return phase's two numbers ("-" for a report from before the phase was measured)."""
    if "poses_while_away" not in s:
        return "-"
    back = s["frames_to_reacquire"]
    return f"{s['poses_while_away']} / {'not found' if back is None else back}"


def _objects_verdict(runs: list[dict], base: float | None) -> str:
    """The ratio of N objects' per-frame cost to N x one object's, in words, for every N > 1 measured."""
    more = [r for r in runs if r["n_objects"] > 1]
    if not base or not more:
        return ""
    parts = [f"{r['n_objects']} objects {f(r['summary']['per_frame_ms'], 0)} ms = "
             f"{f(r['summary']['per_frame_ms'] / base, 2)}x one object's {f(base, 0)} ms, "
             f"**{f(r['summary']['per_frame_ms'] / (r['n_objects'] * base), 2)} of {r['n_objects']} x one object's**"
             for r in more]
    ratio = more[-1]["summary"]["per_frame_ms"] / (more[-1]["n_objects"] * base)
    how = "objects_sublinear" if ratio < SUBLINEAR else "objects_linear" if ratio <= SUPERLINEAR else "objects_superlinear"
    return render("objects_verdict", parts="; ".join(parts), how=render(how))


def _fault_rows(fl: dict) -> list[list[str]]:
    rows = []
    k = fl.get("kill9_restart")
    if k:
        rows.append(["`kill -9` mid-stream (10 Hz camera), restart", "reference restored from the file; first pose within 2 s of "
                     "the first frame after the new node's services answer",
                     f"services answered {f(k['restart_to_services_up_s'], 1)} s after the kill; first pose "
                     f"{f(k['first_pose_after_first_frame_s'], 2)} s after the first frame ({f(k['kill_to_first_pose_s'], 1)} s after "
                     f"the kill); {k['poses_after_restart']} poses after it, max error {f(k['max_rot_err_deg'], 1)} deg / "
                     f"{f(k['max_trans_err_mm'], 1)} mm"])
    for how, d in (fl.get("damaged_reference") or {}).items():
        rows.append([f"{how.replace('_', ' ')} reference file on start", "clear error in the log and /diagnostics; runs without a reference",
                     "`" + short(d["last_failure"]) + "`; node alive, frames answered with `no_reference`"])
    c = fl.get("corrupt_checkpoint")
    if c:
        rows.append(["corrupt checkpoint (`.safetensors` + `.json` of garbage), backend `auto`",
                     "clear error; falls back to classic and says so in /diagnostics",
                     f"backend `{c['backend']}`; status: `{short(c['diagnostics_message'])}`; a switch to `one2any` "
                     f"is refused: `{short(c['switch_to_one2any_rejected'])}`"])
    return rows + _stream_fault_rows(fl)


def _stream_fault_rows(fl: dict) -> list[list[str]]:
    rows = []
    s = fl.get("camera_stops")
    if s:
        rows.append(["the camera stops publishing", "input_age_ms grows; no old pose published as new",
                     f"input_age_ms {f(s['input_age_ms_while_streaming'], 0)} while streaming, then "
                     + ", ".join(f(a, 0) for a in s["input_age_ms_after_stop"])
                     + f" (one per second); {s['poses_after_stop']} poses after the stop; status `{s['status']}`"])
    w = fl.get("wire_bad_input")
    if w:
        rows.append(["bad input over the wire (beyond test_ros_node.py)", "no pose, a reason in /diagnostics",
                     "; ".join(f"{kind}: `{v.split(':')[0]}`" for kind, v in w.items())])
    g = fl.get("garbage_burst")
    if g:
        rows.append([f"{g['frames']} random garbage frames, then a good one", "node keeps running; good frame gets a right pose",
                     f"alive; reasons seen: {', '.join('`%s`' % x for x in g['reasons_seen'])}; no `internal_error`"])
    return rows


def faults_section(fl: dict) -> str:
    """faults.json (test/test_faults.py): each fault, what is expected, what was measured."""
    meas = fl.get("measured", {})
    return render("faults", timestamp=meas.get("timestamp", ""), cpu_count=meas.get("cpu_count", "?"),
                  load=f(meas.get("load_avg_1m"), 1), table=table(["fault", "expected", "measured"], _fault_rows(fl)))
