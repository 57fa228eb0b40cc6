"""Compare estimator settings for the global search: time per stage and validation accuracy, side by side.

    .venv/bin/python tools/compare_search_settings.py --variant before='{"search": {"lookup_stages": 0, "icp_keep": 50}}' \
        --variant after='{}' [--backend auto|classic] [--dataset outputs/datasets/val30 [outputs/datasets/val30s1]] \
        [--repeats 3] [--out docs/data/global_search_speed.json]

Each variant is a JSON object of ``EstimatorSettings`` fields over today's defaults (``search``/``verifier`` nested);
``{}`` is today's defaults. Timing: the bundled sample of ``one2any bench`` (640x480, reference frame 0, every other
frame a global search, ``track=False``), the variants interleaved frame by frame so that load on a shared machine
hits all of them alike; medians per stage. Accuracy: ``one2any eval``'s protocol (evaluate.evaluate_dataset) on
each dataset, ADD(-S)@0.1d overall and per rotation bin. Run accuracy on VALIDATION objects only: this is a tuning
tool, and the test split stays out of tuning.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from one2any_ros.core.backends import SearchSettings, create_backend  # noqa: E402
from one2any_ros.core.estimator import PoseEstimator
from one2any_ros.core.estimator_settings import EstimatorSettings
from one2any_ros.core.protocol import STAGES  # noqa: E402
from one2any_ros.core.verify import VerifierWeights  # noqa: E402


def settings_from(overrides: dict) -> EstimatorSettings:
    """Today's EstimatorSettings with ``overrides`` applied (nested ``search`` and ``verifier`` dicts)."""
    over = dict(overrides)
    search = dataclasses.replace(SearchSettings(), **over.pop("search", {}))
    verifier = dataclasses.replace(VerifierWeights(), **over.pop("verifier", {}))
    return dataclasses.replace(EstimatorSettings(), search=search, verifier=verifier, **over)


def time_stages(variants: dict[str, EstimatorSettings], backend: str, repeats: int) -> dict:
    """Median ms per stage of the global search for each variant, interleaved on the bench sample."""
    from tqdm import tqdm

    from one2any_ros.data.sample import load_sample_sequence
    from one2any_ros.core.frame import make_view

    frames = load_sample_sequence()["frames"]
    shared = create_backend(backend)
    f0 = frames[0]
    ests = {}
    for name, st in variants.items():
        ests[name] = PoseEstimator(shared, settings=st)
        ests[name].set_reference(make_view(f0["rgb"], f0["depth"], f0["mask"], f0["K"], T_cam_obj=f0["T_cam_obj"]))
    views = [make_view(f["rgb"], f["depth"], f["mask"], f["K"]) for f in frames[1:]]
    for est in ests.values():  # warm-up (lazy imports, allocations)
        est.estimate(views[0], track=False)
    rows: dict[str, list[dict]] = {n: [] for n in ests}
    for _ in tqdm(range(repeats), desc="timing", unit="pass"):
        for v in views:
            for name, est in ests.items():
                rows[name].append(est.estimate(v, track=False).timings_ms)
    out = {}
    for name, rs in rows.items():
        keys = [s for s in STAGES if any(s in r for r in rs)] + sorted({k for r in rs for k in r} - set(STAGES))
        out[name] = {k: float(np.median([r[k] for r in rs if k in r])) for k in keys}
    return {"backend": shared.name, "frames": len(views), "repeats": repeats, "median_ms": out}


def accuracy(variants: dict[str, EstimatorSettings], backend: str, dataset: Path) -> dict:
    """ADD(-S)@0.1d overall and per rotation bin of each variant on one BOP dataset."""
    from one2any_ros.evaluation import evaluate_dataset

    out = {}
    for name, st in variants.items():
        with tempfile.TemporaryDirectory() as tmp:
            rep = evaluate_dataset(dataset, backend=backend, out_dir=tmp, progress=True, plot=False,
                                   estimator_kwargs={"settings": st})
        out[name] = {"n": rep["n_queries"], "add_s_01d_recall": rep["add_s_01d_recall"],
                     "median_latency_ms": rep.get("median_latency_ms"),
                     "by_rotation_bin": {k: {"n": v["n"], "add_s_01d_recall": v["add_s_01d_recall"]}
                                         for k, v in rep["by_rotation_bin"].items() if v["n"]}}
    return out


def machine() -> dict:
    """What the numbers were measured on: cores, load, commit (and whether the package had uncommitted changes)."""
    import os
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return {"cpu_count": os.cpu_count(), "load_avg_1m": os.getloadavg()[0], "git_commit": git("rev-parse", "--short", "HEAD"),
            "uncommitted": git("status", "--porcelain", "--", "one2any_ros").splitlines(),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", action="append", required=True, metavar="NAME=JSON",
                   help="a named set of EstimatorSettings overrides over today's defaults ('{}' = the defaults)")
    p.add_argument("--backend", default="auto")
    p.add_argument("--dataset", nargs="*", type=Path, default=[], help="validation BOP datasets for accuracy")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "outputs" / "global_search_speed.json")
    a = p.parse_args(argv)
    raw = dict(v.split("=", 1) for v in a.variant)
    variants = {name: settings_from(json.loads(js)) for name, js in raw.items()}
    report = {"machine": machine(), "variants": {n: json.loads(js) for n, js in raw.items()},
              "timing": time_stages(variants, a.backend, a.repeats), "accuracy": {}}
    for ds in a.dataset:
        report["accuracy"][ds.name] = accuracy(variants, a.backend, ds)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=1))
    t = report["timing"]["median_ms"]
    print(f"{'stage':<12}" + "".join(f"{n:>12}" for n in t))
    for s in next(iter(t.values())):
        print(f"{s:<12}" + "".join(f"{t[n].get(s, float('nan')):>12.1f}" for n in t))
    for ds, acc in report["accuracy"].items():
        for n, r in acc.items():
            bins = " ".join(f"{k} {v['add_s_01d_recall']:.3f}" for k, v in r["by_rotation_bin"].items())
            print(f"{ds} {n}: ADD(-S) {r['add_s_01d_recall']:.3f} ({r['n']} queries; {bins})")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
