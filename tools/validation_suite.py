"""The validation suite (issue 28): a fixed, versioned set of >= 1,000 one-reference queries over VALIDATION objects,
rendered by a command (never committed), and the paired comparison every accuracy claim comes from
(docs/validation.md has the rule).

    # render the suite once (about 1,000 frames; minutes)
    .venv/bin/python tools/validation_suite.py render --out outputs/validation/v1
    # one setting or one checkout over every part (one2any eval's protocol per part)
    .venv/bin/python tools/validation_suite.py run --suite outputs/validation/v1 --out /tmp/A [--settings '{...}']
    git worktree add /tmp/old <commit>
    .venv/bin/python tools/validation_suite.py run --suite outputs/validation/v1 --out /tmp/B --source /tmp/old
    # B against A, paired on the same queries, per rotation bin: bootstrap 95 % interval and McNemar's exact test
    .venv/bin/python tools/validation_suite.py compare /tmp/A /tmp/B

Parts: every family (shape-asymmetric, texture-only, symmetric) x two seeds, 12 scenes of 15 images each (frame 0
the reference), rotations from the reference spread over 0-180 deg (so 120-180 has its own bin), occluding boxes
on 30 % of the query images. A new version changes ``SUITE_VERSION``; results of two versions are never compared.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

SUITE_VERSION = 1
FAMILIES = ("shape_asymmetric", "texture_only", "symmetric")
SEEDS = (101, 202)
SCENES, FRAMES, MAX_ROTATION_DEG, OCCLUDER_PROB = 12, 15, 180.0, 0.3
BOOTSTRAP_DRAWS = 4000


def parts() -> list[dict]:
    """The suite's parts: one rendered BOP dataset each (family x seed)."""
    return [{"name": f"{family}_s{seed}", "family": family, "seed": seed, "scenes": SCENES, "frames": FRAMES,
             "max_rotation_deg": MAX_ROTATION_DEG, "occluder_prob": OCCLUDER_PROB}
            for family in FAMILIES for seed in SEEDS]


def render(out: Path) -> None:
    """Render every part that is not there yet (a part is complete when its suite.json entry is written)."""
    from one2any_ros.data.generate import render_dataset

    out.mkdir(parents=True, exist_ok=True)
    for part in parts():
        root = out / part["name"]
        if (root / "one2any_suite_part.json").is_file():
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


def run(suite: Path, out: Path, *, backend: str, settings: dict, source: str | None) -> None:
    """``one2any eval``'s protocol on every part; per-query records in ``out/<part>/queries.jsonl``."""
    _use_source(source)
    from one2any_ros.core.estimator_settings import EstimatorSettings
    from one2any_ros.evaluation import evaluate_dataset

    meta = json.loads((suite / "suite.json").read_text())
    kwargs = {"settings": EstimatorSettings().with_updates(**settings)}
    for part in meta["parts"]:
        evaluate_dataset(suite / part["name"], backend=backend, out_dir=out / part["name"], estimator_kwargs=kwargs,
                         plot=False)
    (out / "run.json").write_text(json.dumps({"suite_version": meta["suite_version"], "backend": backend,
                                              "settings": settings, "source": source}, indent=1))


def load_records(run_dir: Path) -> dict[tuple, dict]:
    """(part, scene, image, object) -> that query's record (hit, bin, confidence) of a ``run``."""
    out = {}
    for path in sorted(run_dir.glob("*/queries.jsonl")):
        for line in path.read_text().splitlines():
            r = json.loads(line)
            out[(path.parent.name, r["scene_id"], r["im_id"], r["obj_id"])] = r
    return out


def mcnemar_p(b_only: int, a_only: int) -> float:
    """Two-sided exact McNemar p-value: the discordant pairs against a fair coin (scipy's binomial test)."""
    from scipy.stats import binomtest

    n = b_only + a_only
    return 1.0 if n == 0 else float(binomtest(b_only, n, 0.5).pvalue)


def paired_bin(a_hit: np.ndarray, b_hit: np.ndarray, rng: np.random.Generator) -> dict:
    """One bin of the paired comparison: both recalls, B - A with a bootstrap 95 % interval, McNemar's p."""
    d = b_hit.astype(float) - a_hit.astype(float)
    boot = rng.choice(d, (BOOTSTRAP_DRAWS, len(d))).mean(axis=1) if len(d) else np.zeros(1)
    def mean(x: np.ndarray) -> float | None:
        return round(float(x.mean()), 3) if len(x) else None

    return {"n": int(len(d)), "A": mean(a_hit), "B": mean(b_hit), "B_minus_A": mean(d) or 0.0,
            "ci95": [round(float(np.percentile(boot, 2.5)), 3), round(float(np.percentile(boot, 97.5)), 3)],
            "mcnemar_p": round(mcnemar_p(int((d > 0).sum()), int((d < 0).sum())), 4),
            "loses_beyond_interval": bool(np.percentile(boot, 97.5) < 0)}


def compare(a_dir: Path, b_dir: Path, *, confident: float = 0.5) -> dict:
    """B against A on the queries both ran, per rotation bin and per part, and the confident wrong poses."""
    a, b = load_records(a_dir), load_records(b_dir)
    keys = sorted(set(a) & set(b))
    rng = np.random.default_rng(0)
    hit = {name: np.array([r[k]["hit"] for k in keys], bool) for name, r in (("A", a), ("B", b))}
    out = {"n": len(keys), "all": paired_bin(hit["A"], hit["B"], rng), "bins": {}, "parts": {}}
    for key, groups in (("bins", [a[k]["bin"] for k in keys]), ("parts", [k[0] for k in keys])):
        groups = np.array(groups)
        for g in sorted(set(groups)):
            m = groups == g
            out[key][str(g)] = paired_bin(hit["A"][m], hit["B"][m], rng)
    for name, r in (("A", a), ("B", b)):
        conf = np.array([r[k]["confidence"] if r[k]["confidence"] is not None else 0.0 for k in keys])
        out[f"confident_wrong_{name}"] = int((~hit[name] & (conf > confident)).sum())
    out["take"] = not any(v["loses_beyond_interval"] for v in out["bins"].values())
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("render", help="render the suite's parts")
    r.add_argument("--out", type=Path, required=True)
    u = sub.add_parser("run", help="one setting or checkout over every part")
    u.add_argument("--suite", type=Path, required=True)
    u.add_argument("--out", type=Path, required=True)
    u.add_argument("--backend", default="auto")
    u.add_argument("--settings", default="{}", help="EstimatorSettings.with_updates keys, as JSON")
    u.add_argument("--source", help="another checkout whose one2any_ros to measure (a worktree of a commit)")
    c = sub.add_parser("compare", help="B against A, paired")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    args = p.parse_args(argv)
    if args.cmd == "render":
        render(args.out)
    elif args.cmd == "run":
        run(args.suite, args.out, backend=args.backend, settings=json.loads(args.settings), source=args.source)
    else:
        print(json.dumps(compare(args.a, args.b), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
