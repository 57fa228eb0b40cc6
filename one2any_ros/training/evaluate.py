"""The one-reference BOP evaluation on any BOP-format dataset root (docs/architecture.md, "The
one-reference evaluation protocol", documents it for users).

Protocol, per scene and object:
- one instance per object per image: the first entry of that ``obj_id`` in ``scene_gt.json``;
- the reference is the first image (sorted im_id) where that instance's ``visib_fract`` >= 0.5 (the
  first image when ``scene_gt_info.json`` is absent); it is given its ground-truth pose, so the estimator's
  outputs are in the model's frame and comparable with the ground truth;
- every other image of the object in the scene is a query, with its ``mask_visib`` as the mask, estimated
  independently (``track=False``);
- a failed estimate (any One2AnyError, bad query input included) is left out of ``results.csv`` (BOP
  convention) and counted as a miss: infinite ADD/ADD-S, 180° and infinite translation in the medians.

Outputs in ``out_dir``: ``results.csv`` (BOP CSV), ``report.json`` (the summary returned), ``queries.jsonl``
(one line per query, written as it runs) and ``recall_by_bin.png``.
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from one2any_ros import __version__

from one2any_ros.core import metrics
from one2any_ros.core.errors import One2AnyError
from one2any_ros.core.files import write_atomic
from one2any_ros.core.protocol import BIN_NAMES, ROTATION_BINS, rotation_bin  # noqa: F401 (ROTATION_BINS: importers of evaluate)
from one2any_ros.core.reference import make_view

REFERENCE_MIN_VISIB = 0.5
FAILED_ROT_DEG = 180.0
MODEL_POINTS = 2000  # model points per object for ADD / ADD-S


# --- the plan: references and queries --------------------------------------------------------------------

@dataclass
class ObjectPlan:
    """One (scene, object): its reference instance and its query instances, as (im_id, gt_index)."""

    scene: Any  # bop.BopScene
    obj_id: int
    reference: tuple[int, int]
    reference_visib: float | None
    queries: list[tuple[int, int]] = field(default_factory=list)


def first_instances(scene) -> dict[int, list[tuple[int, int]]]:
    """obj_id -> [(im_id, gt_index)] over the scene's images in im_id order, the first instance per image."""
    out: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for im_id in scene.im_ids:
        seen: set[int] = set()
        for idx, g in enumerate(scene.gt.get(im_id, [])):
            oid = int(g["obj_id"])
            if oid not in seen:
                seen.add(oid)
                out[oid].append((im_id, idx))
    return dict(out)


def _visib(scene, im_id: int, idx: int) -> float | None:
    """The instance's visib_fract, or None when unknown (no scene_gt_info.json, or no entry)."""
    if scene.gt_info is None:
        return None
    entries = scene.gt_info.get(im_id) or []
    if idx >= len(entries) or "visib_fract" not in entries[idx]:
        return None
    return float(entries[idx]["visib_fract"])


def select_reference(scene, instances: Sequence[tuple[int, int]], *, min_visib: float = REFERENCE_MIN_VISIB
                     ) -> tuple[int, int] | None:
    """The reference among one object's instances (im_id order): the first with visib_fract >= min_visib;
    the first one when the scene has no scene_gt_info.json (an instance without an entry counts as
    visible). None when no instance qualifies."""
    for im_id, idx in instances:
        v = _visib(scene, im_id, idx)
        if v is None or v >= min_visib:
            return im_id, idx
    return None


def plan_scene(scene, *, obj_ids: Iterable[int] | None = None, min_query_visib: float = 0.0
               ) -> tuple[list[ObjectPlan], list[dict]]:
    """The ObjectPlans of one scene, and the objects skipped for want of a reference view."""
    wanted = None if obj_ids is None else {int(o) for o in obj_ids}
    plans, skipped = [], []
    for oid, inst in sorted(first_instances(scene).items()):
        if wanted is not None and oid not in wanted:
            continue
        ref = select_reference(scene, inst)
        if ref is None:
            skipped.append({"scene_id": int(scene.scene_id), "obj_id": oid, "n_images": len(inst),
                            "reason": f"no image with visib_fract >= {REFERENCE_MIN_VISIB}"})
            continue
        queries = [q for q in inst if q != ref and _visible_enough(_visib(scene, *q), min_query_visib)]
        plans.append(ObjectPlan(scene=scene, obj_id=oid, reference=ref, reference_visib=_visib(scene, *ref), queries=queries))
    return plans, skipped


def _visible_enough(visib: float | None, min_visib: float) -> bool:
    return min_visib <= 0 or visib is None or visib >= min_visib


def _subsample(plans: list[ObjectPlan], max_queries: int | None) -> list[ObjectPlan]:
    """Keep ``max_queries`` queries spread evenly over the whole ordered list (every scene and object keeps
    its share, so the rotation bins stay representative). Plans left with no query are dropped."""
    total = sum(len(p.queries) for p in plans)
    if max_queries is None or max_queries >= total:
        return plans
    keep = set(np.unique(np.round(np.linspace(0, total - 1, max(int(max_queries), 0))).astype(int)).tolist())
    out, k = [], 0
    for p in plans:
        qs = []
        for q in p.queries:
            if k in keep:
                qs.append(q)
            k += 1
        if qs:
            out.append(ObjectPlan(p.scene, p.obj_id, p.reference, p.reference_visib, qs))
    return out


# --- the run ---------------------------------------------------------------------------------------------

@dataclass
class EvalModel:
    """An object's model as the metrics need it (BOP models_info + sampled model points)."""

    pts: np.ndarray  # (N,3) m, object frame
    diameter_m: float
    symmetric: bool
    syms: np.ndarray | None  # (K,4,4) m symmetry transforms, None when asymmetric
    family: str | None = None  # models_info's optional "family" (our renders write it; BOP datasets have none)


def load_eval_model(bop, root: Path, obj_id: int, models_info: Mapping[int, dict]) -> EvalModel:
    """Load object ``obj_id``'s points, diameter and symmetries; public for tools that score poses
    the way ``evaluate_dataset`` does (tools/diagnose_pool.py)."""
    if obj_id not in models_info:
        raise ValueError(f"object {obj_id} has no entry in {root}/models/models_info.json")
    info = models_info[obj_id]
    sym = bool(bop.is_symmetric(info))
    pts = np.asarray(bop.load_model_points(root, obj_id, max_points=MODEL_POINTS, prefer_eval=True), np.float64)
    family = info.get("family") or object_family(info, sym)
    return EvalModel(pts=pts, diameter_m=float(info["diameter"]) * 1e-3, symmetric=sym,
                     syms=metrics.symmetry_transforms(info) if sym else None,
                     family=str(family) if family is not None else None)


def object_family(info: Mapping, symmetric: bool) -> str | None:
    """The object's family from our models_info's ``shape_symmetry`` (symmetry of the geometry alone), when
    present: ``symmetric`` (shape and texture), ``texture_only`` (a symmetric shape told apart only by its
    texture: scored by ADD, so a flip is a miss) or ``shape_asymmetric``. None for other BOP datasets."""
    shape = info.get("shape_symmetry")
    if shape is None:
        return None
    if symmetric:
        return "symmetric"
    return "shape_asymmetric" if shape == "none" else "texture_only"


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is a dependency, but never let a progress bar stop an evaluation
        return None
    return tqdm(total=total, desc="eval", unit="query", file=sys.stderr, dynamic_ncols=True)


def _make_estimator(backend: str, estimator_kwargs: Mapping[str, Any] | None):
    from one2any_ros.core.estimator import PoseEstimator  # lazy: importing the estimator may import torch

    return PoseEstimator(backend=backend, **dict(estimator_kwargs or {}))


PROTOCOL_TEXT = ("one reference per scene and object (first image with visib_fract >= 0.5, its GT pose given); "
                 "every other image a query (mask_visib, track=False); failures are misses and absent from results.csv")
METRIC_NOTES = ("add_s_01d_recall: ADD for asymmetric objects, ADD-S for objects with symmetries in models_info.json, "
                "hit when error < 0.1 diameter; add_s_auc: ADD-S for every object, AUC of recall over 0-10 cm; "
                "add_auc: the same AUC with the add_s_01d_recall error (YCB-Video ADD(-S)); medians count a failure "
                "as 180 deg and infinite translation (null when infinite); rotation errors take the closest "
                "symmetric twin; median_latency_ms over successful estimates (wall clock)")
CONFIDENCE_NOTES = ("confidence_auroc: how well the confidence ranks right poses (add_s_01d hit) above wrong "
                    "ones among returned estimates (0.5 = chance); precision_at_recall_0.8: the right share of "
                    "poses kept by the highest threshold that keeps 80 % of the right ones; symmetry_errors: "
                    "misses right by ADD-S but wrong by ADD (a flip or turn the shape cannot tell)")


def evaluate_dataset(
    dataset: str | os.PathLike,
    *,
    split: str = "test",
    backend: str = "classic",
    out_dir: str | os.PathLike,
    max_queries: int | None = None,
    progress: bool = True,
    estimator_kwargs: Mapping[str, Any] | None = None,
    estimator: Any | None = None,
    scene_ids: Iterable[int] | None = None,
    obj_ids: Iterable[int] | None = None,
    min_query_visib: float = 0.0,
    plot: bool = True,
) -> dict:
    """Run the one-reference protocol on a BOP dataset root and write results.csv, report.json,
    queries.jsonl and recall_by_bin.png to ``out_dir``. Returns the report (JSON-safe: infinities are null).

    ``estimator``: any object with ``set_reference(view)`` and ``estimate(view, track=False)`` returning a
    result with ``T_camera_object`` (4,4) m and ``confidence`` (tests inject fakes); by default a
    ``PoseEstimator(backend=backend, **estimator_kwargs)``. ``max_queries`` keeps that many queries spread
    evenly over the dataset. ``min_query_visib`` > 0 leaves out queries less visible than that (default:
    every image is a query, BOP's protocol as docs/architecture.md states it). ``scene_ids``/``obj_ids``
    restrict the run.
    """
    from one2any_ros.data import bop

    root = Path(dataset)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    models_info = {int(k): v for k, v in bop.load_models_info(root).items()}
    plans, skipped, n_scenes = plan_dataset(root, split, scene_ids=scene_ids, obj_ids=obj_ids,
                                            min_query_visib=min_query_visib)
    n_available = sum(len(p.queries) for p in plans)
    plans = _subsample(plans, max_queries)

    est = estimator if estimator is not None else _make_estimator(backend, estimator_kwargs)
    run = _run_plans(est, plans, root, models_info, out / "queries.jsonl", progress)

    bop.write_results_csv(out / "results.csv", run.rows)
    report = summarize(run.records, run.models)
    report.update(
        backend=backend,
        backends_used=dict(Counter(r["backend"] for r in run.records if r["ok"])),
        model=_describe(est),
        dataset=str(root.resolve()),
        split=split,
        n_scenes=n_scenes,
        n_objects=len({p.obj_id for p in plans}),
        n_queries_available=n_available,
        max_queries=max_queries,
        min_query_visib=min_query_visib,
        references=run.references,
        skipped_objects=skipped,
        timestamp=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        version=__version__,
        protocol=PROTOCOL_TEXT,
        metric_notes=METRIC_NOTES,
        confidence_notes=CONFIDENCE_NOTES,
        files={"results_csv": "results.csv", "queries": "queries.jsonl", "plot": None, "reliability_plot": None},
    )
    if plot:
        _plot_files(report, run.records, out)
    report = _json_safe(report)
    write_atomic(out / "report.json", json.dumps(report, indent=2))
    return report


def plan_dataset(root: Path, split: str, *, scene_ids: Iterable[int] | None = None, obj_ids: Iterable[int] | None = None,
                 min_query_visib: float = 0.0) -> tuple[list[ObjectPlan], list[dict], int]:
    """(the ObjectPlans of every wanted scene of the split, the objects skipped for want of a reference, the number
    of scenes planned)."""
    from one2any_ros.data import bop

    wanted_scenes = None if scene_ids is None else {int(s) for s in scene_ids}
    plans: list[ObjectPlan] = []
    skipped: list[dict] = []
    n_scenes = 0
    for sid in bop.list_scenes(root, split):
        if wanted_scenes is not None and int(sid) not in wanted_scenes:
            continue
        n_scenes += 1
        p, s = plan_scene(bop.load_scene(root, split, sid), obj_ids=obj_ids, min_query_visib=min_query_visib)
        plans += p
        skipped += s
    return plans, skipped, n_scenes


@dataclass
class _RunResult:
    """What estimating every planned query gives: per-query records, results.csv rows, the references used and
    the objects' models."""

    records: list[dict] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    references: list[dict] = field(default_factory=list)
    models: dict[int, EvalModel] = field(default_factory=dict)


def _run_plans(est, plans: list[ObjectPlan], root: Path, models_info: Mapping[int, dict], queries_path: Path,
               progress: bool) -> _RunResult:
    """Set each plan's reference and estimate its queries, one line per query to ``queries_path`` as it runs."""
    from one2any_ros.data import bop

    run = _RunResult()
    bar = _progress(sum(len(p.queries) for p in plans), progress)
    with open(queries_path, "w") as jl:
        for plan in plans:
            if plan.obj_id not in run.models:
                run.models[plan.obj_id] = load_eval_model(bop, root, plan.obj_id, models_info)
            T_ref, ref_failure = _set_reference(est, plan, run.references)
            for im_id, idx in plan.queries:
                img = bop.load_image(plan.scene, im_id, idx)
                rec, row = _run_query(est, img, T_ref, run.models[plan.obj_id], ref_failure)
                scene_id = int(plan.scene.scene_id)
                rec.update(scene_id=scene_id, im_id=int(im_id), obj_id=plan.obj_id, ref_im_id=int(plan.reference[0]))
                run.records.append(rec)
                jl.write(json.dumps(_json_safe(rec)) + "\n")
                jl.flush()
                if row is not None:
                    row.update(scene_id=scene_id, im_id=int(im_id), obj_id=plan.obj_id)
                    run.rows.append(row)
                if bar is not None:
                    bar.update(1)
                    hits = sum(r["hit"] for r in run.records)
                    bar.set_postfix(recall=f"{hits / len(run.records):.2f}", fail=sum(not r["ok"] for r in run.records))
    if bar is not None:
        bar.close()
    return run


def _set_reference(est, plan: ObjectPlan, references: list[dict]) -> tuple[np.ndarray, str | None]:
    """Give the estimator the plan's reference with its ground-truth pose; appends its line to ``references``.
    Returns (that pose, the failure reason when the reference was refused, else None)."""
    from one2any_ros.data import bop

    ref_img = bop.load_image(plan.scene, *plan.reference)
    T_ref = np.asarray(ref_img["T_cam_obj"], np.float64)
    ref_failure = None
    try:
        est.set_reference(make_view(ref_img["rgb"], ref_img["depth"], ref_img["mask"], ref_img["K"], T_cam_obj=T_ref))
    except One2AnyError as e:
        ref_failure = "reference_" + str(getattr(e, "reason", "error"))
    references.append({"scene_id": int(plan.scene.scene_id), "obj_id": plan.obj_id, "im_id": int(plan.reference[0]),
                       "visib_fract": plan.reference_visib, "n_queries": len(plan.queries), "failure": ref_failure})
    return T_ref, ref_failure


def _plot_files(report: dict, records: Sequence[Mapping], out: Path) -> None:
    """The recall and reliability PNGs, named in ``report["files"]``; skipped without matplotlib (a bare ROS
    install): the numbers still stand."""
    try:
        plot_report(report, records, out / "recall_by_bin.png")
        report["files"]["plot"] = "recall_by_bin.png"
        plot_reliability(report, out / "reliability.png")
        report["files"]["reliability_plot"] = "reliability.png"
    except ImportError:
        pass


def _describe(est: Any) -> dict | None:
    """The estimator's backend and, for a learned one, its checkpoint and training summary (None for fakes)."""
    describe = getattr(getattr(est, "backend", None), "describe", None)
    return describe() if callable(describe) else None


def _failure(reason: str, rel_deg: float, diameter_m: float, latency_ms: float | None = None) -> dict:
    return {"ok": False, "reason": reason, "rel_rot_deg": rel_deg, "bin": rotation_bin(rel_deg), "add_m": np.inf,
            "adds_m": np.inf, "err_m": np.inf, "rot_err_deg": FAILED_ROT_DEG, "trans_err_m": np.inf, "hit": False,
            "hit_add": False, "diameter_m": diameter_m, "confidence": None, "latency_ms": latency_ms, "backend": None}


def _run_query(est, img: Mapping, T_ref: np.ndarray, model: EvalModel, ref_failure: str | None) -> tuple[dict, dict | None]:
    """Estimate one query and score it. Returns (record for queries.jsonl, results.csv row or None)."""
    T_gt = np.asarray(img["T_cam_obj"], np.float64)
    rel = metrics.rotation_error_deg(T_gt[:3, :3], T_ref[:3, :3])  # angle of R_q R_r^T: the view change
    if ref_failure is not None:
        return _failure(ref_failure, rel, model.diameter_m), None
    t0 = time.perf_counter()
    try:
        view = make_view(img["rgb"], img["depth"], img["mask"], img["K"])
        t0 = time.perf_counter()  # latency of the estimate alone
        res = est.estimate(view, track=False)
    except One2AnyError as e:
        return _failure(str(getattr(e, "reason", "error")), rel, model.diameter_m, 1000.0 * (time.perf_counter() - t0)), None
    dt = time.perf_counter() - t0
    T = np.asarray(res.T_camera_object, np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        return _failure("invalid_pose", rel, model.diameter_m, 1000.0 * dt), None
    e_add = metrics.add(T, T_gt, model.pts)
    e_adds = metrics.add_s(T, T_gt, model.pts)
    rot, tra = metrics.pose_error_sym(T, T_gt, model.syms)
    err = e_adds if model.symmetric else e_add
    conf = float(getattr(res, "confidence", 1.0))
    rec = {"ok": True, "reason": None, "rel_rot_deg": rel, "bin": rotation_bin(rel), "add_m": e_add, "adds_m": e_adds,
           "err_m": err, "rot_err_deg": rot, "trans_err_m": tra, "hit": metrics.add_s_01d_hit(err, model.diameter_m),
           "hit_add": metrics.add_s_01d_hit(e_add, model.diameter_m), "diameter_m": model.diameter_m,
           "confidence": conf, "inliers": getattr(res, "inliers", None), "latency_ms": 1000.0 * dt,
           "latency_estimator_ms": (getattr(res, "timings_ms", None) or {}).get("total"),
           "backend": str(getattr(res, "backend", "unknown"))}
    row = {"score": conf, "R": T[:3, :3], "t": T[:3, 3] * 1000.0, "time": dt}
    return rec, row


# --- the summary -----------------------------------------------------------------------------------------

def _recall(hits: Sequence[bool]) -> float | None:
    return float(np.mean(hits)) if len(hits) else None


def summarize(records: Sequence[Mapping], models: Mapping[int, EvalModel] | None = None) -> dict:
    """The report's metrics from per-query records (see _run_query). Failures are misses everywhere."""
    n = len(records)
    err = np.array([r["err_m"] for r in records], np.float64)
    adds = np.array([r["adds_m"] for r in records], np.float64)
    rot = np.array([r["rot_err_deg"] for r in records], np.float64)
    tra = np.array([r["trans_err_m"] for r in records], np.float64)
    lat = [r["latency_ms"] for r in records if r["ok"] and r["latency_ms"] is not None]
    failures = Counter(r["reason"] for r in records if not r["ok"])
    by_bin = {}
    for key in BIN_NAMES:
        rs = [r for r in records if r["bin"] == key]
        by_bin[key] = {"n": len(rs), "add_s_01d_recall": _recall([r["hit"] for r in rs]),
                       "add_s_auc": metrics.auc([r["adds_m"] for r in rs]) if rs else None,
                       "recall_5deg_5cm": metrics.recall_5deg_5cm([r["rot_err_deg"] for r in rs],
                                                                  [r["trans_err_m"] for r in rs]) if rs else None,
                       "failures": sum(not r["ok"] for r in rs)}
    per_obj = {}
    for oid in sorted({r["obj_id"] for r in records}):
        rs = [r for r in records if r["obj_id"] == oid]
        m = (models or {}).get(oid)
        per_obj[str(oid)] = {"n": len(rs), "add_s_01d_recall": _recall([r["hit"] for r in rs]),
                             "add_s_auc": metrics.auc([r["adds_m"] for r in rs]),
                             "symmetric": None if m is None else m.symmetric,
                             "diameter_mm": None if m is None else 1000.0 * m.diameter_m,
                             "failures": sum(not r["ok"] for r in rs)}
    by_family = {}
    families = {oid: m.family for oid, m in (models or {}).items() if m.family is not None}
    for fam in sorted(set(families.values())):
        rs = [r for r in records if families.get(r["obj_id"]) == fam]
        by_family[fam] = {"n": len(rs), "add_s_01d_recall": _recall([r["hit"] for r in rs]),
                          "by_rotation_bin": {key: _recall([r["hit"] for r in rs if r["bin"] == key])
                                              for key in BIN_NAMES},
                          **_symmetry_errors(rs)}
    conf = [(r["confidence"], r["hit"]) for r in records if r["ok"] and r.get("confidence") is not None]
    precision, threshold = metrics.precision_at_recall([c for c, _ in conf], [h for _, h in conf], 0.8)
    return {
        "n_queries": n,
        "add_s_01d_recall": _recall([r["hit"] for r in records]),
        "add_01d_recall": _recall([r["hit_add"] for r in records]),
        "add_s_auc": metrics.auc(adds) if n else None,
        "add_auc": metrics.auc(err) if n else None,
        "median_rot_err_deg": float(np.median(rot)) if n else None,
        "median_trans_err_mm": float(np.median(tra)) * 1000.0 if n else None,
        "recall_5deg_5cm": metrics.recall_5deg_5cm(rot, tra) if n else None,
        "by_rotation_bin": by_bin,
        "failures": {"count": int(sum(failures.values())), "by_reason": dict(sorted(failures.items()))},
        "median_latency_ms": float(np.median(lat)) if lat else None,
        "per_object": per_obj,
        "by_family": by_family,
        "symmetry_errors": _symmetry_errors(records),
        "confidence_auroc": metrics.confidence_auroc([c for c, _ in conf], [h for _, h in conf]),
        "precision_at_recall_0.8": precision,
        "confidence_threshold_at_recall_0.8": threshold,
        "confidence_reliability": metrics.reliability_bins([c for c, _ in conf], [h for _, h in conf]),
        "recall_curve_adds": _curve(adds),
    }


def _symmetry_errors(records: Sequence[Mapping]) -> dict:
    """Misses that are a symmetry of the shape away from the truth: wrong by ADD (the metric of an object marked
    asymmetric) but right by ADD-S (the surface lands on itself). Needs no symmetry annotation, so it counts the
    flips of objects whose only asymmetry is their texture on any dataset."""
    sym = [r for r in records if r["ok"] and not r["hit"] and metrics.add_s_01d_hit(r["adds_m"], r["diameter_m"])]
    misses = sum(not r["hit"] for r in records)
    return {"symmetry_errors": len(sym), "symmetry_error_share": len(sym) / len(records) if records else None,
            "symmetry_share_of_misses": len(sym) / misses if misses else None}


def _curve(errors: np.ndarray, steps: int = 20) -> dict:
    thr, rec = metrics.recall_curve(errors, metrics.DEFAULT_AUC_MAX_THRESHOLD, steps)
    return {"threshold_m": [round(float(t), 6) for t in thr], "recall": [float(r) for r in rec]}


def _json_safe(x):
    """Recursively turn numpy values into Python ones and non-finite floats into None (strict JSON)."""
    if isinstance(x, Mapping):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, np.ndarray):
        return _json_safe(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    return x


# --- human output ----------------------------------------------------------------------------------------

def _fmt(v, spec: str = ".3f", unit: str = "") -> str:
    return "n/a" if v is None else f"{v:{spec}}{unit}"


def format_report_table(report: Mapping) -> str:
    """A plain-text table of a report: the overall numbers, then one line per rotation bin."""
    fails = report.get("failures", {})
    reasons = ", ".join(f"{k} {v}" for k, v in fails.get("by_reason", {}).items())
    lines = [
        f"One2Any one-reference evaluation: backend {report.get('backend')}, split {report.get('split', '?')}, "
        f"{report.get('dataset', '')}",
        f"queries {report.get('n_queries')}  scenes {report.get('n_scenes', '?')}  objects {report.get('n_objects', '?')}  "
        f"failures {fails.get('count', 0)}" + (f" ({reasons})" if reasons else ""),
        "",
        f"{'metric':<28}{'value':>12}",
        f"{'ADD(-S) recall @0.1d':<28}{_fmt(report.get('add_s_01d_recall')):>12}",
        f"{'ADD recall @0.1d':<28}{_fmt(report.get('add_01d_recall')):>12}",
        f"{'ADD-S AUC (0-10 cm)':<28}{_fmt(report.get('add_s_auc')):>12}",
        f"{'ADD(-S) AUC (0-10 cm)':<28}{_fmt(report.get('add_auc')):>12}",
        f"{'5deg 5cm recall':<28}{_fmt(report.get('recall_5deg_5cm')):>12}",
        f"{'median rotation error':<28}{_fmt(report.get('median_rot_err_deg'), '.1f', ' deg'):>12}",
        f"{'median translation error':<28}{_fmt(report.get('median_trans_err_mm'), '.1f', ' mm'):>12}",
        f"{'median latency':<28}{_fmt(report.get('median_latency_ms'), '.1f', ' ms'):>12}",
        f"{'confidence AUROC':<28}{_fmt(report.get('confidence_auroc')):>12}",
        f"{'precision @ 80% recall':<28}{_fmt(report.get('precision_at_recall_0.8')):>12}",
        f"{'symmetry errors':<28}{(report.get('symmetry_errors') or {}).get('symmetry_errors', 'n/a'):>12}",
        "",
        f"{'rotation bin (deg)':<20}{'n':>6}{'ADD(-S)@0.1d':>14}{'ADD-S AUC':>11}{'failures':>10}",
    ]
    for key, b in report.get("by_rotation_bin", {}).items():
        lines.append(f"{key:<20}{b.get('n', 0):>6}{_fmt(b.get('add_s_01d_recall')):>14}{_fmt(b.get('add_s_auc')):>11}"
                     f"{b.get('failures', 0):>10}")
    return "\n".join(lines)


def plot_report(report: Mapping, records: Sequence[Mapping], path: str | os.PathLike) -> None:
    """PNG: ADD(-S)@0.1d recall per rotation bin (bars, n on top) and the ADD-S / ADD(-S) recall curves."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend, safe in any thread

    bins = report["by_rotation_bin"]
    keys = list(bins)
    vals = [bins[k]["add_s_01d_recall"] or 0.0 for k in keys]
    fig = Figure(figsize=(10, 4))
    ax1, ax2 = fig.subplots(1, 2)
    bars = ax1.bar(keys, vals, color="tab:blue")
    for b, k in zip(bars, keys):
        ax1.text(b.get_x() + b.get_width() / 2, b.get_height() + 0.02, f"n={bins[k]['n']}", ha="center", fontsize=8)
    ax1.set_ylim(0, 1.1)
    ax1.set_xlabel("rotation reference -> query (deg)")
    ax1.set_ylabel("ADD(-S) recall @ 0.1d")
    ax1.set_title(f"{report.get('backend')}: {_fmt(report.get('add_s_01d_recall'))} overall")
    for key, label in (("adds_m", "ADD-S"), ("err_m", "ADD(-S)")):
        thr, rec = metrics.recall_curve([r[key] for r in records], metrics.DEFAULT_AUC_MAX_THRESHOLD, 200)
        ax2.plot(thr * 100.0, rec, label=f"{label} (AUC {metrics.auc([r[key] for r in records]) if records else 0:.3f})")
    ax2.set_xlim(0, 10)
    ax2.set_ylim(0, 1.05)
    ax2.set_xlabel("threshold (cm)")
    ax2.set_ylabel("recall")
    ax2.legend(loc="lower right")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_reliability(report: Mapping, path: str | os.PathLike) -> None:
    """PNG: a reliability diagram (share of right poses per confidence bin against the diagonal, counts under
    it), titled with the AUROC and the precision at 80 % recall."""
    from matplotlib.figure import Figure

    rel = report["confidence_reliability"]
    edges = np.asarray(rel["edges"])
    centres, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    share = [v if v is not None else 0.0 for v in rel["right_share"]]
    fig = Figure(figsize=(5, 5.5))
    ax, axn = fig.subplots(2, 1, gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    ax.bar(centres, share, width=width * 0.9, color="tab:green", label="right share (ADD(-S) < 0.1 d)")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share of right poses")
    ax.set_title(f"{report.get('backend')}: confidence AUROC {_fmt(report.get('confidence_auroc'))}, "
                 f"precision@80% recall {_fmt(report.get('precision_at_recall_0.8'))}", fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    axn.bar(centres, rel["n"], width=width * 0.9, color="tab:gray")
    axn.set_xlabel("confidence")
    axn.set_ylabel("poses")
    axn.set_xlim(0, 1)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
