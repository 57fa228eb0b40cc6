"""Where do the misses come from: the search (no right pose among the hypotheses) or the verifier (a right
pose was there and another one scored higher)? Per rotation bin, on a BOP dataset with ground truth.

    .venv/bin/python tools/diagnose_pool.py --dataset outputs/datasets/val30 [--backend one2any]
        [--checkpoint PATH] [--query-rolls N] [--min-rotation 60] [--settings '{"twin_top_k": 1}']
        [--out outputs/diagnose]

For every query it runs the global search with ``PoseEstimator.record_pool`` and counts, by ADD(-S) < 0.1 d: the
chosen pose; any hypothesis before refinement; any refined candidate; any learned (RANSAC) hypothesis; any grid
hypothesis; a learned one where no grid one is right (what the network adds to the search). With the learned
backend it also measures the network itself (asymmetric objects: a symmetric one has no single right ROC): the
mean fraction of the query's object pixels whose predicted ROC lies within the verifier's ROC band of the truth,
over all pixels, over the 20 % the network is most confident about and over the co-visible ones (those the
reference camera also saw; their share is the ceiling of a network that matches reference pixels) - what the
verifier's ROC term and the RANSAC hypotheses can count on. Writes diagnose.json and diagnose.png (bars per bin).
Run it on VALIDATION objects when it informs a choice, so nothing is tuned to the test split.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from one2any_ros.core import camera, metrics, protocol  # noqa: E402
from one2any_ros.data import bop  # noqa: E402
from one2any_ros.core.errors import One2AnyError  # noqa: E402
from one2any_ros.core.estimator import PoseEstimator  # noqa: E402
from one2any_ros.core.estimator_settings import EstimatorSettings  # noqa: E402
from one2any_ros.evaluation import load_eval_model, plan_scene  # noqa: E402
from one2any_ros.core.geometry import invert_transform, transform_points  # noqa: E402
from one2any_ros.core.frame import make_view

COUNTS = ("chosen", "in_pool", "refined", "learned", "grid", "learned_only")
CONFIDENT_FRACTION = 0.2  # "the pixels the network is most confident about"
LABELS = {"chosen": "chosen pose right", "in_pool": "a right pose in the pool", "refined": "a right refined candidate",
          "learned": "a right learned (RANSAC) hypothesis", "grid": "a right grid hypothesis",
          "learned_only": "a right learned hypothesis, no right grid one"}


def _estimator(a) -> PoseEstimator:
    settings = EstimatorSettings().with_updates(**json.loads(a.settings))
    if a.backend == "one2any":
        from one2any_ros.core.backends.one2any import One2AnyBackend

        return PoseEstimator(One2AnyBackend(device="cpu", checkpoint=a.checkpoint, query_rolls=a.query_rolls),
                             settings=settings)
    return PoseEstimator(a.backend, settings=settings)


def roc_accuracy(est: PoseEstimator, view, T_gt: np.ndarray, diameter: float) -> dict[str, float]:
    """Fraction of the query's object pixels whose predicted ROC (roll 0) is within the verifier's ROC band of the
    true ROC (the pixel's point mapped into C by the ground truth): over all of them, over the most confident, and
    over those the reference camera also saw (co-visible as in training, ``training.pairs.covisible``; ``covisible``
    is their share: the ceiling of a network that matches reference pixels). ``diameter``: the object's, m."""
    from one2any_ros.training.pairs import covisible
    from one2any_ros.core.model.inputs import output_at_pixels

    ref = est.reference
    pts, pix = camera.backproject(view.depth, view.K, camera.object_depth_mask(view.depth, view.K, view.mask))
    roc_grid, conf_grid, win = est.backend.predict(ref, view, 1)
    roc = output_at_pixels(roc_grid[0], win, pix)
    conf = output_at_pixels(conf_grid[0], win, pix)[:, 0]
    truth = transform_points(invert_transform(T_gt @ invert_transform(ref.T_C_O)), pts) / ref.scale
    ok = np.linalg.norm(roc - truth, axis=1) < est.settings.verifier.roc_tau
    top = np.argsort(-conf)[: max(int(CONFIDENT_FRACTION * len(conf)), 1)]
    rv = ref.view
    in_ref = transform_points(ref.T_refcam_C, truth * ref.scale)  # each pixel's true point in the reference camera
    seen = covisible(in_ref.T[None], {"K": rv.K, "depth_clean": rv.depth, "mask": rv.mask}, diameter)
    return {"all": float(ok.mean()), "confident": float(ok[top].mean()), "covisible": float(seen.mean()),
            "on_covisible": float(ok[seen].mean()) if seen.any() else 0.0}


def diagnose(a) -> dict:
    """Every query of the dataset's test split at least ``a.min_rotation`` deg from its reference: per rotation
    bin, how often the right pose was in the pool, survived refinement, was chosen, and which source found it."""
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
            _diagnose_query(a, est, img, T_gt, m, T_C_O, per_bin, rel)
    bar.close()
    return {"dataset": str(root), "backend": a.backend, "settings": json.loads(a.settings),
            "model": est.backend.describe(),
            "min_rotation_deg": a.min_rotation, "bins": dict(sorted(per_bin.items(), key=lambda kv: float(kv[0].split("-")[0])))}


def _diagnose_query(a, est, img: dict, T_gt: np.ndarray, m, T_C_O: np.ndarray, per_bin: dict, rel: float) -> None:
    """Estimate one query with its pool recorded and count, in its rotation bin, where the right pose was."""

    def right(T_C: np.ndarray) -> np.ndarray:
        e = [(metrics.add_s if m.symmetric else metrics.add)(T @ T_C_O, T_gt, m.pts) for T in T_C]
        return protocol.is_hit(np.asarray(e), m.diameter_m)

    est.last_pool = None
    row = per_bin.setdefault(protocol.rotation_bin(rel), {"n": 0, **{k: 0 for k in COUNTS}})
    row["n"] += 1
    try:
        view = make_view(img["rgb"], img["depth"], img["mask"], img["K"])
    except One2AnyError:
        return  # an occluder left too few object pixels (the validation suite has such queries): a miss, no pool
    try:
        est.estimate(view)
    except One2AnyError:
        pass  # a gated-out pose is a miss; its pool still says why
    pool = est.last_pool
    if a.backend == "one2any" and not m.symmetric:
        acc = row.setdefault("roc_within_band", {"n": 0})
        acc["n"] += 1
        for k, x in roc_accuracy(est, view, T_gt, m.diameter_m).items():  # running means
            acc[k] = acc.get(k, 0.0) + (x - acc.get(k, 0.0)) / acc["n"]
    if pool is None:  # failed before the search (too little depth ...)
        return
    ok = right(pool.T_camera_C)
    ok_ref = right(pool.refined_T_camera_C)
    src = np.array(pool.sources)
    row["chosen"] += bool(ok_ref[pool.chosen] and est.last_T_C is not None)
    row["in_pool"] += bool(ok.any())
    row["refined"] += bool(ok_ref.any())
    learned, grid = bool(ok[np.char.startswith(src.astype(str), "ransac")].any()), bool(ok[src == "grid"].any())
    row["learned"] += learned
    row["grid"] += grid
    row["learned_only"] += learned and not grid  # what the network's own hypotheses add to the search


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
    ap.add_argument("--settings", default="{}", help="EstimatorSettings.with_updates keys, as JSON (a suite part: "
                    "--dataset outputs/validation/v1/<part>)")
    ap.add_argument("--out", default="outputs/diagnose")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    result = diagnose(a)
    (out / "diagnose.json").write_text(json.dumps(result, indent=1))
    plot(result, out / "diagnose.png")
    print(f"{'bin':<9}{'n':>5}" + "".join(f"{k:>10}" for k in COUNTS))
    for b, row in result["bins"].items():
        acc = row.get("roc_within_band")
        print(f"{b:<9}{row['n']:>5}" + "".join(f"{row[k]:>10}" for k in COUNTS)
              + (f"   ROC within band: {acc['all']:.2f} of pixels, {acc['confident']:.2f} of the most confident,"
                 f" {acc['on_covisible']:.2f} of the co-visible ({acc['covisible']:.2f} of pixels)" if acc else ""))
    print(f"wrote {out / 'diagnose.json'} and {out / 'diagnose.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
