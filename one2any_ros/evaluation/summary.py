"""The evaluation's numbers from its per-query records: recall, AUCs, medians, per rotation bin and per object family,
the confidence's AUROC and reliability, and the misses a symmetry explains."""
from __future__ import annotations

from collections import Counter
from typing import Mapping, Sequence

import numpy as np

from one2any_ros.core import metrics
from one2any_ros.core.protocol import BIN_NAMES
from one2any_ros.evaluation.plan import EvalModel


def _recall(hits: Sequence[bool]) -> float | None:
    return float(np.mean(hits)) if len(hits) else None


def summarize(records: Sequence[Mapping], models: Mapping[int, EvalModel] | None = None) -> dict:
    """The report's metrics from per-query records (see run.run_query). Failures are misses everywhere."""
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


def json_safe(x):
    """Recursively turn numpy values into Python ones and non-finite floats into None (strict JSON)."""
    if isinstance(x, Mapping):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, np.ndarray):
        return json_safe(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    return x

