"""The terminal summaries of the bench's two reports (``ros_bench.json``, ``ros_bench_objects_<N>.json``), as
``one2any bench --ros`` prints them; docs/benchmarks.md renders the same reports as tables (tools/)."""
from __future__ import annotations

from one2any_ros.ros_tools.bench.objects import OBJECTS_PREFIX


def format_report(r: dict) -> str:
    """The soak report as a table: one row per phase, then the memory growth and the targets."""
    lines = [f"ROS node soak/overload: backend {r.get('backend')} on {r.get('device')}, "
             f"{r['machine']['cpu_count']} CPU cores; processing (one frame at a time) median "
             f"{r['calibration']['processing_ms']['median']:.0f} ms",
             f"{'phase':<22}{'in Hz':>7}{'poses/s':>9}{'lat med':>9}{'p99':>7}{'max':>7}{'dropped':>9}{'other':>7}"
             f"{'clear max':>11}{'param max':>11}{'RSS MB':>13}"]
    for p in r["phases"]:
        s = p["services_ms"]
        lines.append(f"{p['name']:<22}{p['camera'].get('rate_hz', 0):>7.1f}{p['poses_per_s']:>9.1f}"
                     f"{p['latency_ms'].get('median', 0):>9.0f}{p['latency_ms'].get('p99', 0):>7.0f}"
                     f"{p['latency_ms'].get('max', 0):>7.0f}{p['dropped_frames']:>9d}"
                     f"{p['frames_without_pose_otherwise']:>7d}{s['clear_reference'].get('max', 0):>11.0f}"
                     f"{max(s['get_parameters'].get('max', 0), s['set_parameters'].get('max', 0)):>11.0f}"
                     f"{p['memory_mb']['start']:>6.0f}->{p['memory_mb']['end']:<6.0f}")
    t = r["targets"]
    lines.append(f"memory growth over the soak: {r['memory_growth_mb']:+.1f} MB; targets: "
                 + ", ".join(f"{k} {'PASS' if v else 'FAIL'}" for k, v in t.items()))
    return "\n".join(lines)



def format_objects_report(r: dict) -> str:
    """The several-objects report: the summary, then one line per object."""
    s = r["summary"]
    mw = r.get("node_params", {}).get("max_image_width")
    camera = f"{r.get('size', '640x480')}" + ("" if mw is None else f" (max_image_width {mw})")
    lines = [f"ROS node, {r['n_objects']} object(s) on one {camera} stream, masks: {r.get('masks', 'every frame')}: "
             f"backend {r.get('backend')} on {r.get('device')}, {r['machine']['cpu_count']} CPU cores",
             f"per-frame cost (frames one at a time): median {s['per_frame_ms'] or float('nan'):.0f} ms, p90 "
             f"{s['per_frame_ms_p90'] or float('nan'):.0f} ms",
             f"{r['phases'][1]['name']} in: {s['poses_per_s_per_object']:.1f} poses/s per object "
             f"({s['frames_per_s']:.1f} frames/s with every pose), latency median {s['latency_ms_median'] or 0:.0f} ms, "
             f"p99 {s['latency_ms_p99'] or 0:.0f} ms; within {s['tolerance'][0]:.0f} deg / {s['tolerance'][1]:.0f} mm: "
             f"{s['within_tolerance']}/{s['poses']}"]
    for oid, o in r["phases"][1]["objects"].items():
        lines.append(f"  {OBJECTS_PREFIX}{oid}: {o['poses_per_s']:.1f} poses/s, published wrong (ADD > 0.1 d) "
                     f"{o.get('published_wrong', 0)}/{o['poses']}, latency median "
                     f"{o['latency_ms'].get('median', float('nan')):.0f} ms, median error "
                     f"{o['rot_err_deg'].get('median', float('nan')):.1f} deg / {o['trans_err_mm'].get('median', float('nan')):.1f} mm")
    if len(r["phases"]) > 2:
        f = r["phases"][2]["first_object"]
        lines.append(f"{OBJECTS_PREFIX}{r['objects'][0]['object_id']} left the view for {f['away_frames']} frames: "
                     f"poses published while away {f['poses_while_away']}; right again "
                     + ("not within the phase" if f["frames_to_reacquire"] is None else
                        f"{f['frames_to_reacquire']} frame(s) after its return"))
    return "\n".join(lines)
