"""The validation suite (issue 28): a fixed, versioned set of >= 1,000 one-reference queries over VALIDATION objects,
rendered by a command (never committed), and the paired comparison every accuracy claim comes from
(docs/validation.md has the rule).

    # render the suite once (about 1,000 frames; minutes); --reuse links the parts an earlier version rendered
    .venv/bin/python tools/validation_suite.py render --out outputs/validation/v2 [--reuse outputs/validation/v1]
    # one setting or one checkout over every part (one2any eval's protocol per part; --parts 'NAME*' for some)
    .venv/bin/python tools/validation_suite.py run --suite outputs/validation/v2 --out /tmp/A [--settings '{...}']
    git worktree add /tmp/old <commit>
    .venv/bin/python tools/validation_suite.py run --suite outputs/validation/v2 --out /tmp/B --source /tmp/old
    # B against A, paired on the same queries, per rotation bin: bootstrap 95 % interval and McNemar's exact test
    .venv/bin/python tools/validation_suite.py compare /tmp/A /tmp/B
    # what segmenter-like masks cost: a run's segmenter parts against the clean parts of the same frames
    .venv/bin/python tools/validation_suite.py compare /tmp/A /tmp/A --masks
    # one run alone (recall per part and bin, confident wrong, confidence AUROC): docs/benchmarks.md's suite section
    .venv/bin/python tools/validation_suite.py summary /tmp/A

Rendered parts: every family (shape-asymmetric, texture-only, symmetric) x two seeds, 12 scenes of 15 images each
(frame 0 the reference), rotations from the reference spread over 0-180 deg (so 120-180 has its own bin), occluding
boxes on 30 % of the query images. Version 2 adds segmenter parts: the rendered frames of every family's seed-101
part again, each query's mask made segmenter-like at evaluation time (data/segmenter_masks.py; the reference's mask
stays clean); a part with a ``dataset`` field evaluates that part's frames, with its ``query_masks``. A new version
changes ``SUITE_VERSION``; results of two versions are never compared.
"""
from __future__ import annotations

import argparse
import json
import sys
from fnmatch import fnmatch
from pathlib import Path

import numpy as np

SUITE_VERSION = 2
FAMILIES = ("shape_asymmetric", "texture_only", "symmetric")
SEEDS = (101, 202)
SEGMENTER_SEEDS = (101,)  # version 2: these seeds' rendered parts again, with segmenter-like query masks
SCENES, FRAMES, MAX_ROTATION_DEG, OCCLUDER_PROB = 12, 15, 180.0, 0.3
BOOTSTRAP_DRAWS = 4000


def parts() -> list[dict]:
    """The suite's parts: one rendered BOP dataset each (family x seed), then the segmenter parts, which evaluate a
    rendered part's frames (``dataset``) with segmenter-like query masks."""
    rendered = [{"name": f"{family}_s{seed}", "family": family, "seed": seed, "scenes": SCENES, "frames": FRAMES,
                 "max_rotation_deg": MAX_ROTATION_DEG, "occluder_prob": OCCLUDER_PROB}
                for family in FAMILIES for seed in SEEDS]
    segmenter = [{**p, "name": f"{p['name']}_segmenter", "dataset": p["name"], "query_masks": "segmenter"}
                 for p in rendered if p["seed"] in SEGMENTER_SEEDS]
    return rendered + segmenter


def _rendered_as(root: Path, part: dict) -> bool:
    """Whether ``root`` holds this part completely rendered (its one2any_suite_part.json written last); a part
    rendered with another definition is an error, never silently reused."""
    path = root / "one2any_suite_part.json"
    if not path.is_file():
        return False
    there = {k: v for k, v in json.loads(path.read_text()).items() if k != "suite_version"}
    if there != part:
        raise ValueError(f"{root} holds another part than {part['name']} of suite version {SUITE_VERSION}: {there}")
    return True


def render(out: Path, reuse: Path | None = None) -> None:
    """Render every rendered part that is not there yet (a part is complete when its one2any_suite_part.json is
    written); with ``reuse`` (an earlier version's suite), a part complete there is linked instead of rendered."""
    from one2any_ros.data.generate import render_dataset

    out.mkdir(parents=True, exist_ok=True)
    for part in parts():
        if "dataset" in part:  # evaluates a rendered part's frames: nothing to render
            continue
        root = out / part["name"]
        if _rendered_as(root, part):
            continue
        if reuse is not None and _rendered_as(reuse / part["name"], part) and not root.exists():
            root.symlink_to((reuse / part["name"]).resolve(), target_is_directory=True)
            continue
        render_dataset(root, objects="val", family=part["family"], scenes=part["scenes"], frames=part["frames"],
                       max_rotation_deg=part["max_rotation_deg"], occluder_prob=part["occluder_prob"],
                       seed=part["seed"])
        (root / "one2any_suite_part.json").write_text(json.dumps({"suite_version": SUITE_VERSION, **part}))
    (out / "suite.json").write_text(json.dumps({"suite_version": SUITE_VERSION, "parts": parts()}, indent=1))


def _use_source(source: str | None) -> None:
    """Import one2any_ros from another checkout (a worktree of a commit) instead of this one's source finder."""
    if source:
        sys.meta_path[:] = [f for f in sys.meta_path if getattr(f, "__module__", "") != "_one2any_ros_source"]
        sys.path.insert(0, str(Path(source).resolve()))


def _query_masks(part: dict) -> str:
    return part.get("query_masks", "clean")


def run(suite: Path, out: Path, *, backend: str, settings: dict, source: str | None,
        only: list[str] | None = None, draw: int = 0) -> None:
    """``one2any eval``'s protocol on every part (``only``: the parts whose names match one of these patterns);
    per-query records in ``out/<part>/queries.jsonl``, the parts run listed in ``out/run.json`` (a later run of
    other parts into the same ``out``, same backend, settings and source, adds to them). ``draw``: another equally
    good draw of the subsampled points (``geometry.SUBSAMPLE_SEED``; 0 = the default), to see what a change does
    beyond the one draw earlier choices were made on (docs/validation.md, "The rule")."""
    _use_source(source)
    from one2any_ros.core import geometry
    from one2any_ros.core.estimator_settings import EstimatorSettings
    from one2any_ros.evaluation import evaluate_dataset

    meta = json.loads((suite / "suite.json").read_text())
    run_meta = {"suite_version": meta["suite_version"], "backend": backend, "settings": settings, "source": source}
    if draw:
        if not hasattr(geometry, "SUBSAMPLE_SEED"):
            raise SystemExit(f"--draw {draw}: this checkout's geometry has no SUBSAMPLE_SEED")
        geometry.SUBSAMPLE_SEED = run_meta["draw"] = draw
    done = _earlier_parts(out, run_meta)
    kwargs = {"settings": EstimatorSettings().with_updates(**settings)}
    for part in meta["parts"]:
        if only and not any(fnmatch(part["name"], pattern) for pattern in only):
            continue
        masks = {} if _query_masks(part) == "clean" else {"query_masks": _query_masks(part)}  # older checkouts: clean
        evaluate_dataset(suite / part.get("dataset", part["name"]), backend=backend, out_dir=out / part["name"],
                         estimator_kwargs=kwargs, plot=False, **masks)
        done[part["name"]] = part
        (out / "run.json").write_text(json.dumps({**run_meta, "parts": list(done.values())}, indent=1))


def _earlier_parts(out: Path, run_meta: dict) -> dict[str, dict]:
    """The parts an earlier run into ``out`` ran, by name; refused when it ran another setting or version."""
    path = out / "run.json"
    if not path.is_file():
        return {}
    earlier = json.loads(path.read_text())
    if {k: earlier.get(k) for k in run_meta} != run_meta:
        raise ValueError(f"{out} holds a run of another setting, source or suite version: {earlier}")
    return {p["name"]: p for p in earlier.get("parts", [])}


def run_parts(run_dir: Path) -> dict[str, dict]:
    """The part definitions a ``run`` wrote into its run.json, by name (none from a version-1 run: every part
    there is its own rendered frames with clean masks)."""
    path = run_dir / "run.json"
    meta = json.loads(path.read_text()) if path.is_file() else {}
    return {p["name"]: p for p in meta.get("parts", [])}


def load_records(run_dir: Path, *, query_masks: str | None = None) -> dict[tuple, dict]:
    """(part, scene, image, object) -> that query's record (hit, bin, confidence) of a ``run``. With
    ``query_masks``, only the parts of those masks, each keyed by the rendered part whose frames it evaluated, so
    that a segmenter part pairs with the clean part of the same frames."""
    defs = run_parts(run_dir)
    out = {}
    for path in sorted(run_dir.glob("*/queries.jsonl")):
        part = defs.get(path.parent.name, {"name": path.parent.name})
        if query_masks is not None and _query_masks(part) != query_masks:
            continue
        name = part.get("dataset", part["name"]) if query_masks is not None else part["name"]
        for line in path.read_text().splitlines():
            r = json.loads(line)
            out[(name, r["scene_id"], r["im_id"], r["obj_id"])] = r
    return out


def mcnemar_p(b_only: int, a_only: int) -> float:
    """Two-sided exact McNemar p-value: the discordant pairs against a fair coin (scipy's binomial test)."""
    from scipy.stats import binomtest

    n = b_only + a_only
    return 1.0 if n == 0 else float(binomtest(b_only, n, 0.5).pvalue)


def paired_bin(a_hit: np.ndarray, b_hit: np.ndarray, rng: np.random.Generator) -> dict:
    """One bin of the paired comparison: both recalls, B - A with a bootstrap 95 % interval, McNemar's p (with several
    draws a side, hits are shares of right draws and the p is the sign test on the queries whose shares differ)."""
    d = b_hit.astype(float) - a_hit.astype(float)
    boot = rng.choice(d, (BOOTSTRAP_DRAWS, len(d))).mean(axis=1) if len(d) else np.zeros(1)
    def mean(x: np.ndarray) -> float | None:
        return round(float(x.mean()), 3) if len(x) else None

    return {"n": int(len(d)), "A": mean(a_hit), "B": mean(b_hit), "B_minus_A": mean(d) or 0.0,
            "ci95": [round(float(np.percentile(boot, 2.5)), 3), round(float(np.percentile(boot, 97.5)), 3)],
            "mcnemar_p": round(mcnemar_p(int((d > 0).sum()), int((d < 0).sum())), 4),
            "loses_beyond_interval": bool(np.percentile(boot, 97.5) < -1e-9)}  # shares of draws: float sums


def compare(a_dir: Path | list[Path], b_dir: Path | list[Path], *, confident: float = 0.5,
            masks: bool = False) -> dict:
    """B against A on the queries both ran, per rotation bin, per part and per kind of query mask, and the confident
    wrong poses (overall and per group). ``masks``: A's clean parts against B's segmenter parts on the same frames
    (A and B may be one run) - what segmenter-like masks cost. Several runs per side (``run --draw``, paired by
    position): a query's hit is its share of right draws, and the confident wrong poses are counted over every draw
    (docs/validation.md, "Another draw of the same points")."""
    a_dirs, b_dirs = ([d] if isinstance(d, Path) else list(d) for d in (a_dir, b_dir))
    if len(a_dirs) != len(b_dirs):
        raise ValueError(f"A has {len(a_dirs)} runs and B {len(b_dirs)}: pair the draws one to one")
    if masks:
        a_runs = [load_records(d, query_masks="clean") for d in a_dirs]
        b_runs = [load_records(d, query_masks="segmenter") for d in b_dirs]
    else:
        a_runs, b_runs = [load_records(d) for d in a_dirs], [load_records(d) for d in b_dirs]
    a = a_runs[0]
    keys = sorted(set.intersection(*(set(r) for r in a_runs + b_runs)))
    rng = np.random.default_rng(0)
    hit, wrong = {}, {}
    for name, runs in (("A", a_runs), ("B", b_runs)):
        hits = np.array([[r[k]["hit"] for k in keys] for r in runs], bool)
        conf = np.array([[r[k]["confidence"] if r[k]["confidence"] is not None else 0.0 for k in keys] for r in runs])
        hit[name] = hits.mean(axis=0) if len(runs) > 1 else hits[0]
        wrong[name] = (~hits & (conf > confident)).sum(axis=0)

    def group(m: np.ndarray) -> dict:
        return {**paired_bin(hit["A"][m], hit["B"][m], rng),
                "confident_wrong_A": int(wrong["A"][m].sum()), "confident_wrong_B": int(wrong["B"][m].sum())}

    defs = run_parts(b_dirs[0])
    kinds = ["segmenter" if masks else _query_masks(defs.get(k[0], {})) for k in keys]
    out = {"n": len(keys), "draws": len(a_dirs), "pairing": "A clean, B segmenter masks" if masks else "same part",
           "all": group(np.ones(len(keys), bool)), "bins": {}, "parts": {}, "query_masks": {}}
    for key, groups in (("bins", [a[k]["bin"] for k in keys]), ("parts", [k[0] for k in keys]), ("query_masks", kinds)):
        groups = np.array(groups)
        for g in sorted(set(groups)):
            out[key][str(g)] = group(groups == g)
    for name in ("A", "B"):
        out[f"confident_wrong_{name}"] = int(wrong[name].sum())
    out["take"] = not any(v["loses_beyond_interval"] for v in out["bins"].values())
    return out


def auroc(right: np.ndarray, confidence: np.ndarray) -> float | None:
    """metrics.confidence_auroc, rounded for the summary."""
    from one2any_ros.core.metrics import confidence_auroc

    a = confidence_auroc(confidence, right)
    return None if a is None else round(a, 3)


def summary(run_dir: Path, *, confident: float = 0.5) -> dict:
    """One run alone: recall per part and rotation bin, confident wrong poses and the confidence AUROC (right vs
    wrong) per part - what docs/benchmarks.md shows of the shipped defaults. A failure counts as a miss at
    confidence 0."""
    records = load_records(run_dir)
    meta = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}

    def stats(rows: list[dict]) -> dict:
        hit = np.array([r["hit"] for r in rows], bool)
        conf = np.array([r["confidence"] if r["confidence"] is not None else 0.0 for r in rows])
        bins = {}
        for b in sorted({r["bin"] for r in rows}):
            m = np.array([r["bin"] == b for r in rows])
            bins[str(b)] = {"n": int(m.sum()), "recall": round(float(hit[m].mean()), 3)}
        return {"n": len(rows), "recall": round(float(hit.mean()), 3) if len(rows) else None,
                "confident_wrong": int((~hit & (conf > confident)).sum()), "auroc": auroc(hit, conf), "bins": bins}

    parts = sorted({k[0] for k in records})
    return {"suite_version": meta.get("suite_version"), "backend": meta.get("backend"),
            "settings": meta.get("settings", {}), "source": meta.get("source"),
            "all": stats(list(records.values())),
            "parts": {name: stats([r for k, r in records.items() if k[0] == name]) for name in parts}}


def _paths(text: str) -> list[Path]:
    """Comma-separated run directories."""
    return [Path(p) for p in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("render", help="render the suite's parts")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--reuse", type=Path, help="an earlier version's suite: link its rendered parts instead of rendering")
    u = sub.add_parser("run", help="one setting or checkout over every part")
    u.add_argument("--suite", type=Path, required=True)
    u.add_argument("--out", type=Path, required=True)
    u.add_argument("--backend", default="auto")
    u.add_argument("--settings", default="{}", help="EstimatorSettings.with_updates keys, as JSON")
    u.add_argument("--source", help="another checkout whose one2any_ros to measure (a worktree of a commit)")
    u.add_argument("--draw", type=int, default=0,
                   help="another equally good draw of the subsampled points (geometry.SUBSAMPLE_SEED; 0 = the default)")
    u.add_argument("--parts", nargs="+", metavar="PATTERN", help="only the parts whose names match (shell patterns)")
    c = sub.add_parser("compare", help="B against A, paired")
    c.add_argument("a", type=_paths, help="A's run, or several (one per --draw) separated by commas")
    c.add_argument("b", type=_paths, help="B's, the same draws in the same order")
    c.add_argument("--masks", action="store_true",
                   help="A's clean parts against B's segmenter parts on the same frames (A and B may be one run)")
    m = sub.add_parser("summary", help="one run alone: recall per part and bin, confident wrong, AUROC")
    m.add_argument("run", type=Path)
    args = p.parse_args(argv)
    if args.cmd == "render":
        render(args.out, args.reuse)
    elif args.cmd == "run":
        run(args.suite, args.out, backend=args.backend, settings=json.loads(args.settings), source=args.source,
            only=args.parts, draw=args.draw)
    elif args.cmd == "summary":
        print(json.dumps(summary(args.run), indent=1))
    else:
        print(json.dumps(compare(args.a, args.b, masks=args.masks), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
