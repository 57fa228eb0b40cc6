"""Measuring what docs/benchmarks.md needs (tools/make_benchmarks_doc.py): each ``ensure_*`` runs the command that
produces one docs/data/*.json report when it is missing or named in --refresh, through the ``one2any`` command
(``python -m one2any_ros``), and copies the result into docs/data/."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "docs" / "data"
IMG = ROOT / "docs" / "img"
PY = sys.executable
CLI = [PY, "-m", "one2any_ros"]  # the one2any command, with its one parser
EVAL_BACKENDS = ("classic", "icp", "one2any")  # one2any only when a checkpoint loads
BENCH_BACKENDS = ("classic", "one2any")
SCENES = 40
TAG = f"test{SCENES}"
DEFAULT_DATASET = ROOT / "outputs" / "datasets" / TAG
OBJECTS_COUNTS = (1, 2, 4)
OBJECTS_BACKEND = "classic"  # the backend every install has, on CPU: what several objects cost where it matters most
OBJECTS_DURATION_S = 25.0  # seconds at 30 Hz per N: the three runs fit in ~3 minutes
REFRESHABLE = ("all", "eval", "bench", "ros", "ros_objects", "faults", "diagnose")


@dataclass
class Plan:
    """What to measure: the --refresh names, --no-run, the eval dataset, the soak's phase length, the checkpoint of
    the one2any rows (None: the bundled one)."""

    refresh: list[str] = field(default_factory=list)
    no_run: bool = False
    dataset: str | None = None
    duration: float = 60.0
    checkpoint: str | None = None

    def wants(self, what: str) -> bool:
        return "all" in self.refresh or what in self.refresh

    def check_may_run(self, target: Path) -> None:
        if self.no_run:
            raise SystemExit(f"{target} is missing and --no-run was given")

    def checkpoint_args(self, backend: str) -> list[str]:
        return ["--checkpoint", self.checkpoint] if backend == "one2any" and self.checkpoint else []

    def checkpoint_loads(self) -> bool:
        """Whether the checkpoint of the one2any rows loads (they are measured only then)."""
        from one2any_ros.core.errors import CheckpointError
        from one2any_ros.core.model.checkpoint import load_checkpoint

        try:
            load_checkpoint(self.checkpoint)
        except CheckpointError:
            return False
        return True


def _run(cmd: list[str], env: dict | None = None) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True, env={**os.environ, **(env or {})})


def _dataset(plan: Plan) -> Path:
    if plan.dataset:
        return Path(plan.dataset)
    for b in EVAL_BACKENDS:  # the dataset the committed reports were measured on, when it is still there
        p = DATA / f"report_{b}_{TAG}.json"
        if p.exists():
            ds = Path(json.loads(p.read_text()).get("dataset", ""))
            if (ds / "test").is_dir():
                return ds
    return DEFAULT_DATASET


def _skip(target: Path, what: str, plan: Plan, backend: str | None = None) -> bool:
    """True when ``target`` need not be measured: it exists and is not refreshed, or its one2any checkpoint does not
    load (then the stale file goes). Otherwise checks that measuring is allowed."""
    if target.exists() and not plan.wants(what):
        return True
    if backend == "one2any" and not plan.checkpoint_loads():
        target.unlink(missing_ok=True)
        return True
    plan.check_may_run(target)
    return False


def ensure_eval(backend: str, plan: Plan) -> None:
    target = DATA / f"report_{backend}_{TAG}.json"
    if _skip(target, "eval", plan, backend):
        return
    ds = _dataset(plan)
    if not (ds / "test").is_dir():
        _run([*CLI, "render", "--out", str(ds), "--objects", "test", "--scenes", str(SCENES), "--frames", "8",
              "--max-rotation", "120"])
    out = ROOT / "outputs" / "eval" / f"{backend}_{TAG}"
    _run([*CLI, "eval", "--dataset", str(ds), "--backend", backend, "--out", str(out), *plan.checkpoint_args(backend)])
    shutil.copy(out / "report.json", target)


def ensure_bench(backend: str, plan: Plan) -> None:
    target = DATA / f"bench_{backend}.json"
    if _skip(target, "bench", plan, backend):
        return
    _run([*CLI, "bench", "--backend", backend, "--out", "outputs/bench", *plan.checkpoint_args(backend)])
    shutil.copy(ROOT / "outputs" / "bench" / f"bench_{backend}.json", target)


def ensure_ros(plan: Plan) -> None:
    target = DATA / "ros_bench.json"
    if _skip(target, "ros", plan):
        return
    backend = "one2any" if plan.checkpoint_loads() else "classic"  # what the node's default (auto) runs
    _run([*CLI, "bench", "--ros", "--backend", backend, "--duration", str(plan.duration), "--out", "outputs/bench"])
    shutil.copy(ROOT / "outputs" / "bench" / "ros_bench.json", target)


def ensure_ros_objects(plan: Plan) -> None:
    target = DATA / "ros_bench_objects.json"
    if _skip(target, "ros_objects", plan):
        return
    runs = []
    for n in OBJECTS_COUNTS:
        _run([*CLI, "bench", "--ros", "--objects", str(n), "--backend", OBJECTS_BACKEND,
              "--duration", str(OBJECTS_DURATION_S), "--out", "outputs/bench"])
        runs.append(json.loads((ROOT / "outputs" / "bench" / f"ros_bench_objects_{n}.json").read_text()))
    target.write_text(json.dumps({"runs": runs}, indent=2))


def ensure_faults(plan: Plan) -> None:
    target = DATA / "faults.json"
    if _skip(target, "faults", plan):
        return
    out = ROOT / "outputs" / "bench" / "faults.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    _run([PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test/test_faults.py"],
         env={"ONE2ANY_FAULTS_JSON": str(out)})
    shutil.copy(out, target)


def ensure_diagnose(plan: Plan) -> None:
    target = DATA / "diagnose_val30.json"
    if _skip(target, "diagnose", plan):
        return
    from one2any_ros.training import promote

    ds = ROOT / promote.DEFAULT_DATASET
    if not (ds / "test").is_dir():
        v = promote.VAL_RENDER
        _run([*CLI, "render", "--out", str(ds), "--objects", v["objects"], "--scenes", str(v["scenes"]),
              "--frames", str(v["frames"]), "--max-rotation", str(v["max_rotation_deg"]), "--seed", str(v["seed"])])
    out = ROOT / "outputs" / "diagnose"
    _run([PY, "tools/diagnose_pool.py", "--dataset", str(ds), "--out", str(out),
          *(["--checkpoint", plan.checkpoint] if plan.checkpoint else [])])
    shutil.copy(out / "diagnose.json", target)
    shutil.copy(out / "diagnose.png", IMG / "diagnose_val30.png")


def measure_missing(plan: Plan) -> None:
    """Every input of the page: measured when missing or refreshed (fails under --no-run instead)."""
    DATA.mkdir(parents=True, exist_ok=True)
    IMG.mkdir(parents=True, exist_ok=True)
    for b in EVAL_BACKENDS:
        ensure_eval(b, plan)
    for b in BENCH_BACKENDS:
        ensure_bench(b, plan)
    ensure_ros(plan)
    ensure_ros_objects(plan)
    ensure_faults(plan)
    ensure_diagnose(plan)
