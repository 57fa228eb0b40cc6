"""Draw the package's layers (docs/img/layers.png, shown in docs/architecture.md, Modules).

    .venv/bin/python tools/draw_layers.py [--out docs/img/layers.png]

Each box is a layer with its modules; an arrow means "imports". The module lists are checked against the package
(every listed module must exist), so the picture cannot silently name a module that has gone.
"""
from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "one2any_ros"

# (name, modules relative to one2any_ros/, x, y, width, height, colour); coordinates in figure units. Each box is one
# folder (core/ is drawn as three boxes); test/test_layers.py holds the same rules in code.
LAYERS = [
    ("apps/ (the one2any command)", ["apps/cli", "apps/demo", "apps/bench", "apps/estimate_files"],
     0.0, 8.0, 4.6, 1.3, "#cfe2f3"),
    ("ros_tools/ (graph tools)", ["ros_tools/harness", "ros_tools/player", "ros_tools/process_node", "ros_tools/demo_graph",
                                  "ros_tools/demo_multi", "ros_tools/demo_bag", "ros_tools/demo_report", "ros_tools/bench"],
     5.0, 8.0, 4.0, 1.3, "#d9ead3"),
    ("ros/ (node runtime, thin)", ["ros/node", "ros/object_table", "ros/references", "ros/cue_input", "ros/outputs",
                                   "ros/mailbox", "ros/sync", "ros/conversions", "ros/tf",
                                   "ros/detections", "ros/diagnostics", "ros/params", "ros/transport"],
     5.0, 3.8, 4.0, 1.9, "#b6d7a8"),
    ("training/", ["training/train", "training/config", "training/state", "training/distributed",
                   "training/losses", "training/validation", "training/curves", "training/export",
                   "training/train_scorer", "training/promote", "training/pairs"],
     0.0, 6.1, 4.6, 1.3, "#fce5cd"),
    ("evaluation/", ["evaluation/plan", "evaluation/run", "evaluation/summary", "evaluation/report",
                     "evaluation/sequence"], 0.0, 3.8, 2.1, 1.9, "#fde9d9"),
    ("data/", ["data/objects", "data/meshes", "data/textures", "data/scene", "data/render", "data/render_gl",
               "data/bop", "data/ply", "data/generate", "data/sample", "data/multi_scene"], 2.5, 3.8, 2.1, 1.9, "#fff2cc"),
    ("core/: estimation", ["core/multi_object", "core/estimator", "core/estimator_settings", "core/candidates",
                           "core/reference_cache", "core/tracking",
                           "core/backends", "core/verify", "core/appearance", "core/symmetry", "core/frame",
                           "core/reference", "core/reference_store", "core/box_segment", "core/object_processes",
                           "core/visualize"],
     0.0, 2.0, 9.0, 1.5, "#ead1dc"),
    ("core/: foundations", ["core/camera", "core/colour", "core/geometry", "core/nearest", "core/metrics",
                            "core/protocol", "core/files", "core/errors", "core/checkpoint_files", "core/strict_config"],
     0.0, 0.0, 6.2, 1.4, "#d9d2e9"),
    ("core/model/ (torch)", ["core/model/network", "core/model/scorer", "core/model/checkpoint", "core/model/inputs",
                             "core/model/device"], 6.6, 0.0, 2.4, 1.4, "#f4cccc"),
]
ARROWS = [  # (from layer index, to layer index): "imports"
    (0, 3), (3, 4), (3, 5), (4, 6), (4, 5), (1, 2), (2, 6), (5, 6), (6, 7), (6, 8), (1, 5),
]


def _exists(module: str) -> bool:
    return (PKG / f"{module}.py").exists() or (PKG / module / "__init__.py").exists()


def draw(out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    missing = [m for _, mods, *_ in LAYERS for m in mods if not _exists(m)]
    if missing:
        raise SystemExit(f"draw_layers: these modules do not exist any more: {missing}")
    fig, ax = plt.subplots(figsize=(11, 11))
    for name, mods, x, y, w, h, colour in LAYERS:
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.05", fc=colour, ec="#444444", lw=1.2))
        ax.text(x + 0.1, y + h - 0.12, name, fontsize=11, fontweight="bold", va="top")
        names = [m.rsplit("/", 1)[-1] for m in mods]  # the box's title names the folder
        lines = textwrap.wrap(", ".join(names), width=max(12, int(w * 10)))  # ~10 monospace characters a unit
        ax.text(x + 0.1, y + h - 0.45, "\n".join(lines), fontsize=8.5, va="top", family="monospace")
    for a, b in ARROWS:  # from the bottom of a to the top of b, where the two boxes overlap in x when they do
        (xa, ya, wa, ha), (xb, yb, wb, hb) = LAYERS[a][2:6], LAYERS[b][2:6]
        if ya == yb:  # side by side: left to right at mid-height
            ax.add_patch(FancyArrowPatch((xa + wa, ya + ha / 2), (xb, yb + hb / 2), arrowstyle="-|>",
                                         mutation_scale=14, color="#555555", lw=1.0, shrinkA=2, shrinkB=2))
            continue
        lo, hi = max(xa, xb) + 0.2, min(xa + wa, xb + wb) - 0.2
        x0 = (lo + hi) / 2 if lo < hi else xa + wa / 2
        x1 = (lo + hi) / 2 if lo < hi else xb + wb / 2
        ax.add_patch(FancyArrowPatch((x0, ya), (x1, yb + hb), arrowstyle="-|>", mutation_scale=14, color="#555555",
                                     lw=1.0, shrinkA=2, shrinkB=2))
    ax.text(0.0, -0.5, "arrow: imports (apps/ may use every layer; training also uses core/model/). core/ imports no other\n"
            "layer and no ROS; ros/ uses core/ only (a thin layer over multi_object); ros_tools/ drive a node process.",
            fontsize=9, color="#333333")
    ax.set_xlim(-0.2, 9.2)
    ax.set_ylim(-0.8, 9.5)
    ax.axis("off")
    ax.set_title("one2any_ros: layers", fontsize=14)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "layers.png")
    a = p.parse_args(argv)
    draw(a.out)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
