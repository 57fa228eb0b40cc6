"""The evaluation's report for people: the table printed by ``one2any eval`` and the plots (recall by rotation bin,
the confidence's reliability)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from one2any_ros.core import metrics


def write_plots(report: dict, records: Sequence[Mapping], out: Path) -> None:
    """The recall and reliability PNGs, named in ``report["files"]``; skipped without matplotlib (a bare ROS
    install): the numbers still stand."""
    try:
        plot_report(report, records, out / "recall_by_bin.png")
        report["files"]["plot"] = "recall_by_bin.png"
        plot_reliability(report, out / "reliability.png")
        report["files"]["reliability_plot"] = "reliability.png"
    except ImportError:
        pass


def _fmt(v, spec: str = ".3f", unit: str = "") -> str:
    return "n/a" if v is None else f"{v:{spec}}{unit}"


def format_report_table(report: Mapping) -> str:
    """A plain-text table of a report: the overall numbers, then one line per rotation bin."""
    fails = report.get("failures", {})
    reasons = ", ".join(f"{k} {v}" for k, v in fails.get("by_reason", {}).items())
    lines = [
        f"One2Any one-reference evaluation: backend {report.get('backend')}, split {report.get('split', '?')}, "
        f"{report.get('dataset', '')}",
        f"queries {report.get('n_queries')}  scenes {report.get('n_scenes', '?')}  objects {report.get('n_objects', '?')}  "
        f"failures {fails.get('count', 0)}" + (f" ({reasons})" if reasons else "")
        + ("  query masks segmenter-like" if report.get("query_masks") == "segmenter" else ""),
        "",
        f"{'metric':<28}{'value':>12}",
        f"{'ADD(-S) recall @0.1d':<28}{_fmt(report.get('add_s_01d_recall')):>12}",
        f"{'ADD recall @0.1d':<28}{_fmt(report.get('add_01d_recall')):>12}",
        f"{'ADD-S AUC (0-10 cm)':<28}{_fmt(report.get('add_s_auc')):>12}",
        f"{'ADD(-S) AUC (0-10 cm)':<28}{_fmt(report.get('add_auc')):>12}",
        f"{'5deg 5cm recall':<28}{_fmt(report.get('recall_5deg_5cm')):>12}",
        f"{'median rotation error':<28}{_fmt(report.get('median_rot_err_deg'), '.1f', ' deg'):>12}",
        f"{'median translation error':<28}{_fmt(report.get('median_trans_err_mm'), '.1f', ' mm'):>12}",
        f"{'median latency':<28}{_fmt(report.get('median_latency_ms'), '.1f', ' ms'):>12}",
        f"{'confidence AUROC':<28}{_fmt(report.get('confidence_auroc')):>12}",
        f"{'precision @ 80% recall':<28}{_fmt(report.get('precision_at_recall_0.8')):>12}",
        f"{'symmetry errors':<28}{(report.get('symmetry_errors') or {}).get('symmetry_errors', 'n/a'):>12}",
        "",
        f"{'rotation bin (deg)':<20}{'n':>6}{'ADD(-S)@0.1d':>14}{'ADD-S AUC':>11}{'failures':>10}",
    ]
    for key, b in report.get("by_rotation_bin", {}).items():
        lines.append(f"{key:<20}{b.get('n', 0):>6}{_fmt(b.get('add_s_01d_recall')):>14}{_fmt(b.get('add_s_auc')):>11}"
                     f"{b.get('failures', 0):>10}")
    return "\n".join(lines)


def plot_report(report: Mapping, records: Sequence[Mapping], path: str | os.PathLike) -> None:
    """PNG: ADD(-S)@0.1d recall per rotation bin (bars, n on top) and the ADD-S / ADD(-S) recall curves."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend, safe in any thread

    bins = report["by_rotation_bin"]
    keys = list(bins)
    vals = [bins[k]["add_s_01d_recall"] or 0.0 for k in keys]
    fig = Figure(figsize=(10, 4))
    ax1, ax2 = fig.subplots(1, 2)
    bars = ax1.bar(keys, vals, color="tab:blue")
    for b, k in zip(bars, keys):
        ax1.text(b.get_x() + b.get_width() / 2, b.get_height() + 0.02, f"n={bins[k]['n']}", ha="center", fontsize=8)
    ax1.set_ylim(0, 1.1)
    ax1.set_xlabel("rotation reference -> query (deg)")
    ax1.set_ylabel("ADD(-S) recall @ 0.1d")
    ax1.set_title(f"{report.get('backend')}: {_fmt(report.get('add_s_01d_recall'))} overall")
    for key, label in (("adds_m", "ADD-S"), ("err_m", "ADD(-S)")):
        thr, rec = metrics.recall_curve([r[key] for r in records], metrics.DEFAULT_AUC_MAX_THRESHOLD, 200)
        ax2.plot(thr * 100.0, rec, label=f"{label} (AUC {metrics.auc([r[key] for r in records]) if records else 0:.3f})")
    ax2.set_xlim(0, 10)
    ax2.set_ylim(0, 1.05)
    ax2.set_xlabel("threshold (cm)")
    ax2.set_ylabel("recall")
    ax2.legend(loc="lower right")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_reliability(report: Mapping, path: str | os.PathLike) -> None:
    """PNG: a reliability diagram (share of right poses per confidence bin against the diagonal, counts under
    it), titled with the AUROC and the precision at 80 % recall."""
    from matplotlib.figure import Figure

    rel = report["confidence_reliability"]
    edges = np.asarray(rel["edges"])
    centres, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    share = [v if v is not None else 0.0 for v in rel["right_share"]]
    fig = Figure(figsize=(5, 5.5))
    ax, axn = fig.subplots(2, 1, gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    ax.bar(centres, share, width=width * 0.9, color="tab:green", label="right share (ADD(-S) < 0.1 d)")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share of right poses")
    ax.set_title(f"{report.get('backend')}: confidence AUROC {_fmt(report.get('confidence_auroc'))}, "
                 f"precision@80% recall {_fmt(report.get('precision_at_recall_0.8'))}", fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    axn.bar(centres, rel["n"], width=width * 0.9, color="tab:gray")
    axn.set_xlabel("confidence")
    axn.set_ylabel("poses")
    axn.set_xlim(0, 1)
    fig.tight_layout()
    fig.savefig(path, dpi=100)

