"""The network's training loop: ``train(config_path, resume=..., device=..., out_dir=...)``.

- Data: ``training.pairs.PairDataset`` (DataLoader worker processes render pairs of TRAINING objects);
  validation on a fixed set of pairs of VALIDATION objects (``training.validation``).
- Output directory (``out_dir``, default ``runs/<config stem>``): ``checkpoint.{safetensors,json}`` (the
  latest weights, loadable by ``model.checkpoint.load_checkpoint`` and the backend), ``best.*`` (lowest
  validation ROC error), ``train_state.{safetensors,json}`` (optimizer and counters, ``training.state``; one path,
  overwritten atomically every ``checkpoint_minutes``), ``metrics.jsonl`` + ``metrics.csv``, ``curves.png``
  (``training.curves``), and a copy of the config (``training.config``). ``resume=True`` continues from
  ``train_state`` + ``checkpoint``.
- Devices: ``auto|cpu|cuda``; mixed precision (bf16, else fp16 with a GradScaler) on CUDA; several GPUs
  through ``torchrun --nproc_per_node=K -m one2any_ros train`` (``training.distributed``).

The loss is ``training.losses.compute_loss``.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from one2any_ros.core.errors import One2AnyError
from one2any_ros.core.model.checkpoint import save_checkpoint
from one2any_ros.core.model.network import NetConfig, One2AnyNet, count_parameters
from one2any_ros.training.config import load_config, pair_config
from one2any_ros.training.curves import MetricsLog, plot_curves
from one2any_ros.training.distributed import Dist, any_rank, barrier, init_distributed, sigterm_as_interrupt
from one2any_ros.training.losses import compute_loss
from one2any_ros.training.state import Progress, load_run_state, lr_at, save_run_state, warm_start
from one2any_ros.training.validation import validate


@dataclass
class _Session:
    """One invocation of :func:`train`: the model, optimizer, data and run directory, and the loop's bookkeeping.
    Rank 0 (``dist.main``) alone validates, logs and saves."""

    cfg: dict[str, Any]
    config_path: str | os.PathLike
    out: Path
    dist: Dist
    dev: torch.device
    model: One2AnyNet
    opt: torch.optim.Optimizer
    progress: Progress
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
        lr = lr_at(self.progress.step, self.cfg)
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
        return any_rank(stop, self.dist, self.dev)

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
        save_run_state(self.out, self.opt, pr, self.elapsed_s(), self.scaler, final)


def _start_session(cfg: dict[str, Any], config_path: str | os.PathLike, out: Path, resume: bool, dist_info: Dist,
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
    progress, lineage = Progress(), {}
    if resume:
        progress = load_run_state(out, model, opt, net_cfg, dev)
    elif cfg["train"].get("init_from"):
        lineage = warm_start(model, str(cfg["train"]["init_from"]), net_cfg, dev)
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
    run.pcfg = pcfg = pair_config(cfg)
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
    restore_sigterm = sigterm_as_interrupt()
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
    dist_info, dev = init_distributed(device)
    out = Path(out_dir or cfg.get("out_dir") or Path("runs") / Path(config_path).stem)
    run = _start_session(cfg, config_path, out, resume, dist_info, dev)
    _set_up_compute(run)
    _set_up_data(run)
    _set_up_files(run, resume, progress)
    _loop(run)
    barrier(dist_info)
    if dist_info.main and not (out / "train_state.json").exists():
        run.save_all(final=True)
    pr = run.progress
    return {"steps": pr.step, "samples": pr.samples, "out_dir": str(out), "checkpoint": str(out / "checkpoint.safetensors"),
            "best": str(out / "best.safetensors"), "last_val": run.last_val, "best_val_roc_err": pr.best_err,
            "num_parameters": count_parameters(run.model)}
