#!/usr/bin/env python3
"""Probe for issue 16 ("Appearance decides"): do geometric twins + a texture correlation term fix the flips
of shape-symmetric, texture-asymmetric objects? Validation objects only (never the test split).

1. Renders (once) a validation set: object ids from the val range whose shape is (nearly) symmetric and whose
   texture is not (``make_object(id).shape_symmetry != "none"`` and not ``symmetric``: family
   ``texture_only``), plus a few shape-asymmetric ones as a regression check.
2. Evaluates, classic backend, the variants: baseline (all off), twins only, appearance only, both, and both
   + honest confidence; prints per family and rotation bin ADD recall, symmetry errors, confidence AUROC and
   the extra latency per global search (median of the "twins" + "appearance" stage laps, and the median
   total latency).
3. ``--analyse``: replays the recorded final candidates of the "both" run (each candidate's verifier score,
   appearance score and whether it is a hit) under other weights / margins, without re-running the search.

    # the set the knobs were chosen on (seed 16, 400 ids scanned) and a held-out one (seed 17):
    .venv/bin/python tools/probe_appearance.py --out outputs/probe16/final --seed 16 --pool 400
    .venv/bin/python tools/probe_appearance.py --out outputs/probe16/heldout --seed 17 --variants baseline,both_conf
    # replay the 'both' run's final candidates under other weights / margins / confidence margins:
    .venv/bin/python tools/probe_appearance.py --out outputs/probe16/expA --dataset outputs/probe16/final/val_tex \
        --variants both --analyse
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from one2any_ros.data.objects import VAL_RANGE, object_family  # noqa: E402
from one2any_ros.core.protocol import BIN_NAMES, is_hit  # noqa: E402

BINS = BIN_NAMES[:4]


def pick_ids(n_tex: int, n_asym: int, seed: int, pool: int = 4000) -> tuple[list[int], list[int]]:
    """Validation ids: the first ``n_tex`` texture-only and ``n_asym`` shape-asymmetric objects among ``pool``
    ids drawn with ``seed`` (``objects.object_family``; ``render --family`` draws its own sequence)."""
    rng = np.random.default_rng(seed)
    tex, asym = [], []
    for i in rng.choice(VAL_RANGE[1] - VAL_RANGE[0], pool, replace=False) + VAL_RANGE[0]:
        fam = object_family(int(i))
        if fam == "texture_only" and len(tex) < n_tex:
            tex.append(int(i))
        elif fam == "shape_asymmetric" and len(asym) < n_asym:
            asym.append(int(i))
        if len(tex) >= n_tex and len(asym) >= n_asym:
            break
    return tex, asym


class Recorder:
    """Wraps a PoseEstimator for evaluate_dataset: keeps each estimate's stage timings and, with ``pools``,
    its final candidates (pose in the object frame, verifier score, appearance score, source)."""

    def __init__(self, est, pools: bool = False):
        self.est, self.pools = est, pools
        self.est.record_pool = pools
        self.timings: list[dict] = []
        self.records: list[dict | None] = []

    @property
    def backend(self):
        return self.est.backend

    def set_reference(self, view):
        return self.est.set_reference(view)

    def estimate(self, view, track=False):
        self.est.last_pool = None
        try:
            r = self.est.estimate(view, track=track)
        finally:
            p = self.est.last_pool
            if self.pools:
                if p is None:
                    self.records.append(None)
                else:
                    # every candidate's appearance score (the estimator scores only those within its margin)
                    app = self.est._appearance(p.refined_T_camera_C, self.est._context(view))
                    self.records.append({"T_obj": p.refined_T_camera_C @ self.est.reference.T_C_O,
                                         "conf": np.asarray(p.refined_confidence),
                                         "score": np.asarray(p.refined_score), "app": np.asarray(app),
                                         "src": list(p.refined_sources or []), "chosen": p.chosen})
        self.timings.append(dict(r.timings_ms))
        return r


def run_variant(name: str, kw: dict, dataset: Path, out: Path, max_queries: int, pools: bool = False):
    from one2any_ros.core.estimator import PoseEstimator
    from one2any_ros.core.estimator_settings import EstimatorSettings
    from one2any_ros.evaluation import evaluate_dataset

    settings = EstimatorSettings().with_updates(**kw)
    rec = Recorder(PoseEstimator("classic", settings=settings), pools=pools)
    t = time.time()
    rep = evaluate_dataset(dataset, split="test", backend="classic", out_dir=out / name, max_queries=max_queries,
                           progress=False, estimator=rec, plot=False)
    extra = [tm.get("twins", 0.0) + tm.get("appearance", 0.0) for tm in rec.timings]
    total = [tm.get("total", np.nan) for tm in rec.timings]
    row = {"variant": name, "settings": kw, "wall_s": time.time() - t,
           "extra_ms_median": float(np.median(extra)) if extra else None,
           "total_ms_median": float(np.nanmedian(total)) if total else None,
           "overall": rep["add_s_01d_recall"], "auroc": rep["confidence_auroc"],
           "symmetry_errors": rep["symmetry_errors"]["symmetry_errors"], "n": rep["n_queries"],
           "by_family": rep["by_family"]}
    (out / name / "probe_row.json").write_text(json.dumps(row, indent=1, default=float))
    return (row, rec) if pools else (row, None)  # the candidates stay in memory (--analyse); no pickle on disk


def family_auroc(out: Path, name: str, dataset: Path) -> dict:
    """Confidence AUROC per family, from queries.jsonl (evaluate's report has it overall only)."""
    from one2any_ros.core import metrics
    from one2any_ros.data import bop
    from one2any_ros.evaluation import info_family

    info = json.loads((dataset / "models" / "models_info.json").read_text())
    fam = {int(k): v.get("family") or info_family(v, bool(bop.is_symmetric(v))) for k, v in info.items()}
    per: dict[str, list] = {}
    for line in (out / name / "queries.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r.get("ok") and r.get("confidence") is not None:
            per.setdefault(fam[int(r["obj_id"])], []).append((r["confidence"], r["hit"]))
    return {f: metrics.confidence_auroc([c for c, _ in v], [h for _, h in v]) for f, v in per.items()}


def print_table(rows: list[dict], aurocs: dict) -> None:
    fams = sorted({f for r in rows for f in r["by_family"]})
    print()
    hdr = f"{'variant':<12}{'family':<18}{'n':>4}{'recall':>8}" + "".join(f"{b:>8}" for b in BINS) + \
        f"{'symerr':>8}{'AUROC':>8}{'+ms':>8}{'tot ms':>8}"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        for f in ["all"] + fams:
            if f == "all":
                n, rec, bins, se, au = r["n"], r["overall"], {}, r["symmetry_errors"], r["auroc"]
            else:
                bf = r["by_family"][f]
                n, rec, bins, se = bf["n"], bf["add_s_01d_recall"], bf["by_rotation_bin"], bf["symmetry_errors"]
                au = aurocs.get(r["variant"], {}).get(f)
            fmt = lambda x: "   n/a" if x is None else f"{x:.3f}"  # noqa: E731
            print(f"{r['variant']:<12}{f:<18}{n:>4}{fmt(rec):>8}" + "".join(f"{fmt(bins.get(b)):>8}" for b in BINS)
                  + f"{se:>8}{fmt(au):>8}{r['extra_ms_median']:>8.0f}{r['total_ms_median']:>8.0f}")
    print()


def analyse(rec: Recorder, dataset: Path, out: Path, name: str) -> None:
    """Replay the recorded final candidates under other weights / margins (texture_only family only)."""
    lines = [json.loads(x) for x in (out / name / "queries.jsonl").read_text().splitlines()]
    if len(lines) != len(rec.records):
        print(f"analyse: {len(lines)} queries but {len(rec.records)} recorded estimates; skipped")
        return
    tex = [d for d in _scored_candidates(rec, lines, dataset) if d["fam"] == "texture_only"]
    print(f"analyse ({len(tex)} texture_only queries with recorded candidates):")
    print(f"  a hit among the final candidates: {np.mean([d['hit'].any() for d in tex]):.3f} "
          f"(without twins {np.mean([d['hit'][~d['twin']].any() for d in tex]):.3f})")
    _print_weights(tex)
    _print_confidence_margins(tex)


def _scored_candidates(rec: Recorder, lines: list[dict], dataset: Path) -> list[dict]:
    """Per recorded query: its family, bin, and per candidate the hit, verifier score, appearance term,
    confidence, pose and whether it is a geometric twin."""
    from one2any_ros.data import bop
    from one2any_ros.evaluation import load_eval_model

    info = bop.load_models_info(dataset)
    models, scenes, data = {}, {}, []
    for q, p in zip(lines, rec.records):
        if p is None:
            continue
        oid, sid = int(q["obj_id"]), int(q["scene_id"])
        if oid not in models:
            models[oid] = load_eval_model(bop, dataset, oid, info)
        if sid not in scenes:
            scenes[sid] = bop.load_scene(dataset, "test", sid)
        m = models[oid]
        T_gt = np.asarray(bop.load_image(scenes[sid], q["im_id"])["T_cam_obj"])
        P = m.pts
        est = np.einsum("bij,nj->bni", p["T_obj"][:, :3, :3], P) + p["T_obj"][:, None, :3, 3]
        gt = P @ T_gt[:3, :3].T + T_gt[:3, 3]
        hit = is_hit(np.linalg.norm(est - gt[None], axis=2).mean(axis=1), m.diameter_m)
        data.append({"fam": m.family, "bin": q["bin"], "hit": hit, "score": p["score"], "app": p["app"],
                     "conf": p["conf"], "T": p["T_obj"],
                     "twin": np.array([s == "twin" for s in p["src"]]) if p["src"] else np.zeros(len(hit), bool)})
    return data


def _print_weights(tex: list[dict]) -> None:
    """Recall (overall and 90-120 deg) with and without twins, by appearance weight and score margin."""
    print(f"{'twins':>6}{'weight':>8}{'margin':>8}{'recall':>8}{'90-120':>8}")
    for twins in (False, True):
        for w in (0.0, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0):
            for mg in ((0.1,) if w == 0 else (0.02, 0.05, 0.1, 0.2, 0.5, 10.0)):
                hits, hits90 = [], []
                for d in tex:
                    keep = np.ones(len(d["hit"]), bool) if twins else ~d["twin"]
                    s, a, h = d["score"][keep], d["app"][keep], d["hit"][keep]
                    c = np.where(s >= s.max() - mg, s + w * a, -np.inf)
                    hits.append(h[int(np.argmax(c))])
                    if d["bin"] == "90-120":
                        hits90.append(hits[-1])
                r90 = np.mean(hits90) if hits90 else float("nan")
                print(f"{str(twins):>6}{w:>8.2f}{mg:>8.2f}{np.mean(hits):>8.3f}{r90:>8.3f}")


def _print_confidence_margins(tex: list[dict]) -> None:
    """The honest confidence's AUROC by its margin and the rival's least angle."""
    from one2any_ros.core import metrics
    from one2any_ros.core.appearance import margin_factor

    print("honest confidence (twins, weight 0.5, margin 0.1): texture_only AUROC by confidence_margin")
    for cm in (0.0, 0.02, 0.05, 0.1, 0.2, 0.4):
        for deg in (15.0, 45.0):
            confs, hits = [], []
            for d in tex:
                s, a, h, T = d["score"], d["app"], d["hit"], d["T"]
                c = np.where(s >= s.max() - 0.1, s + 0.5 * a, -np.inf)
                b = int(np.argmax(c))
                confs.append(d["conf"][b] * margin_factor(c, T, b, margin=cm, min_deg=deg))
                hits.append(bool(h[b]))
            print(f"  margin {cm:.2f} rival > {deg:.0f} deg: AUROC {metrics.confidence_auroc(confs, hits):.3f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="outputs/probe16")
    ap.add_argument("--dataset", default=None, help="default: OUT/val_tex (rendered when missing)")
    ap.add_argument("--n-tex", type=int, default=18)
    ap.add_argument("--n-asym", type=int, default=3)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--pool", type=int, default=4000, help="val ids scanned for the objects (the tuning set: 400)")
    ap.add_argument("--max-queries", type=int, default=147)
    ap.add_argument("--twin-top-k", type=int, default=2)
    ap.add_argument("--weight", type=float, default=0.5)
    ap.add_argument("--margin", type=float, default=0.1)
    ap.add_argument("--confidence-margin", type=float, default=0.2)
    ap.add_argument("--twin-angles", type=int, default=24)
    ap.add_argument("--twin-depth-offset", type=float, default=0.5)
    ap.add_argument("--twin-thresholds", default="0.2,0.1,0.05,0.025")
    ap.add_argument("--twin-iterations", type=int, default=2)
    ap.add_argument("--variants", default="both,baseline,twins,appearance,both_conf")
    ap.add_argument("--analyse", action="store_true", help="replay the 'both' run's candidates under other weights")
    a = ap.parse_args(argv)
    out = Path(a.out)
    dataset = Path(a.dataset) if a.dataset else out / "val_tex"
    if not (dataset / "models" / "models_info.json").is_file():
        from one2any_ros.data.generate import render_dataset

        tex, asym = pick_ids(a.n_tex, a.n_asym, a.seed, a.pool)
        print("rendering", tex, asym)
        render_dataset(dataset, objects=tex + asym, frames=a.frames, max_rotation_deg=120, seed=a.seed,
                       progress=False, split="test")
    app = {"appearance_weight": a.weight, "appearance_margin": a.margin}
    tw = {"twin_top_k": a.twin_top_k, "twin_angles": a.twin_angles, "twin_depth_offset": a.twin_depth_offset,
          "twin_thresholds": tuple(float(x) for x in a.twin_thresholds.split(",")),
          "twin_iterations": a.twin_iterations}
    variants = {"baseline": {}, "twins": dict(tw), "appearance": dict(app), "both": {**tw, **app},
                "both_conf": {**tw, **app, "confidence_margin": a.confidence_margin}}
    rows, aurocs = [], {}
    for name in a.variants.split(","):
        row, rec = run_variant(name, variants[name], dataset, out, a.max_queries, pools=a.analyse and name == "both")
        rows.append(row)
        aurocs[name] = family_auroc(out, name, dataset)
        print(f"{name}: recall {row['overall']:.3f}, {row['wall_s']:.0f} s", flush=True)
        if rec is not None:
            analyse(rec, dataset, out, name)
    table = {"rows": rows, "auroc_by_family": aurocs}
    (out / "probe_table.json").write_text(json.dumps(table, indent=1, default=float))
    order = [v for v in variants if v in {r["variant"] for r in rows}]
    print_table(sorted(rows, key=lambda r: order.index(r["variant"])), aurocs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
