"""A run's state between invocations: ``train_state.{safetensors,json}`` (optimizer, counters, loss scale) beside
``checkpoint.*``, the learning-rate schedule it follows, and the warm start of a new run from another checkpoint.

Safetensors and JSON only, never a pickle: the run directory is committed, and a session resumes what another left.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from one2any_ros.core.errors import CheckpointError
from one2any_ros.core.files import write_atomic
from one2any_ros.core.model.checkpoint import load_checkpoint, load_tensors, net_config_from_meta, read_checkpoint_config, save_tensors
from one2any_ros.core.model.network import NetConfig, One2AnyNet


@dataclass
class Progress:
    """What the run has done: restored from ``train_state.json`` on a resume, saved with it."""

    step: int = 0
    samples: int = 0
    elapsed: float = 0.0  # seconds spent by earlier invocations
    best_err: float = float("inf")
    resumes: int = 0


def lr_at(step: int, cfg: dict) -> float:
    """The learning rate at ``step``: linear warm-up over ``train.warmup_steps``, then a cosine down to 5 % of
    ``train.lr`` at ``train.max_steps``."""
    t = cfg["train"]
    base, warm, total = float(t["lr"]), int(t["warmup_steps"]), max(int(t["max_steps"]), 1)
    if step < warm:
        return base * (step + 1) / warm
    prog = min((step - warm) / max(total - warm, 1), 1.0)
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * prog)))


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
    """The inverse of ``optimizer_tensors``: a state dict for ``Optimizer.load_state_dict``."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, t in tensors.items():
        pid, k = name.split(".", 1)
        state.setdefault(int(pid), {})[k] = t
    return {"state": state, "param_groups": meta["param_groups"]}


def save_run_state(out: Path, opt: torch.optim.Optimizer, progress: Progress, elapsed_s: float, scaler: Any,
                   final: bool) -> None:
    """``train_state.safetensors`` (the optimizer) and ``train_state.json`` (counters), each file atomically."""
    tensors, opt_meta = optimizer_tensors(opt)
    save_tensors(tensors, out / "train_state.safetensors")
    st = {"step": progress.step, "samples": progress.samples, "elapsed_s": elapsed_s, "best_val_roc_err": progress.best_err,
          "resumes": progress.resumes, "optimizer": opt_meta,
          "scaler_scale": float(scaler.get_scale()) if scaler.is_enabled() else None, "final": final}
    write_atomic(out / "train_state.json", json.dumps(st))


def load_run_state(out: Path, model: One2AnyNet, opt: torch.optim.Optimizer, net_cfg: NetConfig,
                   dev: torch.device) -> Progress:
    """Restore weights, optimizer and counters from ``out`` (one more resume); CheckpointError naming what is wrong."""
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
    loaded, _ = load_checkpoint(out / "checkpoint", device="cpu")
    model.load_state_dict(loaded.state_dict())
    opt_t = load_tensors(out / "train_state.safetensors")
    try:
        sd = optimizer_state({k: v.to(dev) for k, v in opt_t.items()}, st["optimizer"])
        for s in sd["state"].values():  # AdamW keeps 'step' on the CPU
            if "step" in s:
                s["step"] = s["step"].cpu()
        opt.load_state_dict(sd)
    except (KeyError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"cannot resume: optimizer state in {out / 'train_state.safetensors'} does not match: {e}",
                              reason="checkpoint_mismatch") from e
    return Progress(int(st["step"]), int(st["samples"]), float(st["elapsed_s"]),
                    float(st.get("best_val_roc_err", float("inf"))), int(st.get("resumes", 0)) + 1)


def warm_start(model: One2AnyNet, path: str, net_cfg: NetConfig, dev: torch.device) -> dict[str, Any]:
    """Load a checkpoint's weights into a new run's model; returns the lineage recorded in the summaries."""
    src, meta = load_checkpoint(path, device=dev)
    if src.cfg != net_cfg:
        raise CheckpointError(f"train.init_from {path}: its architecture {src.cfg.to_dict()} differs from the "
                              f"config's {net_cfg.to_dict()}", reason="checkpoint_mismatch")
    if not all(torch.isfinite(t).all() for t in src.state_dict().values()):
        raise CheckpointError(f"train.init_from {path} holds non-finite weights", reason="checkpoint_nan")
    model.load_state_dict(src.state_dict())
    parent = meta.get("training") or {}
    return {"init_from": str(path), "init_samples": int(parent.get("samples") or 0), "init_steps": int(parent.get("steps") or 0)}
