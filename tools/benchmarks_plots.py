"""The plots of docs/benchmarks.md (tools/make_benchmarks_doc.py): accuracy by rotation bin, time per stage, and
the soak's latency and memory, each drawn from its docs/data/*.json report into docs/img/."""
from __future__ import annotations

from pathlib import Path

from one2any_ros.core.protocol import BIN_NAMES as BINS, STAGES


def _pyplot():
    """matplotlib's pyplot on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy(reports: dict[str, dict], path: Path) -> None:
    """Bars of ADD(-S)@0.1d per rotation bin, one colour per backend."""
    plt = _pyplot()
    bins = [k for k in BINS if any(r["by_rotation_bin"].get(k, {}).get("n") for r in reports.values())]
    fig, ax = plt.subplots(figsize=(6.4, 3.0), dpi=100)
    w = 0.8 / len(reports)
    for j, (b, r) in enumerate(reports.items()):
        vals = [r["by_rotation_bin"][k]["add_s_01d_recall"] or 0 for k in bins]
        xs = [i + (j - (len(reports) - 1) / 2) * w for i in range(len(bins))]
        ax.bar(xs, vals, w, label=f"{b} (all: {r['add_s_01d_recall']:.2f})")
        for x, v in zip(xs, vals):
            ax.text(x, v + 0.01, f"{v:.2f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(bins)), [f"{k} deg" for k in bins])
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("ADD(-S)@0.1d")
    ax.set_title("held-out objects, one reference: recall by rotation from the reference", fontsize=9)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_stages(b: dict, path: Path) -> None:
    """Stacked bars of the median time per stage, tracking and global search."""
    plt = _pyplot()
    stages = [s for s in STAGES if s != "total"]
    fig, ax = plt.subplots(figsize=(6.4, 1.9), dpi=100)
    for y, mode in enumerate(("tracking", "global")):
        left = 0.0
        n_all = b[mode]["total"]["n"]
        for i, s in enumerate(stages):
            st = b[mode].get(s, {})
            v = st.get("median_ms", 0.0) * st.get("n", 0) / n_all  # a stage that runs on some frames only: its share
            if v > 0:
                ax.barh(y, v, left=left, color=f"C{i}", label=s if y == 1 or mode == "global" else None)
                left += v
    ax.set_yticks([0, 1], ["tracking", "global search"])
    ax.set_xlabel("ms per frame: median of each stage x the share of frames it runs on (640x480, CPU)", fontsize=8)
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    ax.legend(uniq.values(), uniq.keys(), fontsize=7, ncol=len(uniq), loc="lower right", bbox_to_anchor=(1.0, 1.0),
              frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_ros(r: dict, path: Path) -> None:
    """The soak: stamp-to-pose latency of every pose per phase, and the node's memory."""
    plt = _pyplot()
    proc = r["calibration"]["processing_ms"]["median"]
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(7.0, 4.4), dpi=100, sharex=False,
                                 gridspec_kw={"height_ratios": [2, 1]})
    offset = 0.0
    for i, p in enumerate(r["phases"]):
        s = p["latency_series"]
        if s:
            a1.scatter([offset + t for t, _ in s], [v for _, v in s], s=3, color=f"C{i}",
                       label=f"{p['name']} ({p['camera'].get('rate_hz', 0):.0f} Hz in, {p['poses_per_s']:.1f} poses/s)")
        offset += p["duration_s"] + 5
    a1.axhline(3 * proc, color="k", lw=0.8, ls="--", label=f"3x median processing ({3 * proc:.0f} ms)")
    a1.set_yscale("log")
    a1.set_ylabel("stamp -> pose (ms)")
    a1.set_xlabel("s (phases one after the other)")
    a1.legend(fontsize=7, loc="upper right")
    ms = r.get("memory_series") or []
    if ms:
        a2.plot([t for t, _ in ms], [v for _, v in ms], color="C2")
    a2.set_ylabel("node RSS (MB)")
    a2.set_xlabel("s since the soak started")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
