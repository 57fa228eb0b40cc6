"""Where do the misses come from: the search (no right pose among the hypotheses) or the verifier (a right
pose was there and another one scored higher)? Per rotation bin, on a BOP dataset with ground truth.

    .venv/bin/python tools/diagnose_pool.py --dataset outputs/datasets/val30 [--backend one2any]
        [--checkpoint PATH] [--query-rolls N] [--min-rotation 60] [--out outputs/diagnose]

For every query it runs the global search with ``PoseEstimator.record_pool`` and counts, by ADD(-S) < 0.1 d:
the chosen pose; any hypothesis before refinement; any refined candidate; any learned (RANSAC) hypothesis and
any grid hypothesis. Writes diagnose.json and diagnose.png (bars per bin). Run it on VALIDATION objects when
it informs a choice, so nothing is tuned to the test split.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from one2any_ros import metrics  # noqa: E402
from one2any_ros.data import bop  # noqa: E402
from one2any_ros.errors import One2AnyError  # noqa: E402
from one2any_ros.estimator import PoseEstimator  # noqa: E402
from one2any_ros.evaluate import load_eval_model, plan_scene, rotation_bin  # noqa: E402
from one2any_ros.reference import make_view  # noqa: E402

COUNTS = ("chosen", "in_pool", "refined", "learned", "grid")
LABELS = {"chosen": "chosen pose right", "in_pool": "a right pose in the pool", "refined": "a right refined candidate",
          "learned": "a right learned (RANSAC) hypothesis", "grid": "a right grid hypothesis"}


def _estimator(a) -> PoseEstimator:
    if a.backend == "one2any":
        from one2any_ros.backends.one2any import One2AnyBackend

        return PoseEstimator(One2AnyBackend(device="cpu", checkpoint=a.checkpoint, query_rolls=a.query_rolls))
    return PoseEstimator(a.backend)


def diagnose(a) -> dict:
    from tqdm import tqdm

    root = Path(a.dataset)
    est = _estimator(a)
    est.record_pool = True
    info = {int(k): v for k, v in bop.load_models_info(root).items()}
    models, per_bin = {}, {}
    plans = [p for sid in bop.list_scenes(root, "test") for p in plan_scene(bop.load_scene(root, "test", sid))[0]]
    bar = tqdm(total=sum(len(p.queries) for p in plans), desc="diagnose", unit="query")
    for p in plans:
        if p.obj_id not in models:
            models[p.obj_id] = load_eval_model(bop, root, p.obj_id, info)
        m = models[p.obj_id]
        r = bop.load_image(p.scene, *p.reference)
        T_ref = np.asarray(r["T_cam_obj"], np.float64)
        try:
            est.set_reference(make_view(r["rgb"], r["depth"], r["mask"], r["K"], T_cam_obj=T_ref))
        except One2AnyError:
            bar.update(len(p.queries))
            continue
        T_C_O = est.reference.T_C_O
        for im_id, idx in p.queries:
            bar.update(1)
            img = bop.load_image(p.scene, im_id, idx)
            T_gt = np.asarray(img["T_cam_obj"], np.float64)
            rel = metrics.rotation_error_deg(T_gt[:3, :3], T_ref[:3, :3])
            if rel < a.min_rotation:
                continue

            def right(T_C: np.ndarray) -> np.ndarray:
                e = [(metrics.add_s if m.symmetric else metrics.add)(T @ T_C_O, T_gt, m.pts) for T in T_C]
                return np.asarray(e) < 0.1 * m.diameter_m

            est.last_pool = None
            try:
                est.estimate(make_view(img["rgb"], img["depth"], img["mask"], img["K"]))
            except One2AnyError:
                pass  # a gated-out pose is a miss; its pool still says why
            pool = est.last_pool
            row = per_bin.setdefault(rotation_bin(rel), {"n": 0, **{k: 0 for k in COUNTS}})
            row["n"] += 1
            if pool is None:  # failed before the search (too little depth ...)
                continue
            ok = right(pool.T_camera_C)
            ok_ref = right(pool.refined_T_camera_C)
            src = np.array(pool.sources)
            row["chosen"] += bool(ok_ref[pool.chosen] and est.last_T_C is not None)
            row["in_pool"] += bool(ok.any())
            row["refined"] += bool(ok_ref.any())
            row["learned"] += bool(ok[np.char.startswith(src.astype(str), "ransac")].any())
            row["grid"] += bool(ok[src == "grid"].any())
    bar.close()
    return {"dataset": str(root), "backend": a.backend, "model": est.backend.describe(),
            "min_rotation_deg": a.min_rotation, "bins": dict(sorted(per_bin.items(), key=lambda kv: float(kv[0].split("-")[0])))}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = list(result["bins"])
    x = np.arange(len(bins))
    fig, ax = plt.subplots(figsize=(10, 4))
    w = 0.8 / len(COUNTS)
    for i, k in enumerate(COUNTS):
        ax.bar(x + (i - (len(COUNTS) - 1) / 2) * w, [result["bins"][b][k] / max(result["bins"][b]["n"], 1) for b in bins],
               w, label=LABELS[k])
    ax.set_xticks(x, [f"{b} deg\n(n={result['bins'][b]['n']})" for b in bins])
    ax.set_ylabel("fraction of queries (ADD(-S) < 0.1 d)")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"search vs verifier: {result['backend']} on {Path(result['dataset']).name}")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="outputs/datasets/val30")
    ap.add_argument("--backend", default="one2any", choices=("one2any", "classic", "icp"))
    ap.add_argument("--checkpoint", default=None, help="one2any checkpoint (default: the bundled one)")
    ap.add_argument("--query-rolls", type=int, default=None, help="one2any query rolls (default: the checkpoint's)")
    ap.add_argument("--min-rotation", type=float, default=0.0, help="only queries at least this far from the reference, deg")
    ap.add_argument("--out", default="outputs/diagnose")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    result = diagnose(a)
    (out / "diagnose.json").write_text(json.dumps(result, indent=1))
    plot(result, out / "diagnose.png")
    print(f"{'bin':<9}{'n':>5}" + "".join(f"{k:>10}" for k in COUNTS))
    for b, row in result["bins"].items():
        print(f"{b:<9}{row['n']:>5}" + "".join(f"{row[k]:>10}" for k in COUNTS))
    print(f"wrote {out / 'diagnose.json'} and {out / 'diagnose.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
