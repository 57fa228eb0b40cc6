"""Training loop for the One2Any network: ``train(config_path, resume=..., device=..., out_dir=...)``.

- Data: ``training.pairs.PairDataset`` (DataLoader worker processes render pairs of TRAINING objects);
  validation on a fixed set of pairs of VALIDATION objects (ROC error, loss, and pose accuracy through the
  same RANSAC + weighted Umeyama the backend uses, per rotation bin).
- Output directory (``out_dir``, default ``runs/<config stem>``): ``checkpoint.{safetensors,json}`` (the
  latest weights, loadable by ``model.checkpoint.load_checkpoint`` and the backend), ``best.*`` (lowest
  validation ROC error), ``train_state.{safetensors,json}`` (optimizer and counters; one path, overwritten
  atomically every ``checkpoint_minutes``), ``metrics.jsonl`` + ``metrics.csv``, ``curves.png``, and a copy
  of the config. ``resume=True`` continues from ``train_state`` + ``checkpoint``.
- Devices: ``auto|cpu|cuda``; mixed precision (bf16, else fp16 with a GradScaler) on CUDA; several GPUs
  through ``torchrun --nproc_per_node=K`` (DistributedDataParallel; rank 0 validates, logs and saves).

Loss: SmoothL1 on the masked ROC, the minimum over the object's symmetric variants (final output, plus
``match_weight`` x the matching-only output), plus ``conf_weight`` x a Laplace NLL of the per-pixel error
(error detached: the confidence learns to predict the error without pulling the ROC). ``noncovisible_weight``
< 1 weighs down the ROC terms on query pixels the reference camera never saw (``training.pairs.covisible``): the
matching head can only carry a reference pixel's ROC, so there the target is out of its reach and the gradient
mostly noise (at 90-120 deg ~60 % of the pixels); the confidence still learns on every pixel that they are
unreliable. ``match_ce_weight`` > 0 adds a cross-entropy on the matching head's logits (``match_cross_entropy``):
on co-visible pixels, the attention mass on the reference cells that show the pixel's point. SmoothL1 on the
attention-weighted mean alone is content with attention spread so that it averages out near the truth; the
cross-entropy asks for the right cells (the coarse matching loss of LoFTR, Sun et al., CVPR 2021).
"""
from __future__ import annotations

import copy
import csv
import io
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from one2any_ros.core.errors import CheckpointError, One2AnyError
from one2any_ros.core.files import atomic_path, write_atomic
from one2any_ros.core.protocol import BIN_NAMES, is_hit, rotation_bin
from one2any_ros.core.model.checkpoint import load_tensors, net_config_from_meta, read_checkpoint_config, save_checkpoint, save_tensors
from one2any_ros.core.model.network import NetConfig, One2AnyNet, confidence_from_log_b, count_parameters

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "out_dir": None,  # None: runs/<config file stem>
    "model": {},  # NetConfig fields
    "data": {  # PairConfig fields (input_size/output_stride come from the model) + loader settings
        "workers": 2,
        "val_pairs": 64,
        "val_objects": 32,
        "sampler": {},
    },
    "train": {
        "batch_size": 16,
        "lr": 5e-4,
        "weight_decay": 1e-4,
        "warmup_steps": 200,
        "max_steps": 200_000,
        "max_minutes": None,  # wall-clock budget of this invocation (None: none)
        "grad_clip": 1.0,
        "log_every": 20,
        "val_every": 1000,
        "checkpoint_minutes": 5.0,
        "init_from": None,  # a checkpoint whose weights start a NEW run (warm start; --resume continues a run instead)
        "max_bad_steps": 50,  # consecutive steps with a non-finite loss or gradient (skipped) before giving up
        "amp": True,  # mixed precision on CUDA
        "cpu_threads": None,  # torch threads of the training process on a CPU; None: cores - data workers (>= 1)
        "loss": {"beta": 0.1, "match_weight": 0.5, "conf_weight": 0.1, "noncovisible_weight": 1.0,
                 "match_ce_weight": 0.0, "match_ce_band": 0.15},
    },
}
CSV_COLUMNS = ("kind", "step", "samples", "elapsed_s", "lr", "loss", "loss_roc", "loss_match", "loss_conf", "roc_err",
               "samples_per_s", "val_loss", "val_roc_err", "val_pose_acc", *(f"val_{b}" for b in BIN_NAMES))


# --- config --------------------------------------------------------------------------------------------

def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _set_dotted(cfg: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    d = cfg
    for p in parts[:-1]:
        d = d.setdefault(p, {})
    d[parts[-1]] = value


def load_config(config_path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """YAML config merged over DEFAULTS; ``overrides`` maps dotted keys ("train.max_steps") to values."""
    path = Path(config_path)
    if not path.is_file():
        raise One2AnyError(f"training config {path} does not exist", reason="config_missing")
    try:
        user = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise One2AnyError(f"training config {path} is not valid YAML: {e}", reason="bad_config") from e
    cfg = _merge(DEFAULTS, user)
    for k, v in (overrides or {}).items():
        _set_dotted(cfg, k, v)
    unknown = set(cfg) - set(DEFAULTS)
    if unknown:
        raise One2AnyError(f"training config {path}: unknown sections {sorted(unknown)}", reason="bad_config")
    NetConfig.from_dict(cfg["model"])  # validate early
    return cfg


def _pair_config(cfg: dict):
    from one2any_ros.training.pairs import PairConfig

    net = NetConfig.from_dict(cfg["model"])
    return PairConfig.from_dict({**cfg["data"].get("sampler", {}), "input_size": net.input_size,
                                 "output_stride": net.output_stride})


# --- loss ----------------------------------------------------------------------------------------------

def _variant_loss(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """pred (B,3,G,G), gt (B,S,3,G,G), valid (B,1,G,G) -> (per-sample min SmoothL1 (B,), best variant (B,))."""
    l = F.smooth_l1_loss(pred[:, None].expand_as(gt), gt, beta=beta, reduction="none").sum(2)  # (B,S,G,G)
    cnt = valid.sum((1, 2, 3)).clamp_min(1.0)
    per = (l * valid).sum((2, 3)) / cnt[:, None]  # (B,S)
    best, k = per.min(dim=1)
    return best, k


def match_cross_entropy(logits: torch.Tensor, gt_roc: torch.Tensor, use: torch.Tensor, ref: torch.Tensor,
                        ref_valid: torch.Tensor, band: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The matching head's cross-entropy against the reference cells that show each query cell's surface point.

    logits (B,L,Lk) over the reference cells (-inf where invalid); gt_roc (B,3,G,G) the query's true ROC (the chosen
    symmetry variant); use (B,1,G,G) the cells to train (valid and co-visible); ref (B,7,N,N) / ref_valid (B,1,N,N)
    the reference input, whose ROC pooled at the output stride is what the cells carry (``pool_roc``, as the
    encoder does). Positives: reference cells within ``band`` (reference-radius units) of the true ROC; the loss is
    -log of the attention mass on them (several may show the point: cells are coarse). Cells with no positive are
    skipped. -> (mean loss, number of cells used, fraction whose most-attended cell is a positive)."""
    from one2any_ros.core.model.network import pool_roc

    stride = ref.shape[-1] // gt_roc.shape[-1]
    values, vvalid = pool_roc(ref[:, 3:6].float(), ref_valid.float() * ref[:, 6:7].float(), stride)
    v = values.flatten(2).transpose(1, 2)  # (B,Lk,3)
    q = gt_roc.flatten(2).transpose(1, 2)  # (B,L,3)
    pos = (torch.cdist(q, v) < band) & vvalid.flatten(1)[:, None, :].bool()  # (B,L,Lk)
    rows = use.flatten(1).bool() & pos.any(-1) & torch.isfinite(logits).any(-1)
    n = rows.sum()
    if int(n) == 0:
        zero = logits.sum() * 0.0
        return zero, n, zero.detach()
    lg = logits[rows]
    ce = torch.logsumexp(lg, -1) - torch.logsumexp(lg.masked_fill(~pos[rows], float("-inf")), -1)
    top1 = pos[rows].gather(1, lg.argmax(-1, keepdim=True)).float().mean()
    return ce.mean(), n, top1


def compute_loss(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], loss_cfg: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """The training loss and its parts (floats for logging). See the module docstring."""
    gt, valid = batch["gt"].float(), batch["gt_valid"].float()
    roc, match = out["roc"].float(), out["roc_match"].float()
    beta = float(loss_cfg.get("beta", 0.1))
    roc_valid = valid
    lam = float(loss_cfg.get("noncovisible_weight", 1.0))
    covis = batch.get("gt_covisible")
    if covis is not None and lam < 1.0:
        roc_valid = valid * (covis.float() + lam * (1.0 - covis.float()))
    l_roc, k = _variant_loss(roc, gt, roc_valid, beta)
    l_match, _ = _variant_loss(match, gt, roc_valid, beta)
    gt_best = gt[torch.arange(len(k), device=gt.device), k]
    err = (roc - gt_best).abs().mean(1, keepdim=True).detach()  # (B,1,G,G) mean |error| per coordinate
    log_b = out["log_b"].float()
    nll = err / log_b.exp() + log_b
    cnt = valid.sum().clamp_min(1.0)
    l_conf = (nll * valid).sum() / cnt
    loss = l_roc.mean() + float(loss_cfg.get("match_weight", 0.5)) * l_match.mean() + float(loss_cfg.get("conf_weight", 0.1)) * l_conf
    parts = {"loss_roc": float(l_roc.mean().detach()), "loss_match": float(l_match.mean().detach()),
             "loss_conf": float(l_conf.detach())}
    ce_w = float(loss_cfg.get("match_ce_weight", 0.0))
    if "match_logits" in out and covis is not None and "ref" in batch:  # logged even at weight 0: how well it matches
        with torch.set_grad_enabled(ce_w > 0 and torch.is_grad_enabled()):
            l_ce, n_ce, top1 = match_cross_entropy(out["match_logits"], gt_best, valid * covis.float(), batch["ref"],
                                                   batch["ref_valid"], float(loss_cfg.get("match_ce_band", 0.15)))
        if ce_w > 0:
            loss = loss + ce_w * l_ce
        if int(n_ce):
            parts["loss_match_ce"], parts["match_top1"] = float(l_ce.detach()), float(top1)
    parts["loss"] = float(loss.detach())
    with torch.no_grad():
        err_map = (roc - gt_best).norm(dim=1, keepdim=True)
        parts["roc_err"] = float((err_map * valid).sum() / cnt)
        if covis is not None:  # where matching is possible at all: the error a matching network can bring down
            cv = valid * covis.float()
            parts["roc_err_covisible"] = float((err_map * cv).sum() / cv.sum().clamp_min(1.0))
    return loss, parts


# --- validation ----------------------------------------------------------------------------------------

def _stack(pairs: list[dict], keys: tuple[str, ...], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.stack([p[k] for p in pairs])).to(device) for k in keys}


def pose_from_prediction(roc: np.ndarray, conf: np.ndarray, points: np.ndarray, valid: np.ndarray, scale: float,
                         diameter: float, *, threshold: float = 0.05, iterations: int = 256, seed: int = 0) -> np.ndarray | None:
    """T_query_C (4,4) from an ROC grid (3,G,G), confidence (1,G,G) and query points (3,G,G) m with valid
    (1,G,G), by the backend's RANSAC + weighted Umeyama; None with fewer than 3 valid cells."""
    from one2any_ros.core.geometry import ransac_rigid

    m = valid[0] > 0
    if m.sum() < 3:
        return None
    src = roc[:, m].T.astype(np.float64) * scale
    dst = points[:, m].T.astype(np.float64)
    w = conf[0][m].astype(np.float64) + 1e-3
    return ransac_rigid(src, dst, w, threshold=threshold * diameter, iterations=iterations, rng=np.random.default_rng(seed)).T


def validate(model: One2AnyNet, pairs: list[dict], device: torch.device, loss_cfg: dict, *, batch_size: int = 16) -> dict[str, Any]:
    """Validation loss, ROC error and pose accuracy (ADD(-S over the symmetry variants) of the reference
    cloud < 0.1 d, pose by RANSAC on the predicted ROC) overall and per rotation bin."""
    from one2any_ros.core.geometry import transform_points

    model.eval()
    keys = ("ref", "ref_valid", "query", "gt", "gt_valid") + (("gt_covisible",) if pairs and "gt_covisible" in pairs[0] else ())
    tot: dict[str, float] = {}
    seen: dict[str, int] = {}  # pairs behind each part (the matching ones skip a batch without co-visible cells)
    hits: dict[str, list[bool]] = {}
    with torch.inference_mode():
        for i in range(0, len(pairs), batch_size):
            chunk = pairs[i:i + batch_size]
            b = _stack(chunk, keys, device)
            out = model(b["ref"], b["ref_valid"], b["query"])
            _, parts = compute_loss(out, b, loss_cfg)
            for k, v in parts.items():
                tot[k] = tot.get(k, 0.0) + v * len(chunk)
                seen[k] = seen.get(k, 0) + len(chunk)
            roc = out["roc"].float().cpu().numpy()
            conf = confidence_from_log_b(out["log_b"].float()).cpu().numpy()
            for j, p in enumerate(chunk):
                T = pose_from_prediction(roc[j], conf[j], p["q_points"], p["q_points_valid"], float(p["scale"]),
                                         float(p["diameter"]), seed=i + j)
                ok = False
                if T is not None:
                    n = int(p["num_variants"])
                    pts = p["ref_points"].astype(np.float64)
                    est = transform_points(T, pts)
                    gts = transform_points(p["T_query_C"][:n], pts)  # (n,P,3)
                    add = np.linalg.norm(gts - est[None], axis=2).mean(axis=1).min()
                    ok = is_hit(add, float(p["diameter"]))
                hits.setdefault(rotation_bin(float(p["angle_deg"])), []).append(ok)
                hits.setdefault("all", []).append(ok)
    model.train()
    n = max(len(pairs), 1)
    res: dict[str, Any] = {"val_loss": tot.get("loss", 0.0) / n, "val_roc_err": tot.get("roc_err", 0.0) / n,
                           "val_pose_acc": float(np.mean(hits.get("all", [False])))}
    for k in ("roc_err_covisible", "loss_match_ce", "match_top1"):
        if k in tot:
            res[f"val_{k}"] = tot[k] / seen[k]
    for k, v in hits.items():
        if k != "all":
            res[f"val_{k}"] = float(np.mean(v))
    return res


# --- output files --------------------------------------------------------------------------------------

class MetricsLog:
    """Append-only JSONL + CSV (fixed columns) in the run directory."""

    def __init__(self, out_dir: Path) -> None:
        self.jsonl = out_dir / "metrics.jsonl"
        self.csv = out_dir / "metrics.csv"
        if not self.csv.exists():
            with open(self.csv, "w", newline="") as f:
                csv.writer(f).writerow(CSV_COLUMNS)

    def write(self, row: dict[str, Any]) -> None:
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(row) + "\n")
        with open(self.csv, "a", newline="") as f:
            csv.writer(f).writerow([_fmt(row.get(c, "")) for c in CSV_COLUMNS])

    def drop_after(self, step: int) -> int:
        """Remove the rows logged after ``step`` (a run killed between two saves logged steps its resumed state
        never had: without this the curves would run those steps twice). Returns how many were dropped."""
        rows = self.read()
        keep = [r for r in rows if int(r.get("step", 0)) <= step]
        if len(keep) < len(rows):
            table = io.StringIO()
            csv.writer(table).writerows([CSV_COLUMNS] + [[_fmt(r.get(c, "")) for c in CSV_COLUMNS] for r in keep])
            for path, text in ((self.jsonl, "".join(json.dumps(r) + "\n" for r in keep)), (self.csv, table.getvalue())):
                write_atomic(path, text)  # each file replaced atomically: a crash keeps the old log
        return len(rows) - len(keep)

    def read(self) -> list[dict[str, Any]]:
        if not self.jsonl.exists():
            return []
        return [json.loads(line) for line in self.jsonl.read_text().splitlines() if line.strip()]


def _fmt(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else v


def plot_curves(rows: list[dict[str, Any]], path: Path) -> None:
    """Training/validation curves against samples seen (matplotlib Agg, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tr = [r for r in rows if r.get("kind") == "train"]
    va = [r for r in rows if r.get("kind") == "val"]
    fig, ax = plt.subplots(1, 3, figsize=(15, 4))
    if tr:
        x = [r["samples"] for r in tr]
        ax[0].plot(x, [r["loss"] for r in tr], label="train loss", alpha=0.8)
        ax[1].plot(x, [r["roc_err"] for r in tr], label="train ROC error", alpha=0.8)
    if va:
        x = [r["samples"] for r in va]
        ax[0].plot(x, [r["val_loss"] for r in va], "o-", label="val loss")
        ax[1].plot(x, [r["val_roc_err"] for r in va], "o-", label="val ROC error")
        if any("val_roc_err_covisible" in r for r in va):
            ax[1].plot(x, [r.get("val_roc_err_covisible", np.nan) for r in va], "o-", ms=3,
                       label="val ROC error, pixels the reference saw")
        ax[2].plot(x, [r["val_pose_acc"] for r in va], "o-", label="all", lw=2)
        bins = BIN_NAMES
        for b in bins:
            if any(f"val_{b}" in r for r in va):
                ax[2].plot(x, [r.get(f"val_{b}", np.nan) for r in va], ".--", label=b + " deg")
        # a curriculum step (the sampler's rotation range widened on a resume) shows as new validation bins:
        # mark it, or the jump in every curve there reads as the run getting worse
        spans = [tuple(b for b in bins if f"val_{b}" in r) for r in va]
        for i in range(1, len(va)):
            if spans[i] != spans[i - 1]:
                for a in ax:
                    a.axvline(va[i]["samples"], color="grey", ls=":", lw=1.2,
                              label=f"rotations widened to {spans[i][-1].split('-')[1]} deg")
        first = next((i for i, r in enumerate(va) if "val_roc_err_covisible" in r), 0)
        if first > 0:  # the loss changed there (co-visibility weighting): the loss curve steps down by construction
            for a in ax:
                a.axvline(va[first]["samples"], color="purple", ls=":", lw=1.2, label="loss weighted by co-visibility")
    ax[0].set_title("loss")
    ax[1].set_title("ROC error (reference radii)")
    ax[2].set_title("val pose accuracy (ADD(-S) < 0.1 d, RANSAC only)")
    save_curves_figure(fig, ax, path, "training samples")


def save_curves_figure(fig, axes, path: Path, xlabel: str) -> None:
    """Label, grid and legend every panel, then write the PNG atomically (a run killed mid-write keeps the old)."""
    import matplotlib.pyplot as plt

    for a in axes:
        a.set_xlabel(xlabel)
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=90, format="png")
    finally:
        plt.close(fig)


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """The optimizer state as flat tensors. Adam's moments are kept in bfloat16 (fp32's range, so a small
    second moment never underflows to 0): the run directory is committed to resume training in the next
    session (the machine keeps nothing), and this halves it; ``Optimizer.load_state_dict`` casts them back."""
    sd = opt.state_dict()
    tensors = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            t = v if torch.is_tensor(v) else torch.tensor(v)
            tensors[f"{pid}.{k}"] = t.to(torch.bfloat16) if k != "step" and t.is_floating_point() else t
    return tensors, {"param_groups": sd["param_groups"]}


def optimizer_state(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, t in tensors.items():
        pid, k = name.split(".", 1)
        state.setdefault(int(pid), {})[k] = t
    return {"state": state, "param_groups": meta["param_groups"]}


# --- the loop ------------------------------------------------------------------------------------------

@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device: str) -> tuple[_Dist, torch.device]:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; otherwise a single process."""
    from one2any_ros.core.model.device import resolve_device

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist(), resolve_device(device)
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device in ("auto", "cuda") and torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local)
        return _Dist(rank, world, local), torch.device("cuda", local)
    return _Dist(rank, world, local), torch.device("cpu")


def _warm_start(model: One2AnyNet, path: str, net_cfg: NetConfig, dev: torch.device) -> dict[str, Any]:
    """Load a checkpoint's weights into a new run's model; returns the lineage recorded in the summaries."""
    from one2any_ros.core.model.checkpoint import load_checkpoint

    src, meta = load_checkpoint(path, device=dev)
    if src.cfg != net_cfg:
        raise CheckpointError(f"train.init_from {path}: its architecture {src.cfg.to_dict()} differs from the "
                              f"config's {net_cfg.to_dict()}", reason="checkpoint_mismatch")
    if not all(torch.isfinite(t).all() for t in src.state_dict().values()):
        raise CheckpointError(f"train.init_from {path} holds non-finite weights", reason="checkpoint_nan")
    model.load_state_dict(src.state_dict())
    parent = meta.get("training") or {}
    return {"init_from": str(path), "init_samples": int(parent.get("samples") or 0), "init_steps": int(parent.get("steps") or 0)}


def _sigterm_as_interrupt():
    """SIGTERM (``kill``, a session or job scheduler ending) stops training like Ctrl-C: the run state is saved
    before the process exits, so a background run loses nothing. Returns the function restoring the old handler."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, old)


def _lr_at(step: int, cfg: dict) -> float:
    t = cfg["train"]
    base, warm, total = float(t["lr"]), int(t["warmup_steps"]), max(int(t["max_steps"]), 1)
    if step < warm:
        return base * (step + 1) / warm
    prog = min((step - warm) / max(total - warm, 1), 1.0)
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * prog)))


@dataclass
class _Progress:
    """What the run has done: restored from ``train_state.json`` on a resume, saved with it."""

    step: int = 0
    samples: int = 0
    elapsed: float = 0.0  # seconds spent by earlier invocations
    best_err: float = float("inf")
    resumes: int = 0


@dataclass
class _Session:
    """One invocation of :func:`train`: the model, optimizer, data and run directory, and the loop's bookkeeping.
    Rank 0 (``dist.main``) alone validates, logs and saves."""

    cfg: dict[str, Any]
    config_path: str | os.PathLike
    out: Path
    dist: _Dist
    dev: torch.device
    model: One2AnyNet
    opt: torch.optim.Optimizer
    progress: _Progress
    lineage: dict[str, Any]
    ddp_model: torch.nn.Module | None = None
    use_amp: bool = False
    amp_dtype: torch.dtype = torch.float16
    scaler: Any = None
    pcfg: Any = None
    loader: Any = None
    val_pairs: list[dict] = field(default_factory=list)
    log: MetricsLog | None = None
    bar: Any = None
    last_val: dict[str, Any] = field(default_factory=dict)
    t_start: float = field(default_factory=time.time)
    t_ckpt: float = field(default_factory=time.time)
    t_log: float = field(default_factory=time.time)
    s_log: int = 0
    acc: dict[str, float] = field(default_factory=dict)
    n_acc: int = 0
    bad_steps: int = 0

    @property
    def tcfg(self) -> dict[str, Any]:
        return self.cfg["train"]

    def elapsed_s(self) -> float:
        return self.progress.elapsed + time.time() - self.t_start

    # --- one optimisation step -------------------------------------------------------------------------
    def train_step(self, batch: dict[str, torch.Tensor]) -> tuple[dict[str, float], float]:
        """Forward, loss, backward and (unless the loss or gradient is not finite) an optimizer step.
        Returns (the loss parts, the learning rate used)."""
        tcfg, opt, scaler = self.tcfg, self.opt, self.scaler
        batch = {k: v.to(self.dev, non_blocking=True) for k, v in batch.items()}
        lr = _lr_at(self.progress.step, self.cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        with torch.autocast(self.dev.type, dtype=self.amp_dtype, enabled=self.use_amp):
            out_t = self.ddp_model(batch["ref"], batch["ref_valid"], batch["query"])
        loss, parts = compute_loss(out_t, batch, tcfg["loss"])
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if tcfg.get("grad_clip") or not scaler.is_enabled():
            scaler.unscale_(opt)
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), float(tcfg.get("grad_clip") or float("inf")))
        else:
            norm = torch.zeros(())
        if not scaler.is_enabled() and not (torch.isfinite(loss) and torch.isfinite(norm)):
            # one bad batch must not turn every weight into NaN (the fp16 GradScaler does this on its own)
            self.bad_steps += 1
            if self.bad_steps >= int(tcfg.get("max_bad_steps", 50)):
                raise One2AnyError(f"training diverged: {self.bad_steps} steps in a row with a non-finite loss or "
                                   f"gradient (last loss {float(loss.detach()):.4g}); lower train.lr, or warm-start from "
                                   f"{self.out / 'best.safetensors'} with train.init_from", reason="diverged")
            parts["skipped"] = 1.0
        else:
            self.bad_steps = 0
            scaler.step(opt)
        scaler.update()
        self.progress.step += 1
        self.progress.samples += batch["ref"].shape[0] * self.dist.world
        for k, v in parts.items():
            self.acc[k] = self.acc.get(k, 0.0) + v
        self.n_acc += 1
        if self.bar is not None:
            self.bar.update(1)
        return parts, lr

    def should_stop(self) -> bool:
        """At max_steps or past max_minutes; under DDP every rank stops at the same step, or the others hang in
        all-reduce."""
        max_minutes = self.tcfg.get("max_minutes")
        minutes = (time.time() - self.t_start) / 60.0
        stop = self.progress.step >= int(self.tcfg["max_steps"]) or (max_minutes is not None and minutes >= float(max_minutes))
        if self.dist.world > 1:
            import torch.distributed as dist

            flag = torch.tensor([float(stop)], device=self.dev)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stop = bool(flag.item() > 0)
        return stop

    # --- rank 0: log, validate, save -------------------------------------------------------------------
    def after_step(self, lr: float, stop: bool) -> None:
        """The training row every ``log_every`` steps, validation every ``val_every``, the run state every
        ``checkpoint_minutes`` (and all three at the last step)."""
        tcfg, step = self.tcfg, self.progress.step
        if step % int(tcfg["log_every"]) == 0 or stop:
            self.log_train_row(lr)
        if self.val_pairs and (step % int(tcfg["val_every"]) == 0 or stop):
            self.run_validation()
        if stop or time.time() - self.t_ckpt >= 60.0 * float(tcfg["checkpoint_minutes"]):
            self.save_all(final=stop)
            self.t_ckpt = time.time()

    def log_train_row(self, lr: float) -> None:
        now = time.time()
        pr = self.progress
        row = {"kind": "train", "step": pr.step, "samples": pr.samples, "elapsed_s": pr.elapsed + now - self.t_start, "lr": lr,
               **{k: v / self.n_acc for k, v in self.acc.items()},
               "samples_per_s": (pr.samples - self.s_log) / max(now - self.t_log, 1e-9)}
        self.log.write(row)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{row['loss']:.3f}", roc=f"{row['roc_err']:.3f}", sps=f"{row['samples_per_s']:.1f}")
        self.acc, self.n_acc, self.t_log, self.s_log = {}, 0, now, pr.samples

    def run_validation(self) -> None:
        """Validate, log, keep ``best.*`` when the ROC error is the lowest so far, redraw the curves."""
        pr = self.progress
        res = validate(self.model, self.val_pairs, self.dev, self.tcfg["loss"])
        self.last_val = res
        self.log.write({"kind": "val", "step": pr.step, "samples": pr.samples, "elapsed_s": self.elapsed_s(), **res})
        if res["val_roc_err"] < pr.best_err:
            pr.best_err = res["val_roc_err"]
            save_checkpoint(self.model, self.out / "best", training={"steps": pr.step, "samples": pr.samples, "val": res,
                                                                     "config": str(self.config_path),
                                                                     "pair_sampler": self.pcfg.to_dict(), **self.lineage})
        plot_curves(self.log.read(), self.out / "curves.png")
        if self.bar is not None:
            self.bar.write(f"step {pr.step}: val loss {res['val_loss']:.4f}, ROC error {res['val_roc_err']:.3f}, "
                           f"pose acc {res['val_pose_acc']:.2f}")

    def save_all(self, final: bool = False) -> None:
        """The latest weights (``checkpoint.*``) and the run state (``train_state.*``), each file atomically."""
        pr = self.progress
        summary = {"steps": pr.step, "samples": pr.samples, "elapsed_s": round(self.elapsed_s(), 1),
                   "config": str(self.config_path), "best_val_roc_err": pr.best_err, "last_val": self.last_val,
                   "pair_sampler": self.pcfg.to_dict(), "num_parameters": count_parameters(self.model), **self.lineage}
        save_checkpoint(self.model, self.out / "checkpoint", training=summary)
        tensors, opt_meta = optimizer_tensors(self.opt)
        save_tensors(tensors, self.out / "train_state.safetensors")
        scaler = self.scaler
        st = {"step": pr.step, "samples": pr.samples, "elapsed_s": self.elapsed_s(), "best_val_roc_err": pr.best_err,
              "resumes": pr.resumes, "optimizer": opt_meta,
              "scaler_scale": float(scaler.get_scale()) if scaler.is_enabled() else None, "final": final}
        write_atomic(self.out / "train_state.json", json.dumps(st))


def _start_session(cfg: dict[str, Any], config_path: str | os.PathLike, out: Path, resume: bool, dist_info: _Dist,
                   dev: torch.device) -> _Session:
    """The model and optimizer of a new run, a resumed one (``train_state``) or a warm start (``init_from``)."""
    if dist_info.main:
        out.mkdir(parents=True, exist_ok=True)
        if not resume and (out / "train_state.json").exists():
            raise One2AnyError(f"{out} already holds a run: pass resume=True (--resume) or another out_dir", reason="run_exists")
    torch.manual_seed(int(cfg["seed"]) + dist_info.rank)
    net_cfg = NetConfig.from_dict(cfg["model"])
    model = One2AnyNet(net_cfg).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=float(cfg["train"]["lr"]), weight_decay=float(cfg["train"]["weight_decay"]))
    progress, lineage = _Progress(), {}
    if resume:
        progress = _Progress(*_load_state(out, model, opt, net_cfg, dev))
    elif cfg["train"].get("init_from"):
        lineage = _warm_start(model, str(cfg["train"]["init_from"]), net_cfg, dev)
    return _Session(cfg=cfg, config_path=config_path, out=out, dist=dist_info, dev=dev, model=model, opt=opt,
                    progress=progress, lineage=lineage)


def _set_up_compute(run: _Session) -> None:
    """DDP across processes, CPU threads, mixed precision on CUDA."""
    cfg, dev, model = run.cfg, run.dev, run.model
    if run.dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        run.ddp_model = DDP(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    else:
        run.ddp_model = model
    if dev.type == "cpu":
        # Measured here: 2 torch threads on 2 cores beside a busy data worker ran 3-5x slower than 1 thread
        # (OpenMP spin-waiting), so the trainer leaves the workers their cores.
        n_thr = cfg["train"].get("cpu_threads") or max(1, (os.cpu_count() or 1) - int(cfg["data"]["workers"]))
        torch.set_num_threads(int(n_thr))
    run.use_amp = dev.type == "cuda" and bool(cfg["train"]["amp"])
    run.amp_dtype = torch.bfloat16 if run.use_amp and torch.cuda.is_bf16_supported() else torch.float16
    run.scaler = torch.amp.GradScaler("cuda", enabled=run.use_amp and run.amp_dtype == torch.float16)


def _set_up_data(run: _Session) -> None:
    """The training pair stream (a fresh one per resume, one per rank) and, on rank 0, the validation pairs."""
    from one2any_ros.training.pairs import PairDataset, make_validation_pairs

    cfg, dist_info = run.cfg, run.dist
    run.pcfg = pcfg = _pair_config(cfg)
    workers = int(cfg["data"]["workers"])
    ds = PairDataset(pcfg, seed=int(cfg["seed"]) * 1000 + run.progress.resumes, rank=dist_info.rank)
    # a process forked from one that has made a GL context hangs making its own: GL workers start fresh
    mp_context = "forkserver" if workers > 0 and pcfg.renderer != "pybullet" else None
    run.loader = torch.utils.data.DataLoader(ds, batch_size=int(cfg["train"]["batch_size"]), num_workers=workers,
                                             persistent_workers=workers > 0, pin_memory=run.dev.type == "cuda",
                                             prefetch_factor=4 if workers > 0 else None, multiprocessing_context=mp_context)
    run.val_pairs = make_validation_pairs(pcfg, int(cfg["data"]["val_pairs"]), num_objects=int(cfg["data"]["val_objects"])) \
        if dist_info.main and int(cfg["data"]["val_pairs"]) > 0 else []


def _set_up_files(run: _Session, resume: bool, progress: bool) -> None:
    """Rank 0: the metrics log (rows past the resumed step dropped), the config copy, the progress bar. Every
    rank: the clocks (``max_minutes`` counts from here)."""
    if run.dist.main:
        run.log = MetricsLog(run.out)
        if resume:
            run.log.drop_after(run.progress.step)
        (run.out / "config.yaml").write_text(yaml.safe_dump(run.cfg, sort_keys=False))
    run.t_start = run.t_ckpt = run.t_log = time.time()
    run.s_log = run.progress.samples
    if run.dist.main and progress:
        from tqdm import tqdm

        run.bar = tqdm(total=int(run.tcfg["max_steps"]), initial=run.progress.step, desc="train", unit="step",
                       mininterval=2.0, dynamic_ncols=True)


def _loop(run: _Session) -> None:
    """Train until a stop condition; Ctrl-C or SIGTERM saves the run state (rank 0) before re-raising."""
    run.model.train()
    it = iter(run.loader)
    stop = run.progress.step >= int(run.tcfg["max_steps"])
    restore_sigterm = _sigterm_as_interrupt()
    try:
        while not stop:
            _, lr = run.train_step(next(it))
            stop = run.should_stop()
            if run.dist.main:
                run.after_step(lr, stop)
    except KeyboardInterrupt:
        if run.dist.main:
            run.save_all()
        raise
    finally:
        restore_sigterm()
        if run.bar is not None:
            run.bar.close()


def train(config_path: str | os.PathLike, *, resume: bool = False, device: str = "auto", out_dir: str | os.PathLike | None = None,
          overrides: dict[str, Any] | None = None, progress: bool = True) -> dict[str, Any]:
    """Train (or resume) from a YAML config; returns a summary dict (steps, samples, last metrics, paths).

    ``device``: auto|cpu|cuda. ``out_dir``: the run directory (default: the config's ``out_dir``, else
    ``runs/<config stem>``). ``overrides``: dotted keys, e.g. {"train.max_steps": 100}. Under torchrun each
    process trains on its own pair stream (seeded by rank) and gradients are averaged by DDP.
    """
    cfg = load_config(config_path, overrides)
    dist_info, dev = _init_distributed(device)
    out = Path(out_dir or cfg.get("out_dir") or Path("runs") / Path(config_path).stem)
    run = _start_session(cfg, config_path, out, resume, dist_info, dev)
    _set_up_compute(run)
    _set_up_data(run)
    _set_up_files(run, resume, progress)
    _loop(run)
    if dist_info.world > 1:
        import torch.distributed as dist

        dist.barrier()
    if dist_info.main and not (out / "train_state.json").exists():
        run.save_all(final=True)
    pr = run.progress
    return {"steps": pr.step, "samples": pr.samples, "out_dir": str(out), "checkpoint": str(out / "checkpoint.safetensors"),
            "best": str(out / "best.safetensors"), "last_val": run.last_val, "best_val_roc_err": pr.best_err,
            "num_parameters": count_parameters(run.model)}


def _load_state(out: Path, model: One2AnyNet, opt: torch.optim.Optimizer, net_cfg: NetConfig,
                dev: torch.device) -> tuple[int, int, float, float, int]:
    """Restore weights, optimizer and counters from ``out``; CheckpointError naming what is wrong."""
    js = out / "train_state.json"
    if not js.is_file():
        raise CheckpointError(f"cannot resume: {js} does not exist", reason="checkpoint_missing")
    try:
        st = json.loads(js.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"cannot resume: {js} is not valid JSON: {e}", reason="checkpoint_corrupt") from e
    meta = read_checkpoint_config(out / "checkpoint")
    if net_config_from_meta(meta, out / "checkpoint.json") != net_cfg:
        raise CheckpointError(f"cannot resume: the architecture in {out / 'checkpoint.json'} differs from the config's model section",
                              reason="checkpoint_mismatch")
    from one2any_ros.core.model.checkpoint import load_checkpoint

    loaded, _ = load_checkpoint(out / "checkpoint", device="cpu")
    model.load_state_dict(loaded.state_dict())
    opt_t = load_tensors(out / "train_state.safetensors")
    try:
        sd = optimizer_state({k: v.to(dev) for k, v in opt_t.items()}, st["optimizer"])
        for pid, s in sd["state"].items():  # AdamW keeps 'step' on the CPU
            if "step" in s:
                s["step"] = s["step"].cpu()
        opt.load_state_dict(sd)
    except (KeyError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"cannot resume: optimizer state in {out / 'train_state.safetensors'} does not match: {e}",
                              reason="checkpoint_mismatch") from e
    return int(st["step"]), int(st["samples"]), float(st["elapsed_s"]), float(st.get("best_val_roc_err", float("inf"))), \
        int(st.get("resumes", 0)) + 1


def export_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, *, max_mb: float = 25.0,
                      inference: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Re-save a checkpoint (verified by loading it) to ``dst`` (e.g. the bundled ``model/default``);
    ``inference``: how the backend should use it, as measured on validation scenes (``one2any_ros.training.promote``)."""
    from one2any_ros.core.model.checkpoint import checkpoint_paths, load_checkpoint

    model, meta = load_checkpoint(src)
    paths = save_checkpoint(model, dst, training=meta.get("training", {}),
                            extra={"inference": inference} if inference else None)
    size = paths[0].stat().st_size / 1e6
    if size > max_mb:
        raise CheckpointError(f"{paths[0]} is {size:.1f} MB, over the {max_mb} MB limit", reason="checkpoint_too_large")
    return paths


if __name__ == "__main__":  # python -m / torchrun -m one2any_ros.training.train: the CLI's `one2any train`
    import sys

    from one2any_ros.apps.cli import main

    raise SystemExit(main(["train", *sys.argv[1:]]))
