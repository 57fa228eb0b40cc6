"""Whether a trained checkpoint becomes the bundled model, decided by measurement on validation objects.

    one2any promote [--checkpoint checkpoints/train/checkpoint] [--export]   (or python -m one2any_ros promote)

`auto` picks the learned backend whenever a checkpoint loads (docs/ros.md, Parameters), so a checkpoint is
bundled only when it beats the training-free `classic` where learning has to add something: overall AND in the
60-90 and 90-120 deg bins (issue #4's bar), and, when the model bundled now clears that bar too, beats it
overall. This is measured on VALIDATION objects (never trained on, never in the test split), so the decision
does not tune anything to the test split. Each checkpoint is tried in the VARIANTS below (its ROC term in the
verifier or not; the query crop alone or in four rolls); the best variant overall is the candidate (a tie goes
to the one listed first, the cheaper), and the choice is written into the bundled checkpoint's JSON
(``inference.roc_to_verifier``, ``inference.query_rolls``, read by ``backends.one2any``) with the numbers
behind it.

The validation set is rendered when missing: ``one2any render --objects val --scenes 30 --frames 8
--max-rotation 120 --seed 1``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from one2any_ros.core.files import write_atomic
from one2any_ros.core.protocol import DECISIVE_BINS

VAL_RENDER = {"objects": "val", "scenes": 30, "frames": 8, "max_rotation_deg": 120.0, "seed": 1}
DEFAULT_RUN_CHECKPOINT = "checkpoints/train/checkpoint"
DEFAULT_DATASET = "outputs/datasets/val30"
# name -> (ROC term to the verifier, query rolls); cheapest first, since a tie goes to the first
VARIANTS = {"one2any_no_roc": (False, 1), "one2any_no_roc_rolls4": (False, 4), "one2any_roc": (True, 1)}


def _recall(report: Mapping[str, Any], bin_name: str | None = None) -> float:
    r = report["add_s_01d_recall"] if bin_name is None else report["by_rotation_bin"][bin_name]["add_s_01d_recall"]
    return float("nan") if r is None else float(r)


def _beats(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """``a`` strictly above ``b`` overall and in every decisive bin (a tie adds nothing but latency)."""
    return all(_recall(a, k) > _recall(b, k) for k in (None, *DECISIVE_BINS))


def decide(classic: Mapping[str, Any], variants: Mapping[str, Mapping[str, Any]],
           bundled: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Pick the best learned variant (by overall ADD(-S)@0.1d) and say whether it beats ``classic`` overall and in
    every decisive bin. ``bundled``: the report of the model bundled now (its own inference settings); when that
    one clears the same bar, the candidate must also beat it overall, or a weaker checkpoint would replace a
    stronger one. Reports are ``evaluate_dataset`` reports."""
    if not variants:
        raise ValueError("no learned variant to compare")
    best = max(variants, key=lambda k: _recall(variants[k]))  # the first of equals: VARIANTS lists cheapest first
    rep = variants[best]
    rows = {"overall": (_recall(classic), _recall(rep))}
    rows.update({b: (_recall(classic, b), _recall(rep, b)) for b in DECISIVE_BINS})
    promote = _beats(rep, classic)
    comparison = {k: {"classic": c, "one2any": l} for k, (c, l) in rows.items()}
    if bundled is not None:
        for k in comparison:
            comparison[k]["bundled"] = _recall(bundled, None if k == "overall" else k)
        if _beats(bundled, classic) and not _recall(rep) > _recall(bundled):
            promote = False
    return {"promote": bool(promote), "variant": best, "comparison": comparison,
            "variants": {k: _recall(v) for k, v in variants.items()}}


def _evaluate(dataset: Path, out: Path, backend: str, checkpoint: str | None, roc: bool | None, rolls: int | None,
              max_queries: int | None) -> dict:
    from one2any_ros.core.estimator import PoseEstimator
    from one2any_ros.evaluation import evaluate_dataset

    if backend == "classic":
        est = PoseEstimator("classic")
    else:
        from one2any_ros.core.backends.one2any import One2AnyBackend

        est = PoseEstimator(One2AnyBackend(device="cpu", checkpoint=checkpoint, roc_to_verifier=roc, query_rolls=rolls))
    return evaluate_dataset(dataset, backend=backend, out_dir=out, estimator=est, max_queries=max_queries, plot=False)


def run(checkpoint: str, dataset: Path, out_dir: Path, *, max_queries: int | None = None,
        export: bool = False) -> dict[str, Any]:
    """Evaluate classic, the checkpoint's VARIANTS and the bundled model on ``dataset``; with ``export``, bundle a
    winner."""
    from one2any_ros.core.model.checkpoint import DEFAULT_CHECKPOINT

    if not (dataset / "test").is_dir():
        from one2any_ros.data.generate import render_dataset

        render_dataset(dataset, objects=VAL_RENDER["objects"], scenes=VAL_RENDER["scenes"], frames=VAL_RENDER["frames"],
                       max_rotation_deg=VAL_RENDER["max_rotation_deg"], seed=VAL_RENDER["seed"])
    classic = _evaluate(dataset, out_dir / "classic", "classic", None, None, None, max_queries)
    variants = {name: _evaluate(dataset, out_dir / name, "one2any", checkpoint, roc, rolls, max_queries)
                for name, (roc, rolls) in VARIANTS.items()}
    bundled = None
    if DEFAULT_CHECKPOINT.exists() and Path(checkpoint).resolve().with_suffix("") != DEFAULT_CHECKPOINT.resolve().with_suffix(""):
        bundled = _evaluate(dataset, out_dir / "bundled", "one2any", None, None, None, max_queries)
    result = decide(classic, variants, bundled)
    result.update(checkpoint=str(checkpoint), dataset=str(dataset), max_queries=max_queries,
                  n_queries=classic["n_queries"], exported=None)
    if export and result["promote"]:
        from one2any_ros.training.export import export_checkpoint

        roc, rolls = VARIANTS[result["variant"]]
        inference = {"roc_to_verifier": roc, "query_rolls": rolls,
                     "validation": {k: v for k, v in result.items() if k in ("comparison", "variants", "n_queries")},
                     "validation_set": {**VAL_RENDER} if str(dataset) == DEFAULT_DATASET else str(dataset)}
        paths = export_checkpoint(checkpoint, DEFAULT_CHECKPOINT.with_suffix(""), inference=inference)
        result["exported"] = str(paths[0])
    write_atomic(out_dir / "decision.json", json.dumps(result, indent=1))
    return result


def format_decision(result: Mapping[str, Any]) -> str:
    has_bundled = any("bundled" in v for v in result["comparison"].values())
    lines = [f"{'ADD(-S)@0.1d':<14}{'classic':>10}{'one2any':>10}" + (f"{'bundled':>10}" if has_bundled else "")
             + f"   ({result['variant']}, {result['n_queries']} validation queries)"]
    for k, v in result["comparison"].items():
        lines.append(f"{k:<14}{v['classic']:>10.3f}{v['one2any']:>10.3f}" + (f"{v['bundled']:>10.3f}" if has_bundled else ""))
    verdict = "PROMOTE" if result["promote"] else "keep the bundled model" if has_bundled else "keep classic as the default"
    lines.append(f"decision: {verdict}" + (f" (exported to {result['exported']})" if result.get("exported") else ""))
    return "\n".join(lines)
