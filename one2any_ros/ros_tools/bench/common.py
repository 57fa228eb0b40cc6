"""What every bench run shares: the names on the graph, what "correct" means, statistics, the machine's
description, and the node under test (started and stopped the same way by the soak and the objects run)."""
from __future__ import annotations

import os
import platform
import re
import subprocess
import time
from pathlib import Path

import numpy as np

FRAME_ID = "sample_{}"
NAMESPACE = "/bench"
PING_PONG = list(range(1, 10)) + list(range(8, 1, -1))  # sample frames 1..9..2
TARGET_P99_X_PROCESSING = 3.0
TARGET_MEMORY_GROWTH_MB = 50.0
TARGET_SERVICE_MS = 200.0
AFTER_RECAPTURE_S = 2.0  # "steady state" latency leaves out poses this soon after a re-capture (global search)
ROT_TOL_DEG, TRANS_TOL_MM = 5.0, 10.0  # what "correct" means for a pose under load (classic: ~1-3 deg here)


def stats(values: list[float]) -> dict:
    """n, median, p90, p99, max and mean of ``values`` (``{"n": 0}`` when empty)."""
    if not values:
        return {"n": 0}
    v = np.asarray(values, float)
    return {"n": int(v.size), "median": float(np.median(v)), "p90": float(np.percentile(v, 90)),
            "p99": float(np.percentile(v, 99)), "max": float(v.max()), "mean": float(v.mean())}


def frame_index(frame_id: str) -> int | None:
    """The sample frame a published frame showed, from its frame_id (``sample_<k>``)."""
    m = re.fullmatch(r"sample_(\d+)", frame_id)
    return int(m.group(1)) if m else None


def machine() -> dict:
    """The machine, the load and the commit a report was measured on."""
    import psutil

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), "") if Path("/proc/cpuinfo").exists() else ""
    return {"cpu_count": os.cpu_count(), "cpu": model or platform.processor() or platform.machine(),
            "load_avg_1m": os.getloadavg()[0], "memory_gb": psutil.virtual_memory().total / 2**30,
            "python": platform.python_version(), "git_commit": commit,
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def start_node(out_dir: Path, stem: str, *, backend: str, device: str, checkpoint: str | None, **extra):
    """The node under test with the package defaults, the backend asked for and ``extra`` parameters, its reference
    file and log (``<stem>_reference.zip``, ``<stem>_node.log``) fresh in ``out_dir``: (NodeProcess, its params)."""
    from one2any_ros.core.reference_store import ReferenceStore
    from one2any_ros.ros_tools.harness import NodeProcess

    ref_file = out_dir / f"{stem}_reference.zip"
    ReferenceStore(ref_file).clear()  # every object of an earlier run here, or the node would start with them
    params = {"backend": backend, "device": device, "reference_path": str(ref_file), **extra}
    if checkpoint:
        params["checkpoint"] = checkpoint
    node_log = out_dir / f"{stem}_node.log"
    node_log.unlink(missing_ok=True)
    return NodeProcess(namespace=NAMESPACE, params=params, log_path=node_log).start(), params


def stop_run(mem, client, node, report: dict) -> None:
    """A run's teardown, whatever happened: the memory sampler, the client, then the node (its exit code kept)."""
    if mem is not None:
        mem.stop()
    client.close()
    report["node_exit_code"] = node.stop()
