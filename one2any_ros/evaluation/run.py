"""The one-reference BOP evaluation on any BOP-format dataset root (docs/architecture.md, "The one-reference evaluation
protocol", documents it for users): ``evaluate_dataset`` plans (evaluation/plan.py), estimates every query
independently (``track=False``, its ``mask_visib`` as the mask), summarizes (evaluation/summary.py) and writes the
report (evaluation/report.py).

A failed estimate (any One2AnyError, bad query input included) is left out of ``results.csv`` (BOP convention) and
counted as a miss: infinite ADD/ADD-S, 180 deg and infinite translation in the medians. Outputs in ``out_dir``:
``results.csv`` (BOP CSV), ``report.json`` (the summary returned), ``queries.jsonl`` (one line per query, written as
it runs) and ``recall_by_bin.png``.

``query_masks="segmenter"`` hands every query a segmenter-like version of its ``mask_visib`` instead
(data/segmenter_masks.py: border a few pixels off and jagged, small holes, sometimes a leak; the same masks in every
run); the reference keeps its clean mask, as an operator registers it.
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from one2any_ros import __version__
from one2any_ros.core import metrics
from one2any_ros.core.errors import One2AnyError
from one2any_ros.core.files import write_atomic
from one2any_ros.core.frame import make_view
from one2any_ros.core.protocol import rotation_bin
from one2any_ros.data.segmenter_masks import QUERY_MASKS, SegmenterNoise, mask_iou, segmenter_query_mask
from one2any_ros.evaluation.plan import EvalModel, ObjectPlan, load_eval_model, plan_dataset, subsample_plans
from one2any_ros.evaluation.report import write_plots
from one2any_ros.evaluation.summary import json_safe, summarize


FAILED_ROT_DEG = 180.0


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
    query_masks: str = "clean",
    segmenter_noise: SegmenterNoise | None = None,
) -> dict:
    """Run the one-reference protocol on a BOP dataset root and write results.csv, report.json,
    queries.jsonl and recall_by_bin.png to ``out_dir``. Returns the report (JSON-safe: infinities are null).

    ``estimator``: any object with ``set_reference(view)`` and ``estimate(view, track=False)`` returning a
    result with ``T_camera_object`` (4,4) m and ``confidence`` (tests inject fakes); by default a
    ``PoseEstimator(backend=backend, **estimator_kwargs)``. ``max_queries`` keeps that many queries spread
    evenly over the dataset. ``min_query_visib`` > 0 leaves out queries less visible than that (default:
    every image is a query, BOP's protocol as docs/architecture.md states it). ``scene_ids``/``obj_ids``
    restrict the run. ``query_masks``: ``"clean"`` (each query's ``mask_visib``) or ``"segmenter"`` (it perturbed as
    a segmenter would, by ``segmenter_noise``, default ``SegmenterNoise()``; its IoU with the clean mask goes into
    each query's record as ``query_mask_iou``).
    """
    from one2any_ros.data import bop

    if query_masks not in QUERY_MASKS:
        raise ValueError(f"query_masks must be one of {QUERY_MASKS}, got {query_masks!r}")
    noise = (segmenter_noise or SegmenterNoise()) if query_masks == "segmenter" else None

    root = Path(dataset)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    models_info = {int(k): v for k, v in bop.load_models_info(root).items()}
    plans, skipped, n_scenes = plan_dataset(root, split, scene_ids=scene_ids, obj_ids=obj_ids,
                                            min_query_visib=min_query_visib)
    n_available = sum(len(p.queries) for p in plans)
    plans = subsample_plans(plans, max_queries)

    est = estimator if estimator is not None else _make_estimator(backend, estimator_kwargs)
    run = _run_plans(est, plans, root, models_info, out / "queries.jsonl", progress, noise)

    bop.write_results_csv(out / "results.csv", run.rows)
    report = summarize(run.records, run.models)
    report.update(_run_fields(run, est, backend=backend, root=root, split=split, n_scenes=n_scenes,
                              n_objects=len({p.obj_id for p in plans}), n_available=n_available,
                              max_queries=max_queries, min_query_visib=min_query_visib, skipped=skipped,
                              noise=noise))
    if plot:
        write_plots(report, run.records, out)
    report = json_safe(report)
    write_atomic(out / "report.json", json.dumps(report, indent=2))
    return report


def _run_fields(run: "_RunResult", est: Any, *, backend: str, root: Path, split: str, n_scenes: int, n_objects: int,
                n_available: int, max_queries: int | None, min_query_visib: float, skipped: Any,
                noise: SegmenterNoise | None) -> dict:
    """The report's description of the run (what ran on what, when, under which protocol), in the report's
    key order."""
    return {
        "backend": backend,
        "backends_used": dict(Counter(r["backend"] for r in run.records if r["ok"])),
        "model": _describe(est),
        "dataset": str(root.resolve()),
        "split": split,
        "n_scenes": n_scenes,
        "n_objects": n_objects,
        "n_queries_available": n_available,
        "max_queries": max_queries,
        "min_query_visib": min_query_visib,
        "query_masks": "clean" if noise is None else "segmenter",
        "segmenter_noise": None if noise is None else asdict(noise),
        "references": run.references,
        "skipped_objects": skipped,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "version": __version__,
        "protocol": PROTOCOL_TEXT,
        "metric_notes": METRIC_NOTES,
        "confidence_notes": CONFIDENCE_NOTES,
        "files": {"results_csv": "results.csv", "queries": "queries.jsonl", "plot": None, "reliability_plot": None},
    }


@dataclass
class _RunResult:
    """What estimating every planned query gives: per-query records, results.csv rows, the references used and
    the objects' models."""

    records: list[dict] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    references: list[dict] = field(default_factory=list)
    models: dict[int, EvalModel] = field(default_factory=dict)


def _run_plans(est, plans: list[ObjectPlan], root: Path, models_info: Mapping[int, dict], queries_path: Path,
               progress: bool, noise: SegmenterNoise | None = None) -> _RunResult:
    """Set each plan's reference and estimate its queries, one line per query to ``queries_path`` as it runs;
    with ``noise``, each query's mask is a segmenter-like one."""
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
                scene_id = int(plan.scene.scene_id)
                iou = _segmenter_mask(img, noise, scene_id, int(im_id), plan.obj_id) if noise is not None else None
                rec, row = run_query(est, img, T_ref, run.models[plan.obj_id], ref_failure)
                if iou is not None:
                    rec["query_mask_iou"] = iou
                rec.update(scene_id=scene_id, im_id=int(im_id), obj_id=plan.obj_id, ref_im_id=int(plan.reference[0]))
                run.records.append(rec)
                jl.write(json.dumps(json_safe(rec)) + "\n")
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


def _segmenter_mask(img: dict, noise: SegmenterNoise, scene_id: int, im_id: int, obj_id: int) -> float:
    """Replace the query's mask by its segmenter-like version (in place); returns their IoU."""
    clean = img["mask"]
    img["mask"] = segmenter_query_mask(clean, scene_id=scene_id, im_id=im_id, obj_id=obj_id, noise=noise)
    return mask_iou(clean, img["mask"])


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


def _describe(est: Any) -> dict | None:
    """The estimator's backend and, for a learned one, its checkpoint and training summary (None for fakes)."""
    describe = getattr(getattr(est, "backend", None), "describe", None)
    return describe() if callable(describe) else None


def _failure(reason: str, rel_deg: float, diameter_m: float, latency_ms: float | None = None) -> dict:
    return {"ok": False, "reason": reason, "rel_rot_deg": rel_deg, "bin": rotation_bin(rel_deg), "add_m": np.inf,
            "adds_m": np.inf, "err_m": np.inf, "rot_err_deg": FAILED_ROT_DEG, "trans_err_m": np.inf, "hit": False,
            "hit_add": False, "diameter_m": diameter_m, "confidence": None, "latency_ms": latency_ms, "backend": None}


def run_query(est, img: Mapping, T_ref: np.ndarray, model: EvalModel, ref_failure: str | None) -> tuple[dict, dict | None]:
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
           "confidence": conf, "verifier_confidence": getattr(res, "verifier_confidence", None),
           "appearance": getattr(res, "appearance", None), "inliers": getattr(res, "inliers", None),
           "latency_ms": 1000.0 * dt,
           "latency_estimator_ms": (getattr(res, "timings_ms", None) or {}).get("total"),
           "backend": str(getattr(res, "backend", "unknown"))}
    row = {"score": conf, "R": T[:3, :3], "t": T[:3, 3] * 1000.0, "time": dt}
    return rec, row

