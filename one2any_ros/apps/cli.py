"""The ``one2any`` command: demo, estimate, render, train, train-scorer, promote, eval, bench, node.

The one command line of the package: ``python -m one2any_ros`` (and ``torchrun -m one2any_ros train`` for several
GPUs) runs the same subcommands through :func:`main`."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from one2any_ros.core.backends import BACKENDS
from one2any_ros.data.objects import FAMILIES
from one2any_ros.data.segmenter_masks import QUERY_MASKS


def _cmd_render(a) -> int:
    if a.sequences:
        from one2any_ros.data.sequences import write_sequence_dataset

        write_sequence_dataset(Path(a.out), scenes=a.scenes, frames=a.frames, objects=a.objects, seed=a.seed)
        print(f"wrote BOP tracking sequences to {a.out}")
        return 0
    from one2any_ros.data.generate import render_dataset

    render_dataset(Path(a.out), objects=a.objects, scenes=a.scenes, frames=a.frames, max_rotation_deg=a.max_rotation, seed=a.seed,
                   family=a.family)
    print(f"wrote BOP dataset to {a.out}")
    return 0


def _cmd_eval(a) -> int:
    if a.sequence:
        from one2any_ros.evaluation import evaluate_sequences, format_sequence_report

        report = evaluate_sequences(Path(a.dataset), split=a.split, backend=a.backend, out_dir=Path(a.out),
                                    masks=a.masks, estimator_kwargs={"device": a.device, "checkpoint": a.checkpoint})
        print(format_sequence_report(report))
        print(f"report: {Path(a.out) / 'report.json'}  rows: {Path(a.out) / 'sequences.csv'}  plot: "
              f"{Path(a.out) / 'sequence.png'}")
        return 0
    from one2any_ros.evaluation import evaluate_dataset, format_report_table

    report = evaluate_dataset(Path(a.dataset), split=a.split, backend=a.backend, out_dir=Path(a.out),
                              max_queries=a.max_queries, estimator_kwargs={"device": a.device, "checkpoint": a.checkpoint},
                              query_masks=a.query_masks)
    print(format_report_table(report))
    print(f"report: {Path(a.out) / 'report.json'}  results: {Path(a.out) / 'results.csv'}")
    return 0


def _cmd_bench(a) -> int:
    if a.objects is not None and not a.ros:
        print("one2any bench: --objects measures the ROS node; add --ros", file=sys.stderr)
        return 2
    if a.ros:
        from one2any_ros.ros_tools.bench.run import main as ros_bench  # lands with the ROS node

        return ros_bench(a)
    from one2any_ros.apps.bench import format_bench, run_bench

    rep = run_bench(a.backend, repeats=a.repeats, out_dir=Path(a.out), threads=a.threads, device=a.device, checkpoint=a.checkpoint)
    print(format_bench(rep))
    return 0


def _overrides(items: list[str]) -> dict | None:
    """``--set KEY=VALUE`` items as {dotted key: YAML value} (``KEY=`` gives None); None when there are none."""
    import yaml

    return {k: yaml.safe_load(v) for k, _, v in (kv.partition("=") for kv in items)} or None


def _cmd_train(a) -> int:
    from one2any_ros.training.train import train

    try:
        res = train(a.config, resume=a.resume, device=a.device, out_dir=a.out, overrides=_overrides(a.set))
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: train() saved the run state before re-raising
        print(f"one2any train: stopped ({e or 'interrupted'}); the run state is saved, continue with --resume",
              file=sys.stderr)
        return 130
    print(json.dumps({k: v for k, v in res.items() if k != "last_val"}, indent=1))
    print(json.dumps(res["last_val"]))
    return 0


def _cmd_train_scorer(a) -> int:
    from one2any_ros.training.train_scorer import format_result, train_scorer

    print(format_result(train_scorer(a.config, out_dir=a.out, resume=a.resume, export=a.export, overrides=_overrides(a.set))))
    return 0


def _cmd_promote(a) -> int:
    from one2any_ros.training.promote import format_decision, run

    print(format_decision(run(a.checkpoint, Path(a.dataset), Path(a.out), max_queries=a.max_queries, export=a.export)))
    return 0


def _cmd_demo(a) -> int:
    if a.objects > 1:
        if a.no_ros:
            print("one2any demo: --objects needs the ROS graph (several objects are a node feature); drop --no-ros",
                  file=sys.stderr)
            return 2
        from one2any_ros.ros_tools.demo_multi import run_ros_multi_demo

        return run_ros_multi_demo(a.objects, backend=a.backend, out_dir=Path(a.out), device=a.device)
    if a.no_ros:
        from one2any_ros.apps.demo import run_demo

        return run_demo(backend=a.backend, out_dir=Path(a.out), device=a.device)
    from one2any_ros.ros_tools.demo_graph import run_ros_demo

    return run_ros_demo(backend=a.backend, out_dir=Path(a.out), device=a.device, masks=a.masks)


def _cmd_estimate(a) -> int:
    from one2any_ros.apps.estimate_files import estimate_from_files

    res = estimate_from_files(a)
    print(json.dumps(res, indent=2))
    return 0


def _cmd_node(a, rest: list[str]) -> int:
    from one2any_ros.ros.node import main as node_main

    return node_main(["one2any_node", *rest]) or 0


def _backend_args(sp, default="auto"):
    sp.add_argument("--backend", default=default, choices=BACKENDS, help="pose backend (auto: one2any if a checkpoint loads, else classic)")
    sp.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    sp.add_argument("--checkpoint", default=None, help="model checkpoint (.safetensors); default: the bundled one")


def _add_demo(sub) -> None:
    sp = sub.add_parser("demo", help="the bundled sample through a real ROS graph: player -> node -> client; errors, rates, overlays")
    _backend_args(sp)
    sp.add_argument("--out", default="outputs/demo")
    sp.add_argument("--no-ros", action="store_true", help="run the library directly instead of the ROS graph")
    sp.add_argument("--objects", type=int, default=1, choices=range(1, 5), metavar="N",
                    help="1 (default): the bundled sample; 2-4: that many held-out objects in one rendered scene with a "
                         "label image, one reference each, all tracked by one node")
    sp.add_argument("--masks", default="reference", choices=("reference", "every"),
                    help="the bundled sample's masks: the reference frame's only (default: the node tracks without one, "
                         "as a workcell runs it), or every frame's")


def _add_estimate(sub) -> None:
    sp = sub.add_parser("estimate", help="pose of one query from one reference (image files)")
    _backend_args(sp)
    sp.add_argument("--ref", nargs=3, metavar=("RGB", "DEPTH", "MASK"), required=True)
    sp.add_argument("--query", nargs=3, metavar=("RGB", "DEPTH", "MASK"), required=True)
    sp.add_argument("--intrinsics", required=True, help="JSON file with K (3x3 or 9 row-wise) or fx, fy, cx, cy")
    sp.add_argument("--depth-scale", type=float, default=0.001, help="metres per depth unit of 16-bit PNGs (default 0.001 = mm)")
    sp.add_argument("--ref-pose", default=None, help="optional JSON with the object's 4x4 pose in the reference camera (metres)")
    sp.add_argument("--overlay", default=None, help="write a PNG overlay of the estimate here")


def _add_render(sub) -> None:
    sp = sub.add_parser("render", help="render a BOP-format dataset of procedural objects")
    sp.add_argument("--out", required=True)
    sp.add_argument("--objects", default="test", choices=("train", "val", "test"))
    sp.add_argument("--scenes", type=int, default=20)
    sp.add_argument("--frames", type=int, default=8, help="images per scene, the reference included")
    sp.add_argument("--max-rotation", type=float, default=120.0, help="rotation differences to frame 0 spread over [0, DEG]")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--family", default=None, choices=FAMILIES,
                    help="only objects of this family (texture_only: symmetric shapes with face-differing textures)")
    sp.add_argument("--sequences", action="store_true",
                    help="tracking sequences instead (one2any eval --sequence): two objects per scene moving slowly "
                         "then fast, an occluder passing, one object leaving and coming back; --frames images each")


def _add_training(sub) -> None:
    """train, train-scorer and promote."""
    sp = sub.add_parser("train", help="train the One2Any model")
    sp.add_argument("--config", default="config/train_default.yaml")
    sp.add_argument("--resume", action="store_true")
    sp.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    sp.add_argument("--out", "--out-dir", dest="out", default=None, help="run directory (default: the config's out_dir)")
    sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value, e.g. --set train.max_minutes=10 (YAML value syntax)")

    sp = sub.add_parser("train-scorer", help="train the learned hypothesis scorer on the learned backend's own pools")
    sp.add_argument("--config", default="config/scorer_default.yaml")
    sp.add_argument("--out", default=None, help="run directory (default: from the config)")
    sp.add_argument("--resume", action="store_true")
    sp.add_argument("--export", action="store_true", help="bundle as model/default_scorer if it wins on the validation set")
    sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")

    from one2any_ros.training.promote import DEFAULT_DATASET, DEFAULT_RUN_CHECKPOINT  # plain constants: no torch

    sp = sub.add_parser("promote", help="bundle a trained checkpoint as the default model only if it beats classic on "
                                        "validation objects (overall, 60-90 and 90-120 deg)")
    sp.add_argument("--checkpoint", default=DEFAULT_RUN_CHECKPOINT, help="the trained checkpoint to judge")
    sp.add_argument("--dataset", default=DEFAULT_DATASET, help="validation BOP dataset (rendered when missing)")
    sp.add_argument("--out", default="outputs/promote", help="reports and decision.json")
    sp.add_argument("--max-queries", type=int, default=None)
    sp.add_argument("--export", action="store_true", help="bundle the checkpoint as one2any_ros/core/model/default if it wins")


def _add_eval(sub) -> None:
    sp = sub.add_parser("eval", help="one-reference evaluation on a BOP-format dataset")
    _backend_args(sp)
    sp.add_argument("--dataset", required=True, help="BOP dataset root (models/, split folders)")
    sp.add_argument("--split", default="test")
    sp.add_argument("--out", required=True)
    sp.add_argument("--max-queries", type=int, default=None)
    sp.add_argument("--sequence", action="store_true",
                    help="tracking over each scene's images in frame order, beside one-shot on the same frames")
    sp.add_argument("--masks", default="reference", choices=("reference", "every"),
                    help="with --sequence: a mask with the reference only (the node's default), or with every image")
    sp.add_argument("--query-masks", default="clean", choices=QUERY_MASKS,
                    help="each query's mask_visib as it is, or perturbed as an instance segmenter's (a few pixels in "
                         "or out, jagged, small holes, sometimes a leak; the same masks every run); the reference "
                         "keeps its clean mask")


def _add_bench(sub) -> None:
    """``bench`` (the library, per stage) and ``bench --ros`` (the node): this is the benchmark's only parser."""
    sp = sub.add_parser("bench", help="latency per stage on the bundled sample (640x480)")
    _backend_args(sp)
    sp.add_argument("--out", default="outputs/bench")
    sp.add_argument("--repeats", type=int, default=2)
    sp.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    sp.add_argument("--ros", action="store_true", help="soak/overload benchmark of the ROS node")
    sp.add_argument("--duration", type=float, default=60.0,
                    help="with --ros: seconds per phase (the camera at 30 Hz, then at 4x the node's processing rate)")
    sp.add_argument("--objects", type=int, default=None, choices=range(1, 9), metavar="N",
                    help="with --ros: instead of the soak, N objects on one labelled stream (a rendered scene, one "
                         "reference each): per-frame cost, poses/s per object and latency at 30 Hz for --duration s "
                         "(without it: one object, the bundled sample)")
    sp.add_argument("--masks", default="every", choices=("every", "reference"),
                    help="with --ros --objects: the label image with every frame, or with the reference frame only "
                         "(the node tracks without masks, as a workcell runs it)")
    sp.add_argument("--size", default=(640, 480), type=_size, metavar="WxH",
                    help="with --ros --objects: the rendered camera's size (a RealSense's colour stream: 1280x720)")
    sp.add_argument("--max-image-width", type=int, default=None, metavar="PX",
                    help="with --ros --objects: the node's max_image_width (default: its own, 640; 0 = full "
                         "resolution)")


def _size(text: str) -> tuple[int, int]:
    """(width, height) of "WxH" (``bench --size``)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected WIDTHxHEIGHT, e.g. 1280x720") from None
    if not (64 <= w <= 8192 and 48 <= h <= 8192):
        raise argparse.ArgumentTypeError(f"{text!r}: width 64..8192 and height 48..8192")
    return w, h


def build_parser() -> argparse.ArgumentParser:
    """The ``one2any`` command's parser: one helper per subcommand (or group of them)."""
    p = argparse.ArgumentParser(prog="one2any", description="One-reference 6D object pose estimation (One2Any) for ROS 2.")
    sub = p.add_subparsers(dest="cmd", required=True)
    for add in (_add_demo, _add_estimate, _add_render, _add_training, _add_eval, _add_bench):
        add(sub)
    sub.add_parser("node", help="run the ROS 2 node (pass --ros-args ... after it)", add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "node":
        return _cmd_node(None, argv[1:])
    a = build_parser().parse_args(argv)
    handlers = {"render": _cmd_render, "eval": _cmd_eval, "bench": _cmd_bench, "train": _cmd_train,
                "train-scorer": _cmd_train_scorer, "promote": _cmd_promote, "demo": _cmd_demo, "estimate": _cmd_estimate}
    from one2any_ros.core.errors import One2AnyError

    try:
        return handlers[a.cmd](a)
    except One2AnyError as e:  # bad input, files, checkpoints: a clear line, not a traceback
        print(f"one2any {a.cmd}: error ({e.reason}): {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
