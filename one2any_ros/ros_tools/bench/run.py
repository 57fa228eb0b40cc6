"""The entry of ``one2any bench --ros``: the soak, or with ``--objects N`` the several-objects run; prints the
summary and where the report went. The command's flags are parsed by the CLI (apps/cli.py), the only parser."""
from __future__ import annotations

from pathlib import Path

from one2any_ros.ros_tools.bench.objects import objects_report_name, run_objects_bench
from one2any_ros.ros_tools.bench.report import format_objects_report, format_report
from one2any_ros.ros_tools.bench.soak import run_ros_bench


def main(args) -> int:
    """Run what ``args`` (the CLI's namespace: backend, device, checkpoint, out, duration, objects, masks, size,
    max_image_width) asks for; 0 when the node was still alive at the end, else 1."""
    if getattr(args, "objects", None):
        masks = getattr(args, "masks", "every")
        size = tuple(getattr(args, "size", (640, 480)))
        report = run_objects_bench(args.objects, backend=args.backend, device=args.device, checkpoint=args.checkpoint,
                                   duration=float(args.duration), out_dir=Path(args.out), masks=masks, size=size,
                                   max_image_width=getattr(args, "max_image_width", None))
        print(format_objects_report(report))
        print(f"-> {Path(args.out) / objects_report_name(args.objects, masks, size)}")
        return 0 if report.get("node_alive") else 1
    report = run_ros_bench(backend=args.backend, device=args.device, checkpoint=args.checkpoint,
                           duration=float(getattr(args, "duration", 60.0)), out_dir=Path(args.out))
    print(format_report(report))
    print(f"-> {Path(args.out) / 'ros_bench.json'}")
    return 0 if report.get("node_alive") else 1
