"""The project's global search against Open3D's FPFH + RANSAC + ICP, on the same pairs, in one run: time and
accuracy side by side, as a user weighing the two would measure them (issue 18, "1. Speed").

    # Open3D is optional and never part of the default install:
    .venv/bin/python -m pip install open3d   # or open3d-cpu; on Linux it needs libusb-1.0 (apt install libusb-1.0-0)
    .venv/bin/one2any render --objects val --scenes 12 --frames 8 --max-rotation 120 --out outputs/o3d/val
    nice -n 10 .venv/bin/python tools/compare_open3d.py --dataset outputs/o3d/val [--backend auto [classic]]
        [--cores N] [--max-pairs N] [--voxel-fraction 0.05] [--icp point-to-plane]
        [--ransac 100000:0.999 [20000:1]] [--out outputs/o3d/open3d_comparison.json]

Pairs: exactly those of ``one2any eval`` (``evaluate.plan_scene``: per scene and object the first image with
visib_fract >= 0.5 is the reference, given its ground-truth pose; every other image is a query with its mask_visib),
``--max-pairs`` spread like ``eval --max-queries``. Both methods see the same View of each image (``make_view``) and
run one after the other on every pair, so a change in the machine's load hits both alike.

- The project: ``PoseEstimator(backend).estimate(view, track=False)``, the global search ``one2any bench`` times
  (``--backend auto`` as there: the learned backend when its checkpoint loads, else classic; several backends
  give several rows).
- Open3D, the registration tutorial's recipe scaled to the object: both masked clouds from the project's own
  back-projection (``camera.backproject`` of ``camera.object_depth_mask``), voxel = ``--voxel-fraction`` x the
  reference's diameter (``Reference.diameter``: measured, no model needed), normals (radius 2 voxels, oriented
  towards the camera), FPFH (radius 5 voxels), ``registration_ransac_based_on_feature_matching`` (mutual filter,
  3 points, edge-length 0.9 and distance 1.5 voxel checkers, 100 000 iterations / confidence 0.999), then ICP
  (0.4 voxel, point-to-plane) from the RANSAC pose. Open3D ends RANSAC early once the best fitness so far makes the
  confidence reached: with one partial view against another that is after tens of iterations, so ``--ransac``
  adds rows with other criteria (``20000:1``: 20 000 iterations, about the project's time per pair on 2 cores).
  Open3D's pose of the reference camera in the query camera times the reference's ground-truth pose is the
  object's pose, as the project's output is with the same reference pose given.

Timing: ``time.perf_counter`` around the estimate alone (``evaluate._run_query``, the eval's own per-query function,
runs and scores both); the once-per-reference work (``set_reference``: the project's reference encoding, Open3D's
reference cloud, normals and FPFH) is excluded for both and reported apart. A warm-up pair is run and discarded.
Threads: the process is pinned to ``--cores`` cores (default: all, as a user runs it) and the thread pools are set to
that many before the libraries load (OMP/OpenBLAS/MKL, ``open3d.utility.set_max_threads``); the project's KD-trees
use every core they are allowed; torch keeps the threads the learned backend picks itself (half the cores), as in
``one2any bench`` and the node.

Accuracy: the eval's metrics (``evaluate.summarize``): ADD(-S) recall at 0.1 d (ADD for asymmetric objects, ADD-S for
symmetric ones), by rotation bin between reference and query, median rotation / translation error; a failure is a
miss. Writes the JSON (``--out``) with machine information and every pair's numbers; prints the table. Exit 2 when
``import open3d`` fails.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

INSTALL_HINT = ("Open3D is an optional dependency of this tool only (not in the default install). Install it into\n"
                "the environment that runs it:  .venv/bin/python -m pip install open3d   (or open3d-cpu)\n"
                "On Linux its wheel also needs libusb-1.0 (apt install libusb-1.0-0).")
PAIR_FIELDS = ("latency_ms", "hit", "err_m", "rot_err_deg", "trans_err_m", "reason")  # each method's, per pair
RANSAC_TUTORIAL = (100_000, 0.999)  # Open3D's global registration tutorial
FAMILY_LABELS = {"shape_asymmetric": "shape-asym", "texture_only": "tex-only", "symmetric": "symmetric"}


@dataclass(frozen=True)
class Open3DSettings:
    """The registration tutorial's parameters in units of the voxel, the voxel a fraction of the object's diameter
    (the tutorial's 5 cm voxel is for metre-sized scenes; these objects are 10-20 cm)."""

    voxel_fraction: float = 0.05
    normal_radius: float = 2.0  # voxels
    normal_max_nn: int = 30
    feature_radius: float = 5.0  # voxels
    feature_max_nn: int = 100
    ransac_distance: float = 1.5  # voxels
    ransac_n: int = 3
    edge_length: float = 0.9
    max_iteration: int = 100_000
    confidence: float = 0.999
    icp_distance: float = 0.4  # voxels
    icp: str = "point-to-plane"  # or "point-to-point"
    seed: int = 0


# --- set-up: arguments, threads, the optional import -----------------------------------------------------

def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (kept free of heavy imports so ``--help`` and the missing-Open3D path stay instant)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="outputs/o3d/val", help="BOP root with ground truth (one2any render --out)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--backend", nargs="+", default=["auto"], choices=("auto", "one2any", "classic", "icp"),
                    help="the project's backend(s), each a row (auto, as one2any bench: one2any when a checkpoint "
                         "loads, else classic)")
    ap.add_argument("--max-pairs", type=int, default=None, help="keep this many pairs, spread as eval --max-queries")
    ap.add_argument("--cores", type=int, default=None, help="pin to this many cores, as many threads (default: all)")
    ap.add_argument("--voxel-fraction", type=float, default=Open3DSettings.voxel_fraction,
                    help="Open3D voxel size as a fraction of the reference's diameter")
    ap.add_argument("--ransac", nargs="+", type=ransac_spec, default=[RANSAC_TUTORIAL], metavar="ITER:CONF",
                    help="Open3D RANSAC criteria, each a row (default: the tutorial's 100000:0.999; Open3D stops "
                         "early once the best fitness so far makes CONF reached, so 1 = all ITER iterations)")
    ap.add_argument("--icp", default=Open3DSettings.icp, choices=("point-to-plane", "point-to-point"),
                    help="Open3D's refinement after RANSAC")
    ap.add_argument("--out", default="outputs/o3d/open3d_comparison.json")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    if a.max_pairs is not None and a.max_pairs < 1:
        ap.error("--max-pairs must be >= 1")
    if a.cores is not None and a.cores < 1:
        ap.error("--cores must be >= 1")
    if not 0 < a.voxel_fraction < 1:
        ap.error("--voxel-fraction must be in (0, 1)")
    return a


def ransac_spec(text: str) -> tuple[int, float]:
    """``ITERATIONS:CONFIDENCE`` -> (iterations, confidence), checked (an argparse type)."""
    try:
        it, conf = text.split(":")
        spec = int(it), float(conf)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ITERATIONS:CONFIDENCE, e.g. 100000:0.999, got {text!r}") from None
    if spec[0] < 1 or not 0 < spec[1] <= 1:
        raise argparse.ArgumentTypeError(f"need ITERATIONS >= 1 and 0 < CONFIDENCE <= 1, got {text!r}")
    return spec


def limit_threads(cores: int | None) -> list[int]:
    """Pin the process to the first ``cores`` allowed cores and size every thread pool to match, so both methods
    get the same cores. Environment variables only take effect before numpy, torch and open3d load: call first."""
    allowed = sorted(os.sched_getaffinity(0))
    use = allowed[: cores or len(allowed)]
    os.sched_setaffinity(0, use)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(len(use))
    return use


def import_open3d():
    """Open3D, or None (with the reason on stderr): it is optional, so a missing one is a message, not a trace."""
    try:
        import open3d
    except (ImportError, OSError) as e:  # OSError: a wheel whose shared libraries are missing
        print(f"compare_open3d: cannot import open3d ({e}).\n{INSTALL_HINT}", file=sys.stderr)
        return None
    return open3d


# --- Open3D as an estimator (the interface evaluate._run_query drives) --------------------------------------

@dataclass
class Open3DResult:
    """What ``evaluate._run_query`` reads from an estimate."""

    T_camera_object: Any
    confidence: float
    inliers: int
    timings_ms: dict = field(default_factory=dict)
    backend: str = "open3d"


class Open3DEstimator:
    """FPFH + RANSAC + ICP behind ``set_reference(view)`` / ``estimate(view, track=False)``, so the eval's own query
    function runs and scores it exactly as it does the project's estimator."""

    def __init__(self, o3d, settings: Open3DSettings) -> None:
        self.o3d = o3d
        self.reg = o3d.pipelines.registration
        self.s = settings
        self.voxel = 0.0
        self.ref_down = self.ref_fpfh = self.T_refcam_obj = None

    def _features(self, view):
        """The view's masked cloud (the project's back-projection and depth cleaning), downsampled, with normals
        facing the camera (one-sided surfaces: a consistent sign keeps FPFH comparable) and FPFH."""
        from one2any_ros.core import camera

        pts, _ = camera.backproject(view.depth, view.K, camera.object_depth_mask(view.depth, view.K, view.mask))
        pcd = self.o3d.geometry.PointCloud(self.o3d.utility.Vector3dVector(pts)).voxel_down_sample(self.voxel)
        kd = self.o3d.geometry.KDTreeSearchParamHybrid
        pcd.estimate_normals(kd(radius=self.s.normal_radius * self.voxel, max_nn=self.s.normal_max_nn))
        pcd.orient_normals_towards_camera_location([0.0, 0.0, 0.0])
        fpfh = self.reg.compute_fpfh_feature(pcd, kd(radius=self.s.feature_radius * self.voxel,
                                                     max_nn=self.s.feature_max_nn))
        return pcd, fpfh

    def set_reference(self, view):
        """Once per reference (excluded from the per-pair time, like the project's): the voxel from the reference's
        measured diameter, its cloud and FPFH."""
        from one2any_ros.core.reference import make_reference

        ref = make_reference(view)
        self.voxel = self.s.voxel_fraction * ref.diameter
        self.ref_down, self.ref_fpfh = self._features(view)
        self.T_refcam_obj = view.T_cam_obj
        return ref

    def estimate(self, view, *, track: bool = False) -> Open3DResult:
        """Register the reference cloud onto the query's: global RANSAC on FPFH matches, then ICP refinement."""
        import numpy as np

        t0 = time.perf_counter()
        q_down, q_fpfh = self._features(view)
        d = self.s.ransac_distance * self.voxel
        checkers = [self.reg.CorrespondenceCheckerBasedOnEdgeLength(self.s.edge_length),
                    self.reg.CorrespondenceCheckerBasedOnDistance(d)]
        coarse = self.reg.registration_ransac_based_on_feature_matching(
            self.ref_down, q_down, self.ref_fpfh, q_fpfh, True, d,
            self.reg.TransformationEstimationPointToPoint(False), self.s.ransac_n, checkers,
            self.reg.RANSACConvergenceCriteria(self.s.max_iteration, self.s.confidence))
        t1 = time.perf_counter()
        method = (self.reg.TransformationEstimationPointToPlane() if self.s.icp == "point-to-plane"
                  else self.reg.TransformationEstimationPointToPoint())
        fine = self.reg.registration_icp(self.ref_down, q_down, self.s.icp_distance * self.voxel,
                                         coarse.transformation, method)
        t2 = time.perf_counter()
        T_q_ref = np.asarray(fine.transformation, np.float64)  # reference camera -> query camera
        return Open3DResult(T_camera_object=T_q_ref @ self.T_refcam_obj, confidence=float(fine.fitness),
                            inliers=len(fine.correspondence_set),
                            timings_ms={"fpfh_ransac": 1000 * (t1 - t0), "icp": 1000 * (t2 - t1),
                                        "total": 1000 * (t2 - t0)})


class StageLog:
    """An estimator that keeps every successful estimate's per-stage timings (the eval's record keeps only the
    total), to show where each method spends its time."""

    def __init__(self, est) -> None:
        self.est = est
        self.log: list[dict] = []

    def set_reference(self, view):
        return self.est.set_reference(view)

    def estimate(self, view, *, track: bool = False):
        res = self.est.estimate(view, track=track)
        self.log.append(dict(getattr(res, "timings_ms", None) or {}))
        return res

    def stage_medians(self) -> dict[str, float]:
        """Median ms per stage over the estimates that ran it."""
        import numpy as np

        stages = dict.fromkeys(k for t in self.log for k in t)
        return {k: float(np.median([t[k] for t in self.log if k in t])) for k in stages}


# --- the run ---------------------------------------------------------------------------------------------

def load_plans(dataset: Path, split: str, max_pairs: int | None) -> list:
    """The eval's pairs (evaluate.plan_scene), thinned like ``eval --max-queries``."""
    from one2any_ros.data import bop
    from one2any_ros.evaluation import plan_scene, subsample_plans

    plans = [p for sid in bop.list_scenes(dataset, split) for p in plan_scene(bop.load_scene(dataset, split, sid))[0]]
    return subsample_plans(plans, max_pairs)


def set_references(estimators: dict, ref_img: dict) -> dict[str, dict]:
    """Give every method the same reference view (with its ground-truth pose); per method the time it took, or the
    failure reason the eval would record (then its queries are misses)."""
    from one2any_ros.core.errors import One2AnyError
    from one2any_ros.core.frame import make_view

    try:
        view = make_view(ref_img["rgb"], ref_img["depth"], ref_img["mask"], ref_img["K"],
                         T_cam_obj=ref_img["T_cam_obj"])
    except One2AnyError as e:
        return {n: {"ms": None, "failure": f"reference_{getattr(e, 'reason', 'error')}"} for n in estimators}
    out = {}
    for name, est in estimators.items():
        t0 = time.perf_counter()
        try:
            est.set_reference(view)
            out[name] = {"ms": 1000 * (time.perf_counter() - t0), "failure": None}
        except One2AnyError as e:
            out[name] = {"ms": None, "failure": f"reference_{getattr(e, 'reason', 'error')}"}
    return out


def run_pairs(estimators: dict, plans: list, dataset: Path, progress: bool) -> tuple[dict, list, list, dict]:
    """Every pair through every method in turn (evaluate._run_query: same view, same timing, same scoring).
    Returns (records per method, per-pair rows, per-reference rows, the eval models)."""
    import numpy as np
    from tqdm import tqdm

    from one2any_ros.data import bop
    from one2any_ros.evaluation import load_eval_model, run_query

    info = {int(k): v for k, v in bop.load_models_info(dataset).items()}
    models, records, pairs, refs = {}, {n: [] for n in estimators}, [], []
    bar = tqdm(total=sum(len(p.queries) for p in plans), desc="pairs", unit="pair", disable=not progress,
               dynamic_ncols=True)
    for plan in plans:
        if plan.obj_id not in models:
            models[plan.obj_id] = load_eval_model(bop, dataset, plan.obj_id, info)
        ref_img = bop.load_image(plan.scene, *plan.reference)
        ref = set_references(estimators, ref_img)
        where = {"scene_id": int(plan.scene.scene_id), "obj_id": plan.obj_id, "ref_im_id": int(plan.reference[0])}
        refs.append({**where, **{f"{n}_reference_ms": r["ms"] for n, r in ref.items()}})
        T_ref = np.asarray(ref_img["T_cam_obj"], np.float64)
        for im_id, idx in plan.queries:
            img = bop.load_image(plan.scene, im_id, idx)
            row = {**where, "im_id": int(im_id)}
            for name, est in estimators.items():
                rec, _ = run_query(est, img, T_ref, models[plan.obj_id], ref[name]["failure"])
                rec["obj_id"] = plan.obj_id
                records[name].append(rec)
                row.update(rel_rot_deg=rec["rel_rot_deg"], bin=rec["bin"],
                           **{f"{name}_{k}": rec[k] for k in PAIR_FIELDS})
            pairs.append(row)
            bar.update(1)
            bar.set_postfix({n: f"{np.mean([r['hit'] for r in rs]):.2f}" for n, rs in records.items()})
    bar.close()
    return records, pairs, refs, models


def warm_up(estimators: dict, plan, dataset: Path) -> None:
    """One discarded pair per method: lazy imports, allocations and thread start-up are not what a user waits for
    after the first frame (one2any bench warms up the same way)."""
    from dataclasses import replace

    run_pairs(estimators, [replace(plan, queries=plan.queries[:1])], dataset, progress=False)
    for est in estimators.values():
        est.log.clear()


# --- the summary -----------------------------------------------------------------------------------------

def summarize_method(records: list[dict], models: dict) -> dict:
    """The eval's summary (evaluate.summarize) plus the latency spread a user feels: median and p90 over every
    pair (a failure's time counts: the user waited for it too)."""
    import numpy as np

    from one2any_ros.evaluation import summarize
    from one2any_ros.core.protocol import ROTATION_BINS

    s = summarize(records, models)
    lat = np.array([r["latency_ms"] for r in records if r["latency_ms"] is not None], np.float64)
    bins = s["by_rotation_bin"]
    groups = {"by_rotation_bin": {k: bins[k] for k, _, _ in ROTATION_BINS if bins[k]["n"]}, "by_family": s["by_family"]}
    return {"n_pairs": s["n_queries"], "median_ms": float(np.median(lat)), "p90_ms": float(np.percentile(lat, 90)),
            "mean_ms": float(np.mean(lat)),
            **{k: s[k] for k in ("add_s_01d_recall", "add_01d_recall", "median_rot_err_deg", "median_trans_err_mm",
                                 "recall_5deg_5cm", "add_s_auc", "failures")},
            **{g: {k: {"n": v["n"], "add_s_01d_recall": v["add_s_01d_recall"]} for k, v in d.items()}
               for g, d in groups.items()}}


def machine_info(o3d, cores: list[int]) -> dict:
    """What the numbers depend on: CPU, the cores and threads used, the load, library versions and the commit."""
    import numpy as np

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    cpu = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), platform.processor())
    try:
        import torch
        torch_info = {"torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    except ImportError:
        torch_info = {}
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "cores_used": cores, "threads": len(cores),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "open3d_max_threads": o3d.utility.get_max_threads(),
            "nice": os.nice(0), "load_average_start": list(os.getloadavg()), "python": platform.python_version(),
            "numpy": np.__version__, "open3d": o3d.__version__, **torch_info,
            "git_commit": git("rev-parse", "HEAD"),  # and the measured code's uncommitted changes, if any:
            "git_modified": git("status", "--porcelain", "--", "one2any_ros").splitlines()}


def format_table(report: dict) -> str:
    """The side-by-side table: time per pair (median, p90) and ADD(-S)@0.1d recall (overall, by rotation bin, by
    object family where the dataset has families), median rotation / translation error, failures."""
    methods = report["methods"]
    first = next(iter(methods.values()))
    bins = list(first["by_rotation_bin"])
    fams = list(first["by_family"])
    f = lambda v, spec=".2f": "n/a" if v is None else format(v, spec)
    cols = [("pairs", lambda m: str(m["n_pairs"])), ("median ms", lambda m: f(m["median_ms"], ".0f")),
            ("p90 ms", lambda m: f(m["p90_ms"], ".0f")), ("ADD(-S)", lambda m: f(m["add_s_01d_recall"]))]
    cols += [(b, lambda m, b=b: f(m["by_rotation_bin"].get(b, {}).get("add_s_01d_recall"))) for b in bins]
    cols += [(FAMILY_LABELS.get(k, k[:10]), lambda m, k=k: f(m["by_family"].get(k, {}).get("add_s_01d_recall")))
             for k in fams]
    cols += [("rot err", lambda m: f(m["median_rot_err_deg"], ".1f")),
             ("trans mm", lambda m: f(m["median_trans_err_mm"], ".1f")),
             ("fails", lambda m: str(m["failures"]["count"]))]
    width = max(len(label) for label in report["labels"].values()) + 2
    lines = [f"{'method':<{width}}" + "".join(f"{c:>11}" for c, _ in cols)]
    lines += [f"{report['labels'][n]:<{width}}" + "".join(f"{fn(m):>11}" for _, fn in cols)
              for n, m in methods.items()]
    counts = ", ".join(f"{k} {v['n']}" for k, v in {**first["by_rotation_bin"], **first["by_family"]}.items())
    ref_ms = ", ".join(f"{n} {v:.0f}" for n, v in report["reference_median_ms"].items())
    lines += [f"pairs: {counts}. ADD(-S) = recall at 0.1 d; rot err (deg), trans mm: medians (a failure: 180 deg).",
              f"ms per pair, the once-per-reference work excluded (its median ms: {ref_ms})."]
    return "\n".join(lines)


def open3d_label(s: Open3DSettings) -> str:
    """A row's name: the tutorial's criteria say so, others show theirs."""
    ransac = "tutorial" if (s.max_iteration, s.confidence) == RANSAC_TUTORIAL else f"{s.max_iteration}:{s.confidence:g}"
    return f"Open3D FPFH+RANSAC+ICP ({ransac}, {s.icp})"


def build_report(a: argparse.Namespace, estimators: dict, machine: dict, run: tuple[dict, list, list, dict],
                 wall_s: float) -> dict:
    """The JSON: what was compared, on what, how, the summaries, and every pair."""
    import numpy as np

    records, pairs, refs, models = run
    backends = {n: est.est.backend for n, est in estimators.items() if n.startswith("project_")}
    render = Path(a.dataset) / "one2any_render.json"  # how the dataset was made (one2any render), when it says
    render_args = ({k: v for k, v in json.loads(render.read_text()).items() if k != "scenes"}
                   if render.is_file() else None)
    ref_ms = {n: [r[f"{n}_reference_ms"] for r in refs if r[f"{n}_reference_ms"] is not None] for n in estimators}
    return {
        "what": "the project's global search vs Open3D FPFH + RANSAC + ICP on the same one-reference eval pairs",
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "tools/compare_open3d.py " + " ".join(a.argv),
        "dataset": str(a.dataset), "split": a.split, "render": render_args,
        "n_objects": len(models), "n_references": len(refs),
        "project_backends": {n: {"requested": n.split("_", 1)[1], "used": b.name, "model": b.describe()}
                             for n, b in backends.items()},
        "open3d_settings": {n: vars(est.est.s) for n, est in estimators.items() if n.startswith("open3d")},
        "labels": {**{n: f"project {b.name} ({n.split('_', 1)[1]})" for n, b in backends.items()},
                   **{n: open3d_label(est.est.s) for n, est in estimators.items() if n.startswith("open3d")}},
        "methods": {n: summarize_method(rs, models) for n, rs in records.items()},
        "reference_median_ms": {n: float(np.median(v)) if v else None for n, v in ref_ms.items()},
        "stage_median_ms": {n: est.stage_medians() for n, est in estimators.items()},
        "machine": {**machine, "load_average_end": list(os.getloadavg()), "wall_s": wall_s},
        "timing": ("time.perf_counter around estimate(view) alone (evaluate._run_query), the once-per-reference work "
                   "excluded for both; one warm-up pair discarded; the methods alternate pair by pair"),
        "metric": ("ADD(-S) recall at 0.1 d (ADD for asymmetric objects, ADD-S for symmetric ones), "
                   "one2any_ros.evaluation.summarize; bins: rotation between reference and query; a failure is a miss "
                   "(180 deg, infinite translation in the medians)"),
        "references": refs, "pairs": pairs,
    }


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    a = parse_args(argv)
    a.argv = argv
    cores = limit_threads(a.cores)
    o3d = import_open3d()
    if o3d is None:
        return 2
    from one2any_ros.core.estimator import PoseEstimator
    from one2any_ros.evaluation import json_safe

    o3d.utility.set_max_threads(len(cores))  # torch's threads: the project's own choice (backends/one2any.py)
    o3d.utility.random.seed(Open3DSettings.seed)
    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    dataset = Path(a.dataset)
    plans = load_plans(dataset, a.split, a.max_pairs)
    if not plans:
        print(f"compare_open3d: no pairs in {dataset} (split {a.split})", file=sys.stderr)
        return 1
    estimators = {f"project_{b}": StageLog(PoseEstimator(b)) for b in dict.fromkeys(a.backend)}
    for it, conf in dict.fromkeys(a.ransac):
        settings = Open3DSettings(voxel_fraction=a.voxel_fraction, icp=a.icp, max_iteration=it, confidence=conf)
        estimators[f"open3d_{it}_{conf:g}"] = StageLog(Open3DEstimator(o3d, settings))
    machine = machine_info(o3d, cores)
    warm_up(estimators, plans[0], dataset)
    t0 = time.perf_counter()
    run = run_pairs(estimators, plans, dataset, not a.no_progress)
    report = build_report(a, estimators, machine, run, time.perf_counter() - t0)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(json_safe(report), indent=1) + "\n")
    print(format_table(report))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
