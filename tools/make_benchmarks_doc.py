#!/usr/bin/env python3
"""Regenerate docs/benchmarks.md and docs/img/*.png from the measurements kept in docs/data/*.json.

    .venv/bin/python tools/make_benchmarks_doc.py                       # from docs/data/; measures what is missing
    .venv/bin/python tools/make_benchmarks_doc.py --refresh ros faults  # measure those again first
    .venv/bin/python tools/make_benchmarks_doc.py --refresh all         # everything (~18 min on 2 cores)
    .venv/bin/python tools/make_benchmarks_doc.py --no-run              # never measure; fail if an input is missing

Inputs (all in docs/data/, committed so the page can be rebuilt from the repository alone), and what
produces each one when it is missing or named in --refresh:

- report_B_test40.json for B = classic, icp (and one2any when a checkpoint loads): `one2any eval --dataset DS
  --backend B --out outputs/eval/B_test40` on DS = `one2any render --out DS --objects test --scenes 40 --frames 8
  --max-rotation 120` (issue #4's held-out set)
- bench_B.json for B = classic (and one2any when a checkpoint loads): `one2any bench --backend B --out outputs/bench`
- ros_bench.json: `one2any bench --ros --backend B --duration 60 --out outputs/bench`, B = what `auto` runs (run here as
  `python -m one2any_ros bench --ros ...`, the same command without the console script)
- ros_bench_objects.json: `one2any bench --ros --objects N --backend classic --duration 25 --out outputs/bench` for
  N = 1, 2, 4, the three reports in one file
- faults.json: `ONE2ANY_FAULTS_JSON=... pytest test/test_faults.py`
- global_search_speed.json, global_search_speed_classic.json: `tools/compare_search_settings.py --variant
  before='{"search": {"lookup_stages": 0, "icp_keep": 50}}' --variant after='{}' [--backend classic] --dataset outputs/datasets/val30
  outputs/datasets/val30s1 --out ...` (the validation sets as `one2any render --objects val --scenes 30 --frames 8
  --max-rotation 120 --seed 0|1` makes them; not measured by this script)
- open3d_comparison.json: `tools/compare_open3d.py` (Open3D optional; not measured by this script)
- validation_suite.json: {"commit", "summary": `tools/validation_suite.py summary RUN`, "segmenter": `compare RUN RUN
  --masks`} of one `run` of the suite with the shipped defaults (~10 min on 2 cores; not measured by this script)
- diagnose_val30.json (+ docs/img/diagnose_val30.png): `tools/diagnose_pool.py --dataset outputs/datasets/val30` with
  the bundled model, on VALIDATION objects (rendered as `one2any_ros.training.promote` renders them when missing)

The parts: benchmarks_measure.py (running what is missing), benchmarks_sections.py and benchmarks_ros_sections.py
(one report -> one section, verdicts computed from its numbers), benchmarks_plots.py (docs/img/*.png),
benchmarks_text.py and benchmarks_template.md (the fixed prose, with placeholders). Rendering from docs/data/
alone (--no-run) needs no measurement: test/test_benchmarks_doc.py renders a small fake set.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks_measure import (BENCH_BACKENDS, DATA, DEFAULT_DATASET, EVAL_BACKENDS, IMG, REFRESHABLE,  # noqa: E402
                                TAG, Plan, measure_missing)
from benchmarks_plots import plot_accuracy, plot_ros, plot_stages  # noqa: E402
from benchmarks_ros_sections import faults_section, objects_section, ros_section  # noqa: E402
from benchmarks_sections import (accuracy_section, appearance_section, diagnose_section, open3d_section,  # noqa: E402
                                 search_speed_section, stages_section, validation_section)
from benchmarks_text import f, render  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"


def parse_args(argv: list[str] | None = None) -> Plan:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--refresh", nargs="*", default=[], choices=REFRESHABLE,
                   help="measure these again even when docs/data/ has them")
    p.add_argument("--no-run", action="store_true", help="never measure: fail when an input is missing")
    p.add_argument("--dataset", default=None,
                   help=f"BOP dataset for eval (default: the one in the reports, else {DEFAULT_DATASET})")
    p.add_argument("--duration", type=float, default=60.0, help="seconds per phase of the ROS benchmark")
    p.add_argument("--checkpoint", default=None,
                   help="measure the one2any rows with this checkpoint (e.g. the CPU run checkpoints/train_cpu/checkpoint"
                        ".safetensors) instead of the bundled one")
    a = p.parse_args(argv)
    return Plan(refresh=a.refresh, no_run=a.no_run, dataset=a.dataset, duration=a.duration, checkpoint=a.checkpoint)


def _load(name: str) -> dict | None:
    path = DATA / name
    return json.loads(path.read_text()) if path.exists() else None


def load_inputs() -> dict:
    """Every report the page shows, from docs/data/ (None where an optional one is missing)."""
    return {"reports": {b: r for b in EVAL_BACKENDS if (r := _load(f"report_{b}_{TAG}.json"))},
            "benches": {b: r for b in BENCH_BACKENDS if (r := _load(f"bench_{b}.json"))},
            **{k: _load(f"{k}.json") for k in ("ros_bench", "ros_bench_objects", "faults", "appearance",
                                               "global_search_speed", "global_search_speed_classic",
                                               "open3d_comparison", "validation_suite")},
            "diagnose": _load("diagnose_val30.json")}


def draw_plots(inputs: dict, img: Path = IMG) -> None:
    plot_accuracy(inputs["reports"], img / "accuracy_by_rotation.png")
    plot_stages(inputs["benches"]["classic"], img / "latency_stages.png")
    plot_ros(inputs["ros_bench"], img / "ros_soak.png")


def render_doc(inputs: dict) -> str:
    """docs/benchmarks.md from the reports: the template's page with every section filled in."""
    m = inputs["ros_bench"]["machine"]
    speed = inputs["global_search_speed"]
    return render(
        "doc", cpu_count=m["cpu_count"], cpu=m["cpu"], memory_gb=f(m["memory_gb"], 0), python=m["python"],
        commit=m.get("git_commit") or "?", timestamp=m.get("timestamp", ""),
        accuracy=accuracy_section(inputs["reports"]), diagnose=diagnose_section(inputs["diagnose"]),
        validation=validation_section(inputs["validation_suite"]) if inputs["validation_suite"] else "",
        appearance=appearance_section(inputs["appearance"]) if inputs["appearance"] else "",
        stages="".join(stages_section(b) for b in inputs["benches"].values()),
        search_speed=search_speed_section(speed, inputs["global_search_speed_classic"]) if speed else "",
        open3d=open3d_section(inputs["open3d_comparison"]) if inputs["open3d_comparison"] else "",
        ros=ros_section(inputs["ros_bench"]), objects=objects_section(inputs["ros_bench_objects"]),
        faults=faults_section(inputs["faults"]))


def main(argv: list[str] | None = None) -> int:
    measure_missing(parse_args(argv))
    inputs = load_inputs()
    draw_plots(inputs)
    DOC.write_text(render_doc(inputs))
    print(f"wrote {DOC.relative_to(ROOT)} and {', '.join(str(p.relative_to(ROOT)) for p in sorted(IMG.glob('*.png')))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
