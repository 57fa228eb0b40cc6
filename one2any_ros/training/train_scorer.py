"""Train the learned hypothesis scorer (model/scorer.py): ``one2any train-scorer --config config/scorer_default.yaml``.

1. Datasets of TRAINING objects are rendered when missing (``one2any render``): the scorer never sees a
   validation or test object.
2. Pools: each query is estimated by the learned backend (the ROC network named in the config, scorer off) with
   the hypothesis pool recorded; the refined candidates and the ``pool.top`` best-scored pool hypotheses become
   comparison images, labelled right when their ADD(-S) is under 0.1 x the diameter (the evaluation's criterion).
   Each dataset's pools are cached as one ``.npz`` in the run directory (``allow_pickle=False``), so a resumed run
   does not collect them again.
3. Training: a listwise loss per pool (-log of the softmax mass on its right hypotheses), pools with no right or
   only right hypotheses skipped (nothing to rank), both views mirrored together as augmentation. Metrics per
   epoch in ``metrics.jsonl`` and ``curves.png``; the model and optimizer after every epoch (``--resume``).
4. The weight of the scorer's term in the final ranking (verifier score + weight x logit, over the refined
   candidates, as the backend applies it) is chosen on the ``select`` dataset (training objects, other scenes);
   0 when no weight beats the verifier alone there.
5. Report on the ``val`` dataset (VALIDATION objects): ADD(-S)@0.1d of the final choice with and without the
   term, per rotation bin. ``--export`` bundles the scorer as ``model/default_scorer`` only when it is better
   overall there and no worse in the 60-90 and 90-120 bins (the learned backend's bar, one2any_ros.training.promote).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm import tqdm

from one2any_ros.core.errors import One2AnyError
from one2any_ros.core.files import atomic_path, write_atomic
from one2any_ros.core.protocol import BIN_NAMES, DECISIVE_BINS, is_hit, rotation_bin
from one2any_ros.training.config import merge_config, set_dotted
from one2any_ros.training.curves import save_curves_figure
from one2any_ros.training.state import optimizer_state, optimizer_tensors  # the run state as the network's run keeps it (no pickle)

DEFAULTS: dict[str, Any] = {
    "checkpoint": None,  # the ROC network whose pools are ranked (None = the bundled one)
    "out_dir": "checkpoints/scorer",
    "data": {"root": "outputs/datasets", "train": [], "select": None, "val": None},
    "pool": {"top": 20},
    "model": {"grid": 32, "widths": [32, 64, 64, 96, 128], "hidden": 64},
    "train": {"epochs": 12, "lr": 1.0e-3, "weight_decay": 1.0e-4, "flip_prob": 0.5, "seed": 0, "threads": 1},
    "weights": [0.01, 0.03, 0.1, 0.3, 1.0],
}


def load_config(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise One2AnyError(f"scorer config {p} does not exist", reason="config_missing")
    try:
        cfg = merge_config(DEFAULTS, yaml.safe_load(p.read_text()) or {})
    except yaml.YAMLError as e:
        raise One2AnyError(f"scorer config {p} is not valid YAML: {e}", reason="bad_config") from e
    for k, v in (overrides or {}).items():
        set_dotted(cfg, k, v)
    unknown = set(cfg) - set(DEFAULTS)
    if unknown:
        raise One2AnyError(f"scorer config {p}: unknown sections {sorted(unknown)}", reason="bad_config")
    if not cfg["data"]["train"]:
        raise One2AnyError(f"scorer config {p}: data.train lists no dataset", reason="bad_config")
    if not cfg["data"]["select"]:
        raise One2AnyError(f"scorer config {p}: data.select (training-object scenes to choose the weight on) is missing",
                           reason="bad_config")
    for spec in cfg["data"]["train"] + [cfg["data"]["select"]]:
        if spec and spec.get("objects", "train") != "train":
            raise One2AnyError(f"scorer config {p}: {spec.get('name')} must render training objects", reason="bad_config")
    return cfg


def ensure_dataset(spec: dict[str, Any], root: Path) -> Path:
    """The dataset ``root/name``, rendered with the spec's parameters when it is missing."""
    path = root / spec["name"]
    if not (path / "test").is_dir():
        from one2any_ros.data.generate import render_dataset

        render_dataset(path, objects=spec.get("objects", "train"), scenes=int(spec["scenes"]), frames=int(spec.get("frames", 8)),
                       max_rotation_deg=float(spec.get("max_rotation", 120.0)), seed=int(spec["seed"]))
    return path


# --- pools ---------------------------------------------------------------------------------------------

def collect_pools(dataset: Path, backend, *, top: int, grid: int, desc: str = "pools") -> dict[str, np.ndarray]:
    """Every query of a BOP dataset (the evaluation's plan: one reference per scene and object) -> its pool's
    comparison images (float16), verifier scores, errors and bookkeeping, as flat arrays + per-pool offsets."""
    from one2any_ros.core import metrics
    from one2any_ros.data import bop
    from one2any_ros.core.estimator import PoseEstimator
    from one2any_ros.evaluation import load_eval_model, plan_scene
    from one2any_ros.core.model.scorer import comparison_images, scorer_query, scorer_reference
    from one2any_ros.core.frame import make_view
    from one2any_ros.core.colour import colour_features

    est = PoseEstimator(backend)
    est.record_pool = True
    info = {int(k): v for k, v in bop.load_models_info(dataset).items()}
    plans = [p for sid in bop.list_scenes(dataset, "test") for p in plan_scene(bop.load_scene(dataset, "test", sid))[0]]
    images, poses, scores, errors, counts, refined, rel, objs = [], [], [], [], [], [], [], []
    models: dict[int, Any] = {}
    for p in tqdm(plans, desc=desc, mininterval=5):
        if p.obj_id not in models:
            models[p.obj_id] = load_eval_model(bop, dataset, p.obj_id, info)
        m = models[p.obj_id]
        r = bop.load_image(p.scene, *p.reference)
        T_ref = np.asarray(r["T_cam_obj"], np.float64)
        ref = est.set_reference(make_view(r["rgb"], r["depth"], r["mask"], r["K"], T_cam_obj=T_ref))
        sref = scorer_reference(ref.points_C, ref.colour_C, ref.diameter)  # as the backend does, once per reference
        for im, idx in p.queries:
            img = bop.load_image(p.scene, im, idx)
            T_gt = np.asarray(img["T_cam_obj"], np.float64)
            view = make_view(img["rgb"], img["depth"], img["mask"], img["K"])
            est.last_pool = None
            try:
                est.estimate(view)
            except One2AnyError:
                pass  # a failed gate still leaves the pool it weighed
            pool = est.last_pool
            if pool is None:
                continue
            order = np.argsort(-pool.score)[:top]
            Ts = np.concatenate([pool.refined_T_camera_C, pool.T_camera_C[order]])
            base = np.concatenate([pool.refined_score, pool.score[order]])
            dist = metrics.add_s if m.symmetric else metrics.add
            err = np.array([dist(T @ ref.T_C_O, T_gt, m.pts) for T in Ts]) / m.diameter_m
            sq = scorer_query(view.depth, view.mask, colour_features(view.rgb, view.mask), view.K, ref.diameter, grid)
            images.append(comparison_images(Ts, sref, sq).astype(np.float16))  # exactly what the backend builds
            poses.append(Ts.astype(np.float32))  # kept so that new input channels can be built without searching again
            scores.append(base.astype(np.float32))
            errors.append(err.astype(np.float32))
            counts.append(len(Ts))
            refined.append(len(pool.refined_T_camera_C))
            rel.append(metrics.rotation_error_deg(T_gt[:3, :3], T_ref[:3, :3]))
            objs.append(p.obj_id)
    G = grid
    return {"images": np.concatenate(images) if images else np.zeros((0, 11, G, G), np.float16),
            "poses": np.concatenate(poses) if poses else np.zeros((0, 4, 4), np.float32),
            "scores": np.concatenate(scores) if scores else np.zeros(0, np.float32),
            "errors": np.concatenate(errors) if errors else np.zeros(0, np.float32),
            "counts": np.array(counts, np.int64), "refined": np.array(refined, np.int64),
            "rotation_deg": np.array(rel, np.float64), "obj_id": np.array(objs, np.int64)}


class Pools:
    """The flat arrays of ``collect_pools`` split back into pools."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.a = arrays
        self.offsets = np.concatenate([[0], np.cumsum(arrays["counts"])])

    def __len__(self) -> int:
        return len(self.a["counts"])

    def pool(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = slice(self.offsets[i], self.offsets[i + 1])
        return self.a["images"][s], self.a["scores"][s], self.a["errors"][s]

    def rankable(self) -> np.ndarray:
        """Pools with at least one right and one wrong hypothesis (the only ones with something to learn)."""
        right = is_hit(self.a["errors"])
        n_right = np.add.reduceat(right.astype(np.int64), self.offsets[:-1]) if len(self) else np.zeros(0, np.int64)
        return np.nonzero((n_right > 0) & (n_right < self.a["counts"]))[0]


def logits_of(model, pools: Pools, batch: int = 512) -> list[np.ndarray]:
    """The scorer's logits for every hypothesis of every pool."""
    model.eval()
    flat_img, flat_sc = pools.a["images"], pools.a["scores"]
    out = []
    with torch.inference_mode():
        for i in range(0, len(flat_sc), batch):
            out.append(model(torch.from_numpy(flat_img[i:i + batch].astype(np.float32)), torch.from_numpy(flat_sc[i:i + batch])).numpy())
    flat = np.concatenate(out) if out else np.zeros(0)
    return [flat[pools.offsets[i]:pools.offsets[i + 1]] for i in range(len(pools))]


def choice_recall(pools: Pools, logits: list[np.ndarray], weight: float) -> dict[str, Any]:
    """ADD(-S)@0.1d when the final pose is the refined candidate with the best verifier score + weight x logit
    (exactly the estimator's choice with the term), overall and per rotation bin."""
    hits: dict[str, list[bool]] = {}
    for i in range(len(pools)):
        _, sc, err = pools.pool(i)
        k = int(pools.a["refined"][i])
        j = int(np.argmax(sc[:k] + weight * logits[i][:k]))
        hits.setdefault(rotation_bin(float(pools.a["rotation_deg"][i])), []).append(is_hit(err[j]))
    n = sum(len(v) for v in hits.values())
    return {"add_s_01d_recall": (sum(sum(v) for v in hits.values()) / n) if n else None, "n": n,
            "by_rotation_bin": {b: {"add_s_01d_recall": sum(hits[b]) / len(hits[b]), "n": len(hits[b]),
                                    "right": int(sum(hits[b]))} for b in BIN_NAMES if b in hits}}


def choose_weight(pools: Pools, logits: list[np.ndarray], weights: list[float]) -> tuple[float, dict[str, Any]]:
    """The weight with the best recall on ``pools`` (ties: the smaller); 0 when none beats the verifier alone."""
    table = {0.0: choice_recall(pools, logits, 0.0)}
    for w in sorted(weights):
        table[float(w)] = choice_recall(pools, logits, float(w))
    best = max(table, key=lambda w: (table[w]["add_s_01d_recall"] or 0.0, -w))
    return best, {str(w): r["add_s_01d_recall"] for w, r in table.items()}


# --- training ------------------------------------------------------------------------------------------

def train_epoch(model, opt, pools: Pools, order: np.ndarray, rng: np.random.Generator, flip_prob: float, bar=None) -> float:
    from one2any_ros.core.model.scorer import listwise_loss

    model.train()
    total = 0.0
    for i in order:
        img, sc, err = pools.pool(int(i))
        x = torch.from_numpy(img.astype(np.float32))
        if rng.random() < flip_prob:
            x = torch.flip(x, [3])  # both views mirrored together: the comparison stays the same
        loss = listwise_loss(model(x, torch.from_numpy(sc)), torch.from_numpy(is_hit(err)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += loss.item()
        if bar is not None:
            bar.update(1)
    return total / max(len(order), 1)


def plot_scorer_curves(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    ep = [r["epoch"] for r in rows]
    ax[0].plot(ep, [r["train_loss"] for r in rows], "o-", label="train listwise loss")
    ax[0].plot(ep, [r["select_loss"] for r in rows], "o-", label="select listwise loss")
    for w in rows[-1]["select_recall"]:
        ax[1].plot(ep, [r["select_recall"].get(w, np.nan) for r in rows], ".-", label=f"weight {w}")
    ax[0].set_title("loss")
    ax[1].set_title("select set ADD(-S)@0.1d of the final choice")
    save_curves_figure(fig, ax, path, "epoch")


def mean_loss(pools: Pools, logits: list[np.ndarray]) -> float:
    from one2any_ros.core.model.scorer import listwise_loss

    idx = pools.rankable()
    if not len(idx):
        return float("nan")
    return float(np.mean([float(listwise_loss(torch.from_numpy(logits[i]), torch.from_numpy(is_hit(pools.pool(i)[2])))) for i in idx]))


def train_scorer(config: str | os.PathLike, *, out_dir: str | None = None, resume: bool = False, export: bool = False,
                 overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Collect (or read the cached) pools, train for ``train.epochs`` (``resume``: from the last saved epoch), choose
    the term's weight on the select pools, report on the val pools and, with ``export``, bundle a winner.
    Returns ``result.json``'s content."""
    from one2any_ros.core.backends.one2any import One2AnyBackend
    from one2any_ros.core.model.scorer import HypothesisScorer, ScorerConfig, save_scorer

    cfg = load_config(config, overrides)
    out = Path(out_dir or cfg["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    torch.set_num_threads(int(cfg["train"]["threads"]))
    root = Path(cfg["data"]["root"])
    mcfg = ScorerConfig.from_dict(cfg["model"])
    t_start = time.time()

    backend = One2AnyBackend(device="cpu", checkpoint=cfg["checkpoint"], scorer=False, threads=int(cfg["train"]["threads"]))

    def pools_of(spec: dict[str, Any]) -> Pools:
        return cached_pools(spec, out, root, backend, top=int(cfg["pool"]["top"]), grid=mcfg.grid)

    train_sets = [pools_of(s) for s in cfg["data"]["train"]]
    select = pools_of(cfg["data"]["select"])
    val = pools_of(cfg["data"]["val"]) if cfg["data"]["val"] else None
    merged = merge_pools(train_sets)
    idx = merged.rankable()
    print(f"scorer: {len(merged)} training pools, {len(idx)} with right and wrong hypotheses to rank", flush=True)

    torch.manual_seed(int(cfg["train"]["seed"]))
    model = HypothesisScorer(mcfg)
    opt = torch.optim.AdamW(model.parameters(), lr=float(cfg["train"]["lr"]), weight_decay=float(cfg["train"]["weight_decay"]))
    start_epoch, rows, spent_s = _resume_or_restart(out, model, opt, resume)
    if spent_s is not None:  # the wall time goes on from where the run stopped (pools loaded from the cache cost ~nothing)
        t_start = time.time() - spent_s
    weights = [float(w) for w in cfg["weights"]]
    _train_epochs(model, opt, merged, idx, select, cfg, out, start_epoch, rows, t_start)

    weight, select_table = choose_weight(select, logits_of(model, select), weights)
    summary: dict[str, Any] = {
        "network_checkpoint": cfg["checkpoint"] or "bundled", "network_sha256": backend.config.get("sha256"),
        "train_datasets": cfg["data"]["train"], "train_pools": int(len(merged)), "rankable_pools": int(len(idx)),
        "hypotheses_per_pool": f"refined candidates + top {cfg['pool']['top']} by verifier score",
        "epochs": int(cfg["train"]["epochs"]), "optimizer": {k: cfg["train"][k] for k in ("lr", "weight_decay")},
        "hardware": f"cpu x {torch.get_num_threads()} threads", "wall_s": round(time.time() - t_start, 1),
        "select_dataset": cfg["data"]["select"], "select_recall_by_weight": select_table, "weight": weight}
    if val is not None:
        lg = logits_of(model, val)
        summary["val_dataset"] = cfg["data"]["val"]
        summary["val_without"] = choice_recall(val, lg, 0.0)
        summary["val_with"] = choice_recall(val, lg, weight)
    paths = save_scorer(model, out / "scorer", weight=weight, training=summary)
    result = {"scorer": str(paths[0]), "weight": weight, "summary": summary, "exported": None, "not_exported_because": None}
    if export:
        result["not_exported_because"] = _why_not_export(summary, weight, has_val=val is not None)
        if result["not_exported_because"] is None:
            result["exported"] = _bundle(paths)
    write_atomic(out / "result.json", json.dumps(result, indent=1))
    return result


def cached_pools(spec: dict[str, Any], out: Path, root: Path, backend, *, top: int, grid: int) -> Pools:
    """A dataset's pools from the run directory's cache (``pools_<name>.npz``, no pickle), collected and cached
    atomically when missing (the dataset rendered first when it is missing too)."""
    cache = out / f"pools_{spec['name']}.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            return Pools({k: z[k] for k in z.files})
    arrays = collect_pools(ensure_dataset(spec, root), backend, top=top, grid=grid, desc=f"pools {spec['name']}")
    with atomic_path(cache) as tmp, open(tmp, "wb") as f:  # a file object: savez would append .npz to a name
        np.savez(f, **arrays)
    return Pools(arrays)


def merge_pools(sets: list[Pools]) -> Pools:
    """Several datasets' pools as one, keeping the arrays they all have (caches from older runs may lack "poses")."""
    keys = set.intersection(*(set(p.a) for p in sets))
    return Pools({k: np.concatenate([p.a[k] for p in sets]) for k in sorted(keys)})


def _resume_or_restart(out: Path, model, opt, resume: bool) -> tuple[int, list[dict[str, Any]], float | None]:
    """With ``resume`` and a saved epoch: the model and optimizer restored, (the next epoch, the rows logged up to
    it, the wall seconds spent before). Otherwise a fresh log: (0, [], None)."""
    from one2any_ros.core.model.checkpoint import load_tensors

    log_path, state = out / "metrics.jsonl", out / "state.json"
    if resume and state.exists():
        st = json.loads(state.read_text())
        model.load_state_dict(load_tensors(out / "last.safetensors"))
        opt.load_state_dict(optimizer_state(load_tensors(out / "optimizer.safetensors"), st["optimizer"]))
        start_epoch = int(st["epoch"])
        rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()][:start_epoch]
        print(f"scorer: resumed after epoch {start_epoch}", flush=True)
        return start_epoch, rows, float(rows[-1]["elapsed_s"]) if rows else None
    if log_path.exists():
        log_path.unlink()
    return 0, [], None


def _train_epochs(model, opt, merged: Pools, idx: np.ndarray, select: Pools, cfg: dict[str, Any], out: Path,
                  start_epoch: int, rows: list[dict[str, Any]], t_start: float) -> None:
    """Train the remaining epochs; after each, the select pools' loss and recall by weight are logged and the
    model, optimizer and epoch saved (``--resume`` continues from there)."""
    from one2any_ros.core.model.checkpoint import save_tensors

    epochs = int(cfg["train"]["epochs"])
    weights = [float(w) for w in cfg["weights"]]
    bar = tqdm(total=(epochs - start_epoch) * len(idx), desc="train scorer", mininterval=10)
    for ep in range(start_epoch, epochs):
        rng = np.random.default_rng(int(cfg["train"]["seed"]) * 1000 + ep)
        loss = train_epoch(model, opt, merged, rng.permutation(idx), rng, float(cfg["train"]["flip_prob"]), bar)
        row: dict[str, Any] = {"epoch": ep + 1, "train_loss": loss, "elapsed_s": time.time() - t_start}
        lg = logits_of(model, select)
        row["select_loss"] = mean_loss(select, lg)
        row["select_recall"] = choose_weight(select, lg, weights)[1]
        rows.append(row)
        with open(out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        save_tensors(dict(model.state_dict()), out / "last.safetensors")
        opt_tensors, opt_meta = optimizer_tensors(opt)
        save_tensors(opt_tensors, out / "optimizer.safetensors")
        write_atomic(out / "state.json", json.dumps({"epoch": ep + 1, "optimizer": opt_meta}))
        plot_scorer_curves(rows, out / "curves.png")
        tqdm.write(f"epoch {ep + 1}: train loss {loss:.3f}, select loss {row['select_loss']:.3f}, recall by weight "
                   f"{row['select_recall']}")
    bar.close()


def _why_not_export(summary: dict[str, Any], weight: float, *, has_val: bool) -> str | None:
    """Why the scorer must not be bundled, or None when it wins on the validation objects."""
    if not has_val:
        return "no data.val (validation objects) to judge it on"
    if weight == 0:
        return "no weight beat the verifier alone on the select scenes"
    if not _better(summary["val_with"], summary["val_without"]):
        return "not better overall on validation objects, or worse at 60-90 or 90-120 deg"
    return None


def _bundle(paths: tuple[Path, Path]) -> str:
    """Copy the scorer's two files over the bundled ``model/default_scorer`` (each atomically) and check that the
    copy loads. Returns its path."""
    from one2any_ros.core.model.scorer import DEFAULT_SCORER, load_scorer

    dst = DEFAULT_SCORER
    for src, d in zip(paths, (dst, dst.with_suffix(".json"))):
        with atomic_path(d) as tmp:
            shutil.copyfile(src, tmp)
    load_scorer(dst)  # the bundled copy reads back
    return str(dst)


def _better(with_: dict[str, Any], without: dict[str, Any]) -> bool:
    """Better overall and no worse in the decisive bins (validation objects)."""
    def r(rep, b=None):
        return rep["add_s_01d_recall"] if b is None else rep["by_rotation_bin"].get(b, {}).get("add_s_01d_recall", 0.0)
    return r(with_) > r(without) and all(r(with_, b) >= r(without, b) for b in DECISIVE_BINS)


def format_result(result: dict[str, Any]) -> str:
    s = result["summary"]
    lines = [f"scorer: {result['scorer']}  weight {result['weight']} (chosen on {s['select_dataset']['name']})"]
    if "val_with" in s:
        bins = list(s["val_without"]["by_rotation_bin"])
        lines.append(f"{'validation':<22}{'all':>7}" + "".join(f"{b:>9}" for b in bins))
        for name, rep in (("verifier alone", s["val_without"]), ("+ scorer term", s["val_with"])):
            lines.append(f"{name:<22}{rep['add_s_01d_recall']:>7.3f}" + "".join(
                f"{rep['by_rotation_bin'][b]['right']:>5}/{rep['by_rotation_bin'][b]['n']:<3}" for b in bins))
    lines.append(f"exported: {result['exported'] or 'no'}"
                 + (f" ({result['not_exported_because']})" if result.get("not_exported_because") else ""))
    return "\n".join(lines)
