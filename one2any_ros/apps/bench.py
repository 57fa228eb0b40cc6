"""Latency per stage on 640x480 input: the global search and the tracking mode, medians and p90s."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from one2any_ros.core.errors import One2AnyError
from one2any_ros.core.estimator import PoseEstimator
from one2any_ros.core.files import write_atomic
from one2any_ros.core.protocol import STAGES
from one2any_ros.core.frame import make_view


def _raw(frame: dict) -> dict:
    """The frame as a camera driver would hand it over: uint16 millimetre depth, uint8 mask."""
    return dict(rgb=frame["rgb"], depth=np.rint(frame["depth"] * 1000).astype(np.uint16),
                mask=frame["mask"].astype(np.uint8) * 255, K=frame["K"])


def _run(est: PoseEstimator, raws: list[dict], *, track: bool, repeats: int) -> list[dict]:
    rows = []
    for _ in range(repeats):
        est.last_T_C = None
        for raw in raws:
            t0 = time.perf_counter()
            view = make_view(raw["rgb"], raw["depth"], raw["mask"], raw["K"])
            dec = 1000 * (time.perf_counter() - t0)
            try:
                res = est.estimate(view, track=track)
                t = dict(res.timings_ms)
            except One2AnyError:
                t = {"total": 1000 * (time.perf_counter() - t0) - dec}
            t["decode"] = dec
            t["total"] = t.get("total", 0.0) + dec
            rows.append(t)
    return rows


def _stats(rows: list[dict]) -> dict:
    out = {}
    for s in STAGES:
        vals = [r[s] for r in rows if s in r]
        if vals:
            out[s] = {"median_ms": float(np.median(vals)), "p90_ms": float(np.percentile(vals, 90)), "n": len(vals)}
    return out


def run_bench(backend: str = "auto", *, repeats: int = 2, out_dir: Path | None = None, threads: int | None = None,
              device: str = "auto", checkpoint: str | None = None) -> dict:
    """Benchmark on the bundled sample (reference = frame 0, queries = the rest)."""
    from one2any_ros.data.sample import load_sample_sequence
    from one2any_ros.ros_tools.bench.common import machine  # the commit and load a report was measured on

    if threads:
        try:
            import torch

            torch.set_num_threads(threads)
        except ImportError:
            pass
    frames = load_sample_sequence()["frames"]
    est = PoseEstimator(backend, device=device, checkpoint=checkpoint)
    ref_raw = _raw(frames[0])
    t0 = time.perf_counter()
    est.set_reference(make_view(ref_raw["rgb"], ref_raw["depth"], ref_raw["mask"], ref_raw["K"], T_cam_obj=frames[0]["T_cam_obj"]))
    encode_ms = 1000 * (time.perf_counter() - t0)
    raws = [_raw(f) for f in frames[1:]]
    _run(est, raws[:1], track=False, repeats=1)  # warm-up (allocations, lazy imports)
    report = {"backend": est.backend.name, "model": est.backend.describe(), "image_size": list(frames[0]["depth"].shape[::-1]),
              "reference_encode_ms": encode_ms, "n_queries": len(raws), "repeats": repeats, "machine": machine()}
    for mode, track in (("global", False), ("tracking", True)):
        st = _stats(_run(est, raws, track=track, repeats=repeats))
        st["fps"] = 1000.0 / st["total"]["median_ms"]
        report[mode] = st
    if out_dir:
        write_atomic(out_dir / f"bench_{report['backend']}.json", json.dumps(report, indent=2))
    return report


def stage_rows(report: dict) -> list[tuple[str, dict | None, dict | None]]:
    """(stage, its global-search stats, its tracking stats) of every stage that ran, in pipeline order: the rows
    of the printed table and of docs/benchmarks.md (tools/benchmarks_sections.py) alike."""
    rows = []
    for s in STAGES:
        g, t = report["global"].get(s), report["tracking"].get(s)
        if g or t:
            rows.append((s, g, t))
    return rows


def format_bench(report: dict) -> str:
    """The report as the printed table: median and p90 ms per stage, global search beside tracking, and fps."""
    lines = [f"backend {report['backend']}  input {report['image_size'][0]}x{report['image_size'][1]}  "
             f"reference encode {report['reference_encode_ms']:.1f} ms (once)",
             f"{'stage':<12}{'global med':>12}{'p90':>9}{'track med':>12}{'p90':>9}   (ms)"]
    for s, g, t in stage_rows(report):
        f = lambda x, k: f"{x[k]:.1f}" if x else "-"
        lines.append(f"{s:<12}{f(g, 'median_ms'):>12}{f(g, 'p90_ms'):>9}{f(t, 'median_ms'):>12}{f(t, 'p90_ms'):>9}")
    lines.append(f"{'fps':<12}{report['global']['fps']:>12.1f}{'':>9}{report['tracking']['fps']:>12.1f}")
    return "\n".join(lines)
