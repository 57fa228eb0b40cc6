"""What a training run writes as it goes, for people to read: ``metrics.jsonl`` + ``metrics.csv`` (fixed columns)
and ``curves.png``; ``save_curves_figure`` is shared with the scorer's run."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from one2any_ros.core.files import atomic_path, write_atomic
from one2any_ros.core.protocol import BIN_NAMES

CSV_COLUMNS = ("kind", "step", "samples", "elapsed_s", "lr", "loss", "loss_roc", "loss_match", "loss_conf", "roc_err",
               "samples_per_s", "val_loss", "val_roc_err", "val_pose_acc", *(f"val_{b}" for b in BIN_NAMES))


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
