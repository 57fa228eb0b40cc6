"""Tracking, measured paired: two settings or two commits on the same rendered object-frames, per bin of rotation
from the reference, with a bootstrap interval over whole sequences (docs/tracking.md).

    # per object-frame results (JSON lines) of this checkout, then of another one (a commit in a worktree)
    .venv/bin/python tools/compare_tracking.py run --out /tmp/new.jsonl --backend auto --seed 3
    git worktree add /tmp/old <commit>
    .venv/bin/python tools/compare_tracking.py run --out /tmp/old.jsonl --backend auto --seed 3 --source /tmp/old
    .venv/bin/python tools/compare_tracking.py compare /tmp/old.jsonl /tmp/new.jsonl
    # the rule's comparison: three draws of the subsampled points a side (run ... --draw 1, --draw 2), paired
    .venv/bin/python tools/compare_tracking.py compare /tmp/old.jsonl,/tmp/old1.jsonl,/tmp/old2.jsonl \
        /tmp/new.jsonl,/tmp/new1.jsonl,/tmp/new2.jsonl

The sequences: ``--scenes`` scenes of two VALIDATION objects (one shape-asymmetric, one texture-only: never the
test split), each turning 4-8 deg a frame about its own random axis and drifting ~4 mm a frame, ``--frames``
frames at 320x240 with sensor noise, a correct mask every frame (tracking's best case); frame 0 is the reference
(its pose known). Each later frame is estimated with ``track=True`` (or, ``--oneshot``, from nothing). An
object-frame hidden by the other object is skipped. 26 scenes x 21 frames give ~1,040 object-frames.
``--families symmetric,symmetric``: two objects of other families instead (a symmetric object - shape and texture -
is scored by ADD-S, every other by ADD).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

BINS = ((0, 30), (30, 60), (60, 90), (90, 120), (120, 180))
BOOTSTRAP_DRAWS = 4000
LOSS_TOLERANCE = 1e-9  # an interval's top below -this loses (float sums of 1/3s are not exactly 0)
FAMILIES = ("shape_asymmetric", "texture_only")


def _use_source(source: str | None) -> None:
    """Import one2any_ros from another checkout: without the venv's source-tree finder (it points at this one), from
    the front of sys.path (only the library is measured: the generated msg/srv are not needed)."""
    if source:
        sys.meta_path[:] = [f for f in sys.meta_path if getattr(f, "__module__", "") != "_one2any_ros_source"]
        sys.path.insert(0, str(Path(source).resolve()))


def sequences(n_scenes: int, n_frames: int, seed: int, plain: bool = False,
              families: tuple[str, ...] = FAMILIES) -> list[tuple[list, list[dict]]]:
    """[(objects, frames)] as the module docstring says; ``plain``: each object painted one colour (its texture's
    mean), an object without texture; ``families``: the two objects' (``objects.FAMILIES``)."""
    from dataclasses import replace

    from one2any_ros.data.multi_scene import render_multi_object_frames
    from one2any_ros.data.objects import make_object, split_ids
    from one2any_ros.data.render import axis_angle_to_matrix, random_rotation

    rng = np.random.default_rng(seed)
    ids = {f: split_ids("val", 2 * n_scenes + 2, seed=seed, family=f) for f in families}
    K = np.array([[300.0, 0, 159.5], [0, 300.0, 119.5], [0, 0, 1]])
    out = []
    for s in range(n_scenes):
        objs = [make_object(ids[f][(2 * s + k) % len(ids[f])]) for k, f in enumerate(families)]
        if plain:
            objs = [replace(o, texture=np.full_like(o.texture, o.texture.reshape(-1, 3).mean(axis=0))) for o in objs]
        centres = [np.array([-0.1, 0.0, 0.6]), np.array([0.1, 0.0, 0.62])]
        starts = [random_rotation(rng) for _ in objs]
        axes = [a / np.linalg.norm(a) for a in (rng.normal(size=3) for _ in objs)]
        drift = [rng.normal(size=3) * 0.004 for _ in objs]
        step = rng.uniform(4, 8)
        poses = []
        for f in range(n_frames):
            frame = []
            for o, c, R0, ax, v in zip(objs, centres, starts, axes, drift):
                T = np.eye(4)
                T[:3, :3] = axis_angle_to_matrix(ax, np.radians(step * f)) @ R0
                T[:3, 3] = c + f * v - T[:3, :3] @ (o.bbox_min + o.extents / 2)
                frame.append(T)
            poses.append(frame)
        out.append((objs, render_multi_object_frames(objs, poses, K, 320, 240, seed=s, depth_noise=True)))
    return out


def run(args: argparse.Namespace) -> None:
    _use_source(args.source)
    from one2any_ros.core import metrics
    from one2any_ros.core.backends import create_backend
    from one2any_ros.core.estimator import PoseEstimator
    from one2any_ros.core.estimator_settings import EstimatorSettings
    from one2any_ros.core.geometry import rotation_angle_deg
    from one2any_ros.core.errors import One2AnyError
    from one2any_ros.core.frame import decode_frame

    if args.masks == "first":  # (a checkout before issue 26 has no core/tracking.py)
        from one2any_ros.core.tracking import ObjectTrack, estimate_object
    if args.draw:
        from one2any_ros.core import geometry
        if not hasattr(geometry, "SUBSAMPLE_SEED"):
            raise SystemExit(f"--draw {args.draw}: this checkout's geometry has no SUBSAMPLE_SEED")
        geometry.SUBSAMPLE_SEED = args.draw
    settings = EstimatorSettings().with_updates(**json.loads(args.settings))
    backend = create_backend(args.backend)
    rows = []
    families = tuple(args.families.split(","))
    for s, (objs, frames) in enumerate(sequences(args.scenes, args.frames, args.seed, args.plain, families)):
        for k, obj in enumerate(objs):
            est = PoseEstimator(backend, settings=settings)
            f0 = frames[0]
            ref = est.set_reference(decode_frame(f0["rgb"], f0["depth"], f0["labels"], f0["K"]).view(
                k + 1, T_cam_obj=f0["T_cam_obj"][k]))
            if args.masks == "first":
                track = ObjectTrack(last_T_C=ref.T_refcam_C.copy(), seen_T_C=ref.T_refcam_C.copy())
            for i, f in enumerate(frames[1:], 1):
                try:
                    view = decode_frame(f["rgb"], f["depth"], f["labels"], f["K"]).view(k + 1)
                except Exception:  # hidden by the other object
                    continue
                gt = f["T_cam_obj"][k]
                add = metrics.add_s if obj.symmetric else metrics.add
                if args.oneshot:
                    est.last_T_C = None
                t = time.perf_counter()
                try:
                    if args.masks == "first":  # no mask after the reference: tracked from its predicted silhouette
                        try:
                            r = estimate_object(est, decode_frame(f["rgb"], f["depth"], None, f["K"]), track.cue())
                        except One2AnyError as e:
                            track.update(e)
                            raise
                        track.update(r)
                    else:
                        r = est.estimate(view, track=not args.oneshot)
                    T, conf, mode, app = r.T_camera_object, float(r.confidence), r.mode, getattr(r, "appearance", None)
                    source, vconf = r.source, getattr(r, "verifier_confidence", None)
                except Exception:
                    T, conf, mode, app, source, vconf = None, 0.0, "none", None, None, None
                ms = 1000.0 * (time.perf_counter() - t)
                rows.append({
                    "key": f"{s}/{k}/{i}", "family": families[k], "mode": mode, "ms": ms, "confidence": conf,
                    "verifier_confidence": vconf, "appearance": app, "source": source,
                    "right": bool(T is not None and add(T, gt, obj.vertices) < 0.1 * obj.diameter),
                    "from_reference_deg": float(rotation_angle_deg(gt[:3, :3].T @ f0["T_cam_obj"][k][:3, :3])),
                    "rot_deg": 180.0 if T is None else float(rotation_angle_deg(T[:3, :3].T @ gt[:3, :3])),
                    "mm": None if T is None else 1000.0 * float(np.linalg.norm(T[:3, 3] - gt[:3, 3]))})
    Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"{len(rows)} object-frames -> {args.out}")


def _load_draws(files: str) -> list[dict[str, dict]]:
    """Each comma-separated file's rows by key (one file per draw)."""
    return [{r["key"]: r for r in map(json.loads, Path(f).read_text().splitlines())} for f in files.split(",")]


def summary(per_draw: list[list[dict]]) -> dict:
    """One side's numbers over the rows of all its draws (the longest wrong run: the longest in any draw)."""
    from one2any_ros.core.metrics import confidence_auroc

    x = [r for rows in per_draw for r in rows]
    ok = np.array([r["right"] for r in x])
    conf = np.array([r["confidence"] for r in x])
    published = np.array([r["mode"] != "none" for r in x])
    auroc = confidence_auroc(conf[published], ok[published])
    return {"add_01d": round(float(ok.mean()), 3), "wrong_at_conf_over_0.5": int((~ok & (conf > 0.5)).sum()),
            "auroc_published": None if auroc is None else round(auroc, 3),
            "median_rot_deg": round(float(np.median([r["rot_deg"] for r in x])), 2),
            "median_mm": round(float(np.median([r["mm"] if r["mm"] is not None else 1e9 for r in x])), 2),
            "global_share": round(float(np.mean([r["mode"] == "global" for r in x])), 3),
            "published_wrong": int(sum(r["mode"] != "none" and not r["right"] for r in x)),
            "published": int(sum(r["mode"] != "none" for r in x)),
            "longest_wrong_run": max(_longest_wrong_run(rows) for rows in per_draw),
            "ms_median": round(float(np.median([r["ms"] for r in x])), 1),
            "ms_mean": round(float(np.mean([r["ms"] for r in x])), 1)}


def compare(args: argparse.Namespace) -> None:
    """B against A per bin. With several draws (``run --draw``) per side, paired by position, an object-frame's
    difference is its mean over the draws and the summaries pool every draw's rows: a change is judged by what it
    does on average over equally good draws, not on one draw that earlier choices were made on."""
    a_draws, b_draws = _load_draws(args.a), _load_draws(args.b)
    if len(a_draws) != len(b_draws):
        raise SystemExit(f"A has {len(a_draws)} draws and B {len(b_draws)}: pair them one to one")
    keys = sorted(set.intersection(*(set(x) for x in a_draws + b_draws)))
    a, b = ([[x[k] for k in keys] for x in draws] for draws in (a_draws, b_draws))
    out = {"n": len(keys), "draws": len(a_draws), "A": summary(a), "B": summary(b), "bins": {}}
    # an object-frame's share of its draws that were right, per side
    ok_a, ok_b = (np.mean([[r["right"] for r in rows] for rows in x], axis=0) for x in (a, b))
    rel = np.array([r["from_reference_deg"] for r in a[0]])
    rng = np.random.default_rng(0)
    sequence = np.array([k.rsplit("/", 1)[0] for k in keys])  # "scene/object": one tracked sequence
    for lo, hi in BINS:
        m = (rel >= lo) & (rel < hi)
        if not m.any():
            continue
        d = ok_b[m] - ok_a[m]
        lo95, hi95 = sequence_interval(d, sequence[m], rng)  # judged unrounded (a top of -0.0004 is below 0), but
        # shares of thirds sum to 0 only up to ~1e-18: LOSS_TOLERANCE
        frames = rng.choice(d, (BOOTSTRAP_DRAWS, len(d))).mean(axis=1)
        out["bins"][f"{lo}-{hi}"] = {"n": int(m.sum()), "sequences": int(len(set(sequence[m]))),
                                     "A": round(float(ok_a[m].mean()), 3), "B": round(float(ok_b[m].mean()), 3),
                                     "B_minus_A": round(float(d.mean()), 3), "ci95": [round(lo95, 3), round(hi95, 3)],
                                     "ci95_object_frames": [round(float(np.percentile(frames, 2.5)), 3),
                                                            round(float(np.percentile(frames, 97.5)), 3)],
                                     "loses_beyond_interval": bool(hi95 < -LOSS_TOLERANCE)}
    out["take"] = not any(b["loses_beyond_interval"] for b in out["bins"].values())
    print(json.dumps(out, indent=1))


def sequence_interval(d: np.ndarray, sequence: np.ndarray, rng: np.random.Generator,
                      draws: int = BOOTSTRAP_DRAWS) -> tuple[float, float]:
    """95 % bootstrap interval of mean(d) that resamples whole sequences (a cluster bootstrap), not object-frames.

    A track's frames are not independent: once a track leaves its basin the frames after it follow, so a change
    flips runs of frames together, and a bootstrap over object-frames gives intervals too narrow for that
    (docs/tracking.md, "How wide a tracking comparison's interval is"). Here each draw takes as many sequences as
    the bin has, with replacement, and the mean over all their object-frames in the bin.

    Args:
        d: (N,) per object-frame differences B - A (-1, 0 or 1).
        sequence: (N,) the sequence each object-frame belongs to.
        rng: random generator (seeded by the caller: the same interval every run).
        draws: bootstrap draws.

    Returns:
        (low, high).
    """
    _, idx = np.unique(sequence, return_inverse=True)
    sums = np.bincount(idx, weights=d)
    counts = np.bincount(idx).astype(float)
    pick = rng.integers(0, len(sums), (draws, len(sums)))
    boot = sums[pick].sum(axis=1) / counts[pick].sum(axis=1)
    return float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))


def _longest_wrong_run(rows: list[dict]) -> int:
    """The most consecutive frames of one object's sequence published wrong (ADD > 0.1 d): what a grasping pipeline
    acting on the poses fears most."""
    best, run, last = 0, 0, None
    for r in sorted(rows, key=lambda r: [int(p) for p in r["key"].split("/")]):
        seq = tuple(r["key"].split("/")[:2])
        run = run if seq == last else 0
        run = run + 1 if r["mode"] != "none" and not r["right"] else 0
        best, last = max(best, run), seq
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="per object-frame results of one setting or checkout")
    r.add_argument("--out", required=True)
    r.add_argument("--backend", default="auto")
    r.add_argument("--seed", type=int, default=3)
    r.add_argument("--scenes", type=int, default=26)
    r.add_argument("--frames", type=int, default=21)
    r.add_argument("--settings", default="{}", help="EstimatorSettings.with_updates keys, as JSON")
    r.add_argument("--oneshot", action="store_true", help="estimate each frame from nothing (track=False)")
    r.add_argument("--masks", choices=("every", "first"), default="every",
                   help="a mask on every frame, or on the reference only (tracked without one after it)")
    r.add_argument("--plain", action="store_true", help="objects painted one colour (no texture)")
    r.add_argument("--families", default=",".join(FAMILIES),
                   help="the two objects' families, comma-separated (symmetric ones scored by ADD-S)")
    r.add_argument("--source", help="another checkout whose one2any_ros to measure (a worktree of a commit)")
    r.add_argument("--draw", type=int, default=0,
                   help="another equally good draw of the subsampled points (geometry.SUBSAMPLE_SEED; 0 = the default)")
    c = sub.add_parser("compare", help="paired comparison of two result files (B against A)")
    c.add_argument("a", help="A's result file, or several (one per --draw) separated by commas")
    c.add_argument("b", help="B's, the same draws in the same order")
    args = p.parse_args(argv)
    (run if args.cmd == "run" else compare)(args)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())
    sys.exit(main())
