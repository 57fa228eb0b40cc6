#!/usr/bin/env python3
"""Regenerate docs/benchmarks.md and docs/img/*.png from the measurements kept in docs/data/*.json.

    .venv/bin/python tools/make_benchmarks_doc.py                       # from docs/data/; measures what is missing
    .venv/bin/python tools/make_benchmarks_doc.py --refresh ros faults  # measure those again first
    .venv/bin/python tools/make_benchmarks_doc.py --refresh all         # everything (~18 min on 2 cores)
    .venv/bin/python tools/make_benchmarks_doc.py --no-run              # never measure; fail if an input is missing

Inputs (all in docs/data/, committed so the page can be rebuilt from the repository alone), and what
produces each one when it is missing or named in --refresh:

- report_B_test40.json for B = classic, icp (and one2any when a checkpoint loads): `one2any eval --dataset DS
  --backend B --out outputs/eval/B_test40` on DS = `one2any render --out DS --objects test --scenes 40 --frames 8
  --max-rotation 120` (issue #4's held-out set)
- bench_B.json for B = classic (and one2any when a checkpoint loads): `one2any bench --backend B --out outputs/bench`
- ros_bench.json: `one2any bench --ros --backend B --duration 60 --out outputs/bench`, B = what `auto` runs (run here as
  `python -m one2any_ros.ros_tools.bench run ...`, the same code without the CLI)
- ros_bench_objects.json: `one2any bench --ros --objects N --backend classic --duration 25 --out outputs/bench` for
  N = 1, 2, 4 (`python -m one2any_ros.ros_tools.bench run --objects N ...`), the three reports in one file
- faults.json: `ONE2ANY_FAULTS_JSON=... pytest test/test_faults.py`
- global_search_speed.json, global_search_speed_classic.json: `tools/compare_search_settings.py --variant
  before='{"search": {"lookup_stages": 0, "icp_keep": 50}}' --variant after='{}' [--backend classic] --dataset outputs/datasets/val30
  outputs/datasets/val30s1 --out ...` (the validation sets as `one2any render --objects val --scenes 30 --frames 8
  --max-rotation 120 --seed 0|1` makes them; not measured by this script)
- open3d_comparison.json: `tools/compare_open3d.py` (Open3D optional; not measured by this script)
- diagnose_val30.json (+ docs/img/diagnose_val30.png): `tools/diagnose_pool.py --dataset outputs/datasets/val30` with
  the bundled model, on VALIDATION objects (rendered as `one2any_ros.training.promote` renders them when missing)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "docs" / "data"
IMG = ROOT / "docs" / "img"
DOC = ROOT / "docs" / "benchmarks.md"
PY = sys.executable
sys.path.insert(0, str(ROOT))
from one2any_ros.core.protocol import BIN_NAMES, STAGES  # noqa: E402
EVAL_BACKENDS = ("classic", "icp", "one2any")  # one2any only when a checkpoint loads
SCENES = 40
TAG = f"test{SCENES}"
BINS = BIN_NAMES
DEFAULT_DATASET = ROOT / "outputs" / "datasets" / TAG


# --- measuring what is missing ------------------------------------------------------------------------------

def _run(cmd: list[str], env: dict | None = None) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True, env={**os.environ, **(env or {})})


def _dataset(args) -> Path:
    if args.dataset:
        return Path(args.dataset)
    for b in EVAL_BACKENDS:  # the dataset the committed reports were measured on, when it is still there
        p = DATA / f"report_{b}_{TAG}.json"
        if p.exists():
            ds = Path(json.loads(p.read_text()).get("dataset", ""))
            if (ds / "test").is_dir():
                return ds
    return DEFAULT_DATASET


CHECKPOINT: str | None = None  # --checkpoint: the one2any rows from this file instead of the bundled one


def checkpoint_loads() -> bool:
    """Whether the checkpoint of the one2any rows loads (they are measured only then)."""
    from one2any_ros.core.errors import CheckpointError
    from one2any_ros.core.model.checkpoint import load_checkpoint

    try:
        load_checkpoint(CHECKPOINT)
    except CheckpointError:
        return False
    return True


def _checkpoint_args(backend: str) -> list[str]:
    return ["--checkpoint", CHECKPOINT] if backend == "one2any" and CHECKPOINT else []


def ensure_eval(backend: str, args) -> None:
    target = DATA / f"report_{backend}_{TAG}.json"
    if target.exists() and not args.wants("eval"):
        return
    if backend == "one2any" and not checkpoint_loads():
        target.unlink(missing_ok=True)
        return
    args.check_may_run(target)
    ds = _dataset(args)
    if not (ds / "test").is_dir():
        _run([PY, "-m", "one2any_ros.apps.cli", "render", "--out", str(ds), "--objects", "test", "--scenes", str(SCENES),
              "--frames", "8", "--max-rotation", "120"])
    out = ROOT / "outputs" / "eval" / f"{backend}_{TAG}"
    _run([PY, "-m", "one2any_ros.apps.cli", "eval", "--dataset", str(ds), "--backend", backend, "--out", str(out),
          *_checkpoint_args(backend)])
    shutil.copy(out / "report.json", target)


def ensure_bench(backend: str, args) -> None:
    target = DATA / f"bench_{backend}.json"
    if target.exists() and not args.wants("bench"):
        return
    if backend == "one2any" and not checkpoint_loads():
        target.unlink(missing_ok=True)
        return
    args.check_may_run(target)
    _run([PY, "-m", "one2any_ros.apps.cli", "bench", "--backend", backend, "--out", "outputs/bench", *_checkpoint_args(backend)])
    shutil.copy(ROOT / "outputs" / "bench" / f"bench_{backend}.json", target)


def ensure_ros(args) -> None:
    target = DATA / "ros_bench.json"
    if target.exists() and not args.wants("ros"):
        return
    args.check_may_run(target)
    backend = "one2any" if checkpoint_loads() else "classic"  # what the node's default (auto) runs
    _run([PY, "-m", "one2any_ros.ros_tools.bench", "run", "--backend", backend, "--duration", str(args.duration),
          "--out", "outputs/bench"])
    shutil.copy(ROOT / "outputs" / "bench" / "ros_bench.json", target)


OBJECTS_COUNTS = (1, 2, 4)
OBJECTS_BACKEND = "classic"  # the backend every install has, on CPU: what several objects cost where it matters most
OBJECTS_DURATION_S = 25.0  # seconds at 30 Hz per N: the three runs fit in ~3 minutes


def ensure_ros_objects(args) -> None:
    target = DATA / "ros_bench_objects.json"
    if target.exists() and not args.wants("ros_objects"):
        return
    args.check_may_run(target)
    runs = []
    for n in OBJECTS_COUNTS:
        _run([PY, "-m", "one2any_ros.ros_tools.bench", "run", "--objects", str(n), "--backend", OBJECTS_BACKEND,
              "--duration", str(OBJECTS_DURATION_S), "--out", "outputs/bench"])
        runs.append(json.loads((ROOT / "outputs" / "bench" / f"ros_bench_objects_{n}.json").read_text()))
    target.write_text(json.dumps({"runs": runs}, indent=2))


def ensure_faults(args) -> None:
    target = DATA / "faults.json"
    if target.exists() and not args.wants("faults"):
        return
    args.check_may_run(target)
    out = ROOT / "outputs" / "bench" / "faults.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    _run([PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test/test_faults.py"],
         env={"ONE2ANY_FAULTS_JSON": str(out)})
    shutil.copy(out, target)


def ensure_diagnose(args) -> None:
    target = DATA / "diagnose_val30.json"
    if target.exists() and not args.wants("diagnose"):
        return
    args.check_may_run(target)
    from one2any_ros.training import promote

    ds = ROOT / promote.DEFAULT_DATASET
    if not (ds / "test").is_dir():
        v = promote.VAL_RENDER
        _run([PY, "-m", "one2any_ros.apps.cli", "render", "--out", str(ds), "--objects", v["objects"], "--scenes",
              str(v["scenes"]), "--frames", str(v["frames"]), "--max-rotation", str(v["max_rotation_deg"]),
              "--seed", str(v["seed"])])
    out = ROOT / "outputs" / "diagnose"
    _run([PY, "tools/diagnose_pool.py", "--dataset", str(ds), "--out", str(out),
          *(["--checkpoint", CHECKPOINT] if CHECKPOINT else [])])
    shutil.copy(out / "diagnose.json", target)
    shutil.copy(out / "diagnose.png", IMG / "diagnose_val30.png")


def diagnose_section(d: dict) -> str:
    rows = [[b, str(r["n"])] + [f"{r[k]} ({f(r[k] / max(r['n'], 1))})" for k in
                                 ("chosen", "in_pool", "refined", "learned", "grid")] for b, r in d["bins"].items()]
    m = d.get("model") or {}
    return f"""## Where the misses come from (validation objects)

`tools/diagnose_pool.py` on the validation set (`{Path(d['dataset']).name}`, objects never trained on and not in the
test split), backend `{d['backend']}` (query rolls {m.get('query_rolls', '-')}, ROC term
{'on' if m.get('roc_to_verifier') else 'off'}): per bin, how many queries have a right pose (ADD(-S) < 0.1 d)
chosen, anywhere in the hypothesis pool, among the refined candidates, among the network's RANSAC hypotheses and
among the classic grid's. Where the pool holds a right pose that was not chosen, the verifier is what failed;
where it holds none, the search.

{table(["bin", "queries", "chosen", "in the pool", "refined", "learned", "grid"], rows)}

![search vs verifier](img/diagnose_val30.png)
{_roc_accuracy_part(d)}"""


def _roc_accuracy_part(d: dict) -> str:
    rows = [[b, str(r["roc_within_band"]["n"]), f(r["roc_within_band"]["covisible"]), f(r["roc_within_band"]["on_covisible"]),
             f(r["roc_within_band"]["all"]), f(r["roc_within_band"]["confident"])]
            for b, r in d["bins"].items() if "roc_within_band" in r]
    if not rows:
        return ""
    return f"""
The network itself, on the asymmetric objects' queries: the share of object pixels the reference camera also saw
(co-visible: the most a network that matches reference pixels can get right), and the share of pixels whose
predicted ROC lies within the verifier's ROC band of the truth - of the co-visible ones, of all, and of the 20 %
it is most confident about. Where these are low, the ROC term and the learned hypotheses have little to give.

{table(["bin", "queries", "co-visible", "ROC right (co-visible)", "ROC right (all)", "ROC right (20 % most confident)"], rows)}
"""


# --- formatting ---------------------------------------------------------------------------------------------

def f(x, nd=2, unit="") -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "-"
    return f"{x:.{nd}f}{unit}"


def table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
                     + ["| " + " | ".join(r) + " |" for r in rows])


def accuracy_section(reports: dict[str, dict]) -> str:
    any_r = next(iter(reports.values()))
    rows = []
    for b, r in reports.items():
        bins = r["by_rotation_bin"]
        rows.append([f"`{b}`", f(r["add_s_01d_recall"])] + [
            f"{f(bins[k]['add_s_01d_recall'])} ({bins[k]['n']})" for k in BINS if bins.get(k, {}).get("n")] + [
            f(r["add_s_auc"]), f(r["recall_5deg_5cm"]), f(r["median_rot_err_deg"], 1, " deg"),
            f(r["median_trans_err_mm"], 1, " mm"), str(r["failures"]["count"]), f(r.get("median_latency_ms"), 0, " ms")])
    bins_used = [k for k in BINS if any_r["by_rotation_bin"].get(k, {}).get("n")]
    if "one2any" not in reports:
        rows.append(["`one2any`", "no checkpoint"] + ["-"] * (len(bins_used) + 6))
    head = ["backend", "ADD(-S)@0.1d"] + [f"{k} deg (n)" for k in bins_used] + [
        "ADD-S AUC", "5deg5cm", "median rot err", "median trans err", "failures", "median time/query"]
    return f"""## Accuracy: held-out objects, one reference, by rotation from the reference

{any_r['n_queries']} queries: {any_r.get('n_objects', '?')} procedural test-split objects (never trained on, never
tuned on), {any_r.get('n_scenes', '?')} scenes, rendered with `one2any render --objects test --scenes {SCENES} --frames 8
--max-rotation 120` and scored with `one2any eval` ({any_r.get('protocol', 'one-reference protocol')}).
ADD(-S)@0.1d: {any_r.get('metric_notes', '').split(';')[0].split(':', 1)[-1].strip()}. Bins: rotation between the
query and the reference; a failed estimate counts as a miss.

{table(head, rows)}

{one2any_note(reports)}`icp` is the ablation (one ICP
from the centroid-aligned start): it holds up only for small rotations, which is what the global search
and the verifier add.

![ADD(-S)@0.1d by rotation bin](img/accuracy_by_rotation.png)
"""


def one2any_note(reports: dict[str, dict]) -> str:
    if "one2any" in reports:
        m = reports["one2any"].get("model") or {}
        ck = str(m.get("checkpoint") or "")
        tr = m.get("training") or {}
        trained = (f"{tr.get('samples', '?')} training pairs ({tr.get('steps', '?')} steps, "
                   f"{f((tr.get('elapsed_s') or 0) / 3600, 1)} h), rotations up to {m.get('max_rotation_deg_trained', '?')} deg")
        roc = "with" if m.get("roc_to_verifier") else "without"
        rolls = m.get("query_rolls") or 1
        rolls_txt = (f"The query crop went through the network in {rolls} rolls (quarter turns in the image plane, "
                     "each roll's RANSAC hypotheses pooled). ") if rolls > 1 else ""
        if m.get("scorer"):
            rolls_txt += (f"Its learned hypothesis scorer (`{os.path.relpath(m['scorer'], ROOT)}`) added "
                          f"{m.get('scorer_weight')} x its logit to the verifier score of the refined candidates. ")
        if ck.endswith("one2any_ros/core/model/default.safetensors"):
            return (f"`one2any` used the bundled checkpoint (`one2any_ros/core/model/default.json`: {trained}), {roc} the "
                    f"ROC term in the verifier. {rolls_txt}")
        return (f"`one2any` used the checkpoint `{os.path.relpath(ck, ROOT) if ck else '?'}` ({trained}), {roc} the ROC "
                f"term in the verifier. {rolls_txt}It is NOT bundled: a run still in training, measured to show where it stands; "
                "`auto` falls back to `classic`.\n")
    return ("The learned backend (`one2any`) has no bundled checkpoint: `auto` falls back to `classic` and says so\n"
            "(in the log and in /diagnostics), so there is no `one2any` row to report. ")


STAGE_NAMES = STAGES


def stages_section(b: dict) -> str:
    rows = []
    for s in STAGE_NAMES:
        g, t = b["global"].get(s), b["tracking"].get(s)
        if g or t:
            tn = f" ({t['n']} of {b['tracking']['total']['n']})" if t and t["n"] < b["tracking"]["total"]["n"] else ""
            rows.append([s, f(g and g["median_ms"], 1), f(g and g["p90_ms"], 1), f(t and t["median_ms"], 1) + tn,
                         f(t and t["p90_ms"], 1)])
    rows.append(["**fps** (1 / median total)", f(b["global"]["fps"], 1), "", f(b["tracking"]["fps"], 1), ""])
    m = b.get("model") or {}
    ck = m.get("checkpoint")
    model = "" if not ck else (f" with the checkpoint `{os.path.relpath(ck, ROOT)}` (network on {m.get('device', '?')}; "
                               "*network*, *ransac* and *grid* are the parts of *hypotheses*)")
    return f"""## Latency per stage on CPU (library, no ROS): `{b['backend']}`

`one2any bench --backend {b['backend']}`{model}: the bundled sample ({b['image_size'][0]}x{b['image_size'][1]}, one unseen
object turning 0-60 deg), reference frame 0 (encoded once: {f(b['reference_encode_ms'], 0)} ms), {b['n_queries']} queries x
{b['repeats']} repeats; *global* = the full search on every frame, *tracking* = refine the last pose and search
only when verification fails (a stage that ran on only some tracking frames shows on how many).
Milliseconds on the machine described above.

{table(['stage', 'global median', 'global p90', 'tracking median', 'tracking p90'], rows)}

![median time per stage](img/latency_stages.png)
"""


def appearance_section(a: dict) -> str:
    """docs/data/appearance.json: what the texture term, the honest confidence and the twins do (issue 16)."""
    val = [[v["set"], v["variant"], str(v["n_texture_only"]), f(v["texture_only"]), f(v["texture_only_90_120"]),
            str(v["symmetry_errors"]), f(v["confidence_auroc"]), f(v["extra_ms_median"], 0, " ms")] for v in a["validation"]]
    test = [[f"seed {t['seed']}", t["backend"], t["variant"], f(t["overall"])] + [f(t["bins"][k]) for k in BINS[:4]]
            + [f(t["texture_only"]), str(t["symmetry_errors"]), f(t["confidence_auroc"]), f(t["precision_at_recall_0_8"])]
            for t in a["test"]]
    on = ", ".join(f"`{k}` {v}" for k, v in a["on"].items())
    return f"""## Appearance: objects whose only asymmetry is their texture

Geometry finds a box, a cylinder or a bottle only up to its twins (flips, turns about its axis); the texture
decides (one2any_ros/core/appearance.py): a lighting-robust zero-mean normalised cross-correlation of the reference's
pixels with the query pixels they land on under each final candidate (inside the mask, depth-checked, shrunk
when few pixels are co-visible), added among the candidates geometry cannot tell apart; and a confidence that
falls when a rival pose more than 15 deg away scores nearly as well. Shipped: {on}. Geometric twins of the best
candidates (`twin_top_k`) add most of the texture-only gain but ~0.5-1 s per global search on 2 CPU cores: off.
`symmetry errors`: misses right by ADD-S but wrong by ADD. Cost of the shipped settings, A/B in one process on the
bundled sample (2 CPU cores): global search +7 % (classic) and +8 % (one2any), the appearance stage ~6 ms on a quiet
machine (21 ms on a loaded one); tracking does not run it.

Validation objects (`tools/probe_appearance.py`, classic, texture-only family; settings chosen on the tuning set):

{table(["set", "variant", "n", "ADD@0.1d", "90-120", "symmetry errors", "conf. AUROC (all)", "extra"], val)}

Held-out test objects (280 queries per seed), shipped settings off and on:

{table(["seed", "backend", "appearance", "ADD(-S)@0.1d"] + list(BINS[:4]) + ["texture-only", "symmetry errors", "conf. AUROC",
        "precision@80% recall"], test)}
{texture_only_split(a) if a.get("texture_only_split") else ""}"""


def texture_only_split(a: dict) -> str:
    """The texture-only evaluation (issue 16, item 1): its own split, shipped settings, and where the misses come from."""
    t = a["texture_only_split"]
    rows = [[r["set"], r["backend"], r["variant"], str(r["n"]), f(r["overall"])] + [f(r["bins"][k]) for k in BINS[:4]]
            + [f(r["symmetry_error_share"]), f(r["confidence_auroc"]), f(r["precision_at_recall_0_8"])] for r in t["rows"]]
    d = t["diagnosis"]
    return f"""
Texture-only split (`{t['render']}`; the test objects are never trained or tuned on; validation:
the same with `--objects val`):

{table(["set", "backend", "settings", "n", "ADD@0.1d"] + list(BINS[:4]) + ["symmetry errors (share)", "conf. AUROC",
        "precision@80% recall"], rows)}

Where the misses come from ({d['on']}): the right pose is not among the final candidates for
{f(d['absent'])} of queries (mostly ellipsoids, whose body axes the visible part does not show, and
cylinders at 90-120 deg), and is there but loses for {f(d['picked_wrong'])} (its texture
correlation is often no higher than a twin's - a near twin 30 deg off, or a flip whose texture happens to correlate - and the verifier prefers the twin). Tried on validation objects:
{d['tried']}.
"""


def _speed_tables(d: dict) -> tuple[str, str, str]:
    """(stage table, accuracy table, pooled summary) of one compare_search_settings.py report."""
    t = d["timing"]["median_ms"]
    names = list(t)
    stages = [st for st in STAGE_NAMES if any(st in t[n] for n in names) and st != "total"]
    stages += [st for st in t[names[0]] if st not in stages and st != "total"] + ["total"]
    rows = [[st] + [f(t[n].get(st), 1) for n in names] for st in stages]
    acc_rows = []
    for ds, acc in d["accuracy"].items():
        for n in names:
            r = acc[n]
            acc_rows.append([f"`{ds}`", n, str(r["n"]), f(r["add_s_01d_recall"], 3)]
                            + [f(r["by_rotation_bin"].get(b, {}).get("add_s_01d_recall"), 3) for b in BINS[:4]])

    def pooled_recall(name: str, bins: tuple[str, ...] | None = None) -> str:
        hits = total = 0.0
        for acc in d["accuracy"].values():
            parts = [acc[name]["by_rotation_bin"][b] for b in bins if b in acc[name]["by_rotation_bin"]] if bins \
                else [acc[name]]
            hits += sum(p["n"] * p["add_s_01d_recall"] for p in parts)
            total += sum(p["n"] for p in parts)
        return f"{hits / total:.3f}" if total else "-"
    pooled = "; ".join(f"*{n}* {pooled_recall(n)} overall, {pooled_recall(n, ('60-90', '90-120'))} at 60-120 deg"
                       for n in names)
    return (table(["stage"] + names, rows),
            table(["dataset", "variant", "queries", "ADD(-S)@0.1d"] + [f"{b} deg" for b in BINS[:4]], acc_rows), pooled)


def search_speed_section(d: dict, classic: dict | None) -> str:
    """docs/data/global_search_speed*.json (tools/compare_search_settings.py): before/after per stage and accuracy."""
    stages, acc, pooled = _speed_tables(d)
    variants = "; ".join(f"*{n}*: `{json.dumps(v)}`" for n, v in d["variants"].items())
    m = d["machine"]
    part_classic = ""
    if classic:
        c_stages, c_acc, c_pooled = _speed_tables(classic)
        part_classic = f"""
The same with `--backend classic` (the training-free fallback; load average {f(classic['machine']['load_avg_1m'], 1)} at the start):

{c_stages}

{c_acc}

Pooled over both sets: {c_pooled}.
"""
    return f"""## The global search, faster (tools/compare_search_settings.py)

`tools/compare_search_settings.py` with the `{d['timing']['backend']}` backend (the default): the bench's sample
({d['timing']['frames']} frames x {d['timing']['repeats']} passes, every frame a global search, the variants interleaved frame by
frame), median ms per stage on {m['cpu_count']} cores (load average {f(m['load_avg_1m'], 1)} at the start, the training run
paused; commit `{m['git_commit']}`); then `one2any eval`'s protocol on two validation sets (objects never trained on
and not in the test split, `--max-rotation 120`, seeds 0 and 1) with each variant. Variants over today's defaults:
{variants}. *grid* is the classic multi-start ICP (part of *hypotheses*), *refine* the guarded ICP of the best
candidates.

{stages}

{acc}

Pooled over both sets (420 queries): {pooled}.
{part_classic}
What changed: the coarsest ICP stage of the grid (inlier band 0.2 d, all 100 starts) finds its neighbours by table
lookup (`nearest.VoxelNearest`: a voxel grid over the query cloud and one distance transform per frame, answers
within about one cell, 0.03 d) instead of the 6-D coloured KD-tree; all 100 starts then run the 0.1 d stage on the
coloured KD-tree and 30 of them (were 50, pruned a stage earlier) the 0.05 d stage. The two validation sets differ by about 0.04 from
each other: that is the noise of one 210-query set. Measured and not taken (tools/compare_search_settings.py on the
same sets): the lookup in the 0.1 d stage too (-0.05 ADD(-S), with a finer cell as well: that stage needs the
colour's pull); 100 reference points instead of 150 (the grid ~35 ms faster, but `classic` lost 0.07 on seed 1);
refining 3 candidates with 5 iterations per band instead of 5 with 8
(the refinement halved, -0.02 on both sets); pruning the starts to 30 (50) straight after the lookup stage, by its
inliers (the grid 254 -> 161 (193) ms, but 0.786 / 0.757 -> 0.733 / 0.681 (0.752 / 0.729)); the learned backend
skipping the grid when the verifier already trusts one of its RANSAC hypotheses at confidence >= 0.6 / 0.75 / 0.9
(0.724 / 0.705, 0.757 / 0.738, 0.786 / 0.748: raw RANSAC hypotheses look better to the verifier than they are, and
at 0.9 the grid is skipped too rarely to save more than ~10% of the evaluation's time); ending an ICP stage early
once no point moves more than 3% of its band (tracking's refinement 12.3 -> 9.5 ms, but the median rotation error
0.39 -> 0.42 deg on the multi-object scene: point-to-point ICP keeps creeping rather than settling).
"""


def open3d_section(d: dict) -> str:
    """docs/data/open3d_comparison.json (tools/compare_open3d.py): the global search against Open3D, same pairs."""
    rows = []
    for key, r in d["methods"].items():
        fam = r.get("by_family", {})
        rows.append([d["labels"].get(key, key), f(r["median_ms"], 0), f(r["p90_ms"], 0), f(r["add_s_01d_recall"])]
                    + [f(r["by_rotation_bin"].get(b, {}).get("add_s_01d_recall")) for b in BINS[:4]]
                    + [f(fam.get("shape_asymmetric", {}).get("add_s_01d_recall")),
                       f(fam.get("texture_only", {}).get("add_s_01d_recall")),
                       f"{f(r['median_rot_err_deg'], 1)} deg / {f(r['median_trans_err_mm'], 1)} mm"])
    m = d["machine"]
    n = next(iter(d["methods"].values()))["n_pairs"]
    load = m.get("load_average_start") or [float("nan")]
    return f"""## The global search against Open3D (tools/compare_open3d.py, one run, the same pairs)

`{d['command']}` (Open3D is optional: `pip install open3d`) on {n} validation pairs ({d['n_objects']} objects never
trained on), the pairs of `one2any eval` (one reference per object, its ground-truth pose given). Open3D: the
registration tutorial's FPFH + RANSAC (mutual filter) + point-to-plane ICP, the voxel 1/20 of the reference's measured
diameter, both clouds from the project's back-projection. Time per pair around the estimate alone (the
once-per-reference work excluded for both), the methods alternating pair by pair, {m['cpu_count']} cores (load average
{f(load[0], 1)} at the start), commit `{str(m.get('git_commit', '?'))[:7]}`.

{table(['method', 'median ms', 'p90 ms', 'ADD(-S)@0.1d'] + [f'{b} deg' for b in BINS[:4]] + ['shape-asymmetric', 'texture-only', 'median rot / trans err'], rows)}

Open3D is several times faster per pair and about a third as accurate here. Its RANSAC stops after tens of iterations
once the best fitness makes its confidence reached, and giving it more time barely helps: with one partial view against
another, a wrong pose often overlaps more than the true one (the project's verifier also counts free-space violations
and colour), and geometry alone cannot tell the texture-only objects' twins apart.
"""


def ros_section(r: dict) -> str:
    cal = r["calibration"]
    proc = cal["processing_ms"]["median"]
    m = r["machine"]
    rows = []
    for p in r["phases"]:
        lat, st, nl = p["latency_ms"], p["latency_ms_steady"], p["node_latency_ms"]
        rows.append([p["name"], f(p["camera"].get("rate_hz"), 1), f(p["poses_per_s"], 1),
                     f"{f(lat.get('median'), 0)} / {f(lat.get('p90'), 0)} / {f(lat.get('p99'), 0)} / {f(lat.get('max'), 0)}",
                     f(st.get("p99"), 0), f"{f(nl.get('median'), 0)} ({p.get('slow_in_node', '-')})",
                     f"{p['frames_sent']} / {p['dropped_frames']} / {p['frames_without_pose_otherwise']}",
                     f"{p['accuracy']['within_tolerance']} / {p['accuracy']['checked']}",
                     f"{f(p.get('node_cpu_percent'), 0)} % / {f(p.get('machine_cpu_percent'), 0)} %"])
    svc_rows = []
    for p in r["phases"]:
        for k in ("get_parameters", "set_parameters", "clear_reference", "set_reference", "control_get_parameters",
                  "control_set_parameters"):
            s = p["services_ms"].get(k)
            if s is None:
                continue
            name = f"control node: `{k[8:]}`" if k.startswith("control_") else f"`{k}`"
            svc_rows.append([p["name"], name, str(s.get("n", 0)), f(s.get("median"), 0), f(s.get("p90"), 0),
                             f(s.get("p99"), 0), f(s.get("max"), 0), str(s.get("failed", 0))])
    mem_rows = [["node up, reference set", f(r["memory_mb_ready"], 0)],
                ["start of the soak (after calibration)", f(r["memory_mb_soak_start"], 0)]]
    for p in r["phases"]:
        mm = p["memory_mb"]
        mem_rows.append([f"phase {p['name']}: start / end / peak", f"{f(mm['start'], 0)} / {f(mm['end'], 0)} / {f(mm['peak'], 0)}"])
    mem_rows.append(["end of the soak", f(r["memory_mb_soak_end"], 0)])
    mem_rows.append(["growth: median of the last 10 s - median of the first 10 s", f"{r['memory_growth_mb']:+.1f}"])
    mem_rows.append(["growth: end - start (single samples)", f"{r['memory_growth_mb_instants']:+.1f}"])
    ms = r.get("memory_series") or []
    half = [(t, v) for t, v in ms if ms and t >= ms[-1][0] / 2]
    if len(half) > 2:
        import numpy as np

        slope = 60 * np.polyfit([t for t, _ in half], [v for _, v in half], 1)[0]
        mem_rows.append(["fitted slope over the second half of the soak (after the warm-up), MB/min", f"{slope:+.1f}"])
    t = r["targets"]
    bound = 3 * proc
    worst_p99 = max(p["latency_ms"].get("p99", 0) for p in r["phases"])
    worst_svc = max(max(p["services_ms"][k].get("max", 0) for k in ("get_parameters", "set_parameters", "clear_reference"))
                    for p in r["phases"])
    verdict = table(["target (issue #6)", "measured", ""], [
        ["p99 stamp-to-pose latency < 3x median processing time", f"worst phase p99 {f(worst_p99, 0)} ms vs {f(bound, 0)} ms "
         f"(steady state: " + ", ".join(f"{p['name']} {f(p['latency_ms_steady'].get('p99'), 0)} ms" for p in r["phases"]) + ")",
         "PASS" if t["p99_latency_under_3x_processing"] else "FAIL"],
        ["memory growth < 50 MB over the soak", f"{r['memory_growth_mb']:+.1f} MB (medians of the first and last 10 s; "
         f"{r['memory_growth_mb_instants']:+.1f} MB between single samples)", "PASS" if t["memory_growth_under_50mb"] else "FAIL"],
        ["`~/clear_reference` and parameter calls < 200 ms throughout", f"worst {f(worst_svc, 0)} ms",
         "PASS" if t["clear_reference_and_parameters_under_200ms"] else "FAIL"],
    ])
    return f"""## The ROS node under load: soak and overload

`one2any bench --ros --backend {r.get('backend')} --duration {r['duration_s']:.0f}`: the node ({r.get('backend')} on
{r.get('device')}), a synthetic camera process and a client process on one machine ({m['cpu_count']} cores,
{m['cpu']}, load average {f(m['load_avg_1m'], 1)} when it started{': other jobs shared the cores' if m['load_avg_1m'] > 1 else ''}), over
DDS with the shipped Fast DDS profile. The camera publishes the bundled sample's 640x480 rgb8 + 16UC1 +
mono8 + CameraInfo with fresh stamps; the object turns back and forth at {f(r['object_speed_deg_s'], 0)} deg/s (6.7 deg
steps held {r['hold_s']} s), so a node that keeps up tracks. Processing time measured first with frames
arriving one at a time (2 Hz): median **{f(proc, 0)} ms** (p90 {f(cal['processing_ms']['p90'], 0)} ms), i.e.
{f(cal['processing_rate_hz'], 1)} frames/s. Then {r['duration_s']:.0f} s at 30 Hz and {r['duration_s']:.0f} s at 4x that rate. Meanwhile a
client does what a cell controller does: every second a `get_parameters` and a `set_parameters`, every
10 s a re-capture (`~/clear_reference`, then at once `~/set_reference` on the latest frame; the first frame
after it runs the global search).

Latency = header stamp -> PoseStamped received by the client (median / p90 / p99 / max, ms); *steady p99*
leaves out the 2 s after each re-capture; *node* = the node's own `latency_ms` (frame complete ->
published), with the number of poses that took more than 3x the processing time inside the node (the
global search re-detecting after tracking failed, or a frame starved of CPU). Frames: sent / dropped by the node's latest-wins mailbox (`dropped_frames`) / otherwise
without a pose (lost in transport or sync, stale, no reference during a re-capture, failed gates).
Correct = within 5 deg / 10 mm of the ground truth of the reference in effect. CPU: the node's process
(100 % = one core) / the whole machine.

{table(['phase', 'input Hz', 'poses/s', 'latency ms', 'steady p99', 'node median (n > 3x proc.)', 'frames sent / dropped / other', 'correct poses', 'CPU node / machine'], rows)}

Service round trips during the phases (ms), measured by the client process. The *control node* is a bare
rclpy node (one parameter, the same SingleThreadedExecutor, no work) in a process of its own, called the
same way in the same cycle: what the machine and the client add to a round trip, apart from the one2any node.

{table(['phase', 'call', 'n', 'median', 'p90', 'p99', 'max', 'failed'], svc_rows)}

Resident memory of the node (MB):

{table(['when', 'RSS MB'], mem_rows)}

{verdict}
{gil_note(r)}
![latency and memory during the soak](img/ros_soak.png)
"""


def objects_section(d: dict) -> str:
    """docs/data/ros_bench_objects.json: what N objects on one stream cost against one (issue 17)."""
    runs = sorted(d["runs"], key=lambda r: r["n_objects"])
    base = next((r["summary"]["per_frame_ms"] for r in runs if r["n_objects"] == 1), None)  # one object's cost
    rows = []
    for r in runs:
        s, n = r["summary"], r["n_objects"]
        cost = s["per_frame_ms"]
        rows.append([str(n), ", ".join(o["name"] for o in r["objects"]), f(cost, 0, " ms"),
                     f(cost / base if base else None, 2, "x"), f(cost / (n * base) if base else None, 2),
                     f(s["poses_per_s_per_object"], 1), f"{f(s['latency_ms_median'], 0)} / {f(s['latency_ms_p99'], 0)}",
                     f"{s['within_tolerance']}/{s['poses']}", f(r["phases"][1]["node_cpu_percent"], 0, " %"),
                     f(r["machine"]["load_avg_1m"], 1)])
    top = runs[-1]
    m = top["machine"]
    diam = [o["diameter_mm"] / 10 for o in top["objects"]]
    sizes = f"{min(diam):.0f}-{max(diam):.0f}"
    return f"""## Several objects (bench --ros --objects N)

`one2any bench --ros --objects N --backend {top.get('backend')} --duration {top['duration_s']:.0f}` for N =
{', '.join(str(r['n_objects']) for r in runs)}: the node ({top.get('backend')} on {top.get('device')}) and a camera process
on one machine ({m['cpu_count']} cores; load average when each run started in the last column: above
{m['cpu_count'] // 2} means other jobs shared the cores). The camera plays a rendered 640x480 scene
(`data.multi_scene.multi_object_scene`): the places of four held-out test objects (shape-asymmetric, diameters {sizes} cm) in
one row in front of a textured wall, the first N filled, each turning back and forth (7 deg steps); rgb8,
16UC1, a mono16 label image (object k = label k) and CameraInfo. The node holds N references (`mask_label` k,
set on frame 0 with the ground-truth pose). *Per-frame cost*: frames one at a time (1 Hz, one step per frame),
the node's `latency_ms` of a frame's last object, i.e. frame complete -> all N poses published (median). Then
{top['duration_s']:.0f} s with the camera at 30 Hz: poses per second per object and latency (header stamp -> that
object's `~/estimate` received by the client; median / p99 over every object's poses); correct = within 5 deg /
10 mm of the ground truth; CPU = the node's process (100 % = one core).

{table(['N', 'objects', 'per-frame cost', 'vs N = 1', 'vs N x (N = 1)', 'poses/s per object (30 Hz in)',
        'latency median / p99 ms', 'correct poses', 'CPU node', 'load avg'], rows)}

{_objects_verdict(runs, base)}
"""


def _objects_verdict(runs: list[dict], base: float | None) -> str:
    """The ratio of N objects' per-frame cost to N x one object's, in words, for every N > 1 measured."""
    more = [r for r in runs if r["n_objects"] > 1]
    if not base or not more:
        return ""
    parts = [f"{r['n_objects']} objects {f(r['summary']['per_frame_ms'], 0)} ms = "
             f"{f(r['summary']['per_frame_ms'] / base, 2)}x one object's {f(base, 0)} ms, "
             f"**{f(r['summary']['per_frame_ms'] / (r['n_objects'] * base), 2)} of {r['n_objects']} x one object's**"
             for r in more]
    ratio = more[-1]["summary"]["per_frame_ms"] / (more[-1]["n_objects"] * base)
    if ratio < 0.9:
        how = ("less than N separate objects would cost: the objects share the frame's decoding (the images, the "
               "label image, the free-space depth), and they are estimated at the same time, some by the node's worker "
               "and the rest by a helper process (`object_processes`: one per core beyond the first; "
               "`core/object_processes.py`; threads gained nothing, the GIL). Each object's own work (tracking one "
               "object at 640x480: ~9.5 ms, its points, colour, trees, refinement and verification) remains its own, "
               "so on 2 cores the objects' part of the frame can at best halve. Frames one at a time (1 Hz) are the "
               "helper's worst case: it wakes from a second's sleep, and the scheduler first runs it on the node's "
               "core. In process (`MultiObjectEstimator` on these frames, no ROS), 2 objects cost 12.1 ms against "
               "one object's 9.1 ms back to back (0.66 of twice), but 20.7 against 11.9 ms with a 1 s pause before "
               "each frame (0.87); pinning the helper and the caller to different cores gave 14.5 ms there, but "
               "pinning from inside the node (the helper away from the worker's current core) made 4 objects slower "
               "(32 vs 26 ms): not taken. At 30 Hz, the second object adds ~4 ms to the latency (median, table)")
    elif ratio <= 1.1:
        how = ("about N times one object's: the work the objects share per frame (decoding the images and the label "
               "image, the free-space depth; `multi_object.py`) is small beside each object's own search and "
               "refinement, so the cost grows linearly with the number of objects")
    else:
        how = "more than N times one object's"
    return (f"Per-frame cost: {'; '.join(parts)}. So N objects cost {how}. The one-object run is the first object "
            "alone; the others differ in shape and pixel count, so these ratios also carry how much more or less they "
            "cost than the first.")


def gil_note(r: dict) -> str:
    """A remark, generated only when the data show it: the node's process bound at one core."""
    bound = [p for p in r["phases"] if (p.get("node_cpu_percent") or 0) >= 90]
    if not bound:
        return ""
    parts = ", ".join(f"{f(p['node_cpu_percent'], 0)} % in phase {p['name']} (machine {f(p.get('machine_cpu_percent'), 0)} %)"
                      for p in bound)
    return f"""
**The node's process was bound at one core**: {parts}. One Python process runs Python code on one core
at a time (the GIL), and here the estimation thread shares it with the executor thread and the
four input callbacks, which take in every 1.8 MB frame whether or not it is estimated; when the input
rate is high, the estimation thread gets what is left, so the pose rate and the tail latencies swing
from run to run. Where the machine had spare cores (machine CPU well under 100 %), the limit was this,
not the hardware.
"""


def faults_section(fl: dict) -> str:
    rows = []
    k = fl.get("kill9_restart")
    if k:
        rows.append(["`kill -9` mid-stream (10 Hz camera), restart", "reference restored from the file; first pose within 2 s of "
                     "the first frame after the new node's services answer",
                     f"services answered {f(k['restart_to_services_up_s'], 1)} s after the kill; first pose "
                     f"{f(k['first_pose_after_first_frame_s'], 2)} s after the first frame ({f(k['kill_to_first_pose_s'], 1)} s after "
                     f"the kill); {k['poses_after_restart']} poses after it, max error {f(k['max_rot_err_deg'], 1)} deg / "
                     f"{f(k['max_trans_err_mm'], 1)} mm"])
    for how, d in (fl.get("damaged_reference") or {}).items():
        rows.append([f"{how.replace('_', ' ')} reference file on start", "clear error in the log and /diagnostics; runs without a reference",
                     "`" + _short(d["last_failure"]) + "`; node alive, frames answered with `no_reference`"])
    c = fl.get("corrupt_checkpoint")
    if c:
        rows.append(["corrupt checkpoint (`.safetensors` + `.json` of garbage), backend `auto`",
                     "clear error; falls back to classic and says so in /diagnostics",
                     f"backend `{c['backend']}`; status: `{_short(c['diagnostics_message'])}`; a switch to `one2any` "
                     f"is refused: `{_short(c['switch_to_one2any_rejected'])}`"])
    s = fl.get("camera_stops")
    if s:
        rows.append(["the camera stops publishing", "input_age_ms grows; no old pose published as new",
                     f"input_age_ms {f(s['input_age_ms_while_streaming'], 0)} while streaming, then "
                     + ", ".join(f(a, 0) for a in s["input_age_ms_after_stop"])
                     + f" (one per second); {s['poses_after_stop']} poses after the stop; status `{s['status']}`"])
    w = fl.get("wire_bad_input")
    if w:
        rows.append(["bad input over the wire (beyond test_ros_node.py)", "no pose, a reason in /diagnostics",
                     "; ".join(f"{kind}: `{v.split(':')[0]}`" for kind, v in w.items())])
    g = fl.get("garbage_burst")
    if g:
        rows.append([f"{g['frames']} random garbage frames, then a good one", "node keeps running; good frame gets a right pose",
                     f"alive; reasons seen: {', '.join('`%s`' % x for x in g['reasons_seen'])}; no `internal_error`"])
    meas = fl.get("measured", {})
    return f"""## Faults (test/test_faults.py, the node as its own process)

Measured {meas.get('timestamp', '')} ({meas.get('cpu_count', '?')} cores, load average {f(meas.get('load_avg_1m'), 1)}). The tests
assert with ~5x margins; these are the figures of the run that produced docs/data/faults.json.

{table(['fault', 'expected', 'measured'], rows)}
"""


def _short(s: str, n: int = 160) -> str:
    s = s.replace("|", "/").replace("`", "'")
    for tmp in ("/tmp/pytest-of-", "/tmp/"):
        if tmp in s:  # temporary paths differ from run to run
            import re

            s = re.sub(r"/tmp/\S*/", "<tmp>/", s)
    return s if len(s) <= n else s[: n - 3] + "..."


# --- plots ----------------------------------------------------------------------------------------------------

def plot_accuracy(reports: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = [s for s in STAGE_NAMES if s != "total"]
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


# --- main -----------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--refresh", nargs="*", default=[],
                   choices=("all", "eval", "bench", "ros", "ros_objects", "faults", "diagnose"),
                   help="measure these again even when docs/data/ has them")
    p.add_argument("--no-run", action="store_true", help="never measure: fail when an input is missing")
    p.add_argument("--dataset", default=None,
                   help=f"BOP dataset for eval (default: the one in the reports, else {DEFAULT_DATASET})")
    p.add_argument("--duration", type=float, default=60.0, help="seconds per phase of the ROS benchmark")
    p.add_argument("--checkpoint", default=None,
                   help="measure the one2any rows with this checkpoint (e.g. the CPU run checkpoints/train_cpu/checkpoint"
                        ".safetensors) instead of the bundled one")
    args = p.parse_args(argv)
    global CHECKPOINT
    CHECKPOINT = args.checkpoint
    args.wants = lambda what: "all" in args.refresh or what in args.refresh

    def check_may_run(target: Path) -> None:
        if args.no_run:
            raise SystemExit(f"{target} is missing and --no-run was given")
    args.check_may_run = check_may_run

    DATA.mkdir(parents=True, exist_ok=True)
    IMG.mkdir(parents=True, exist_ok=True)
    for b in EVAL_BACKENDS:
        ensure_eval(b, args)
    for b in ("classic", "one2any"):
        ensure_bench(b, args)
    ensure_ros(args)
    ensure_ros_objects(args)
    ensure_faults(args)
    ensure_diagnose(args)

    reports = {b: json.loads((DATA / f"report_{b}_{TAG}.json").read_text()) for b in EVAL_BACKENDS
               if (DATA / f"report_{b}_{TAG}.json").exists()}
    benches = {b: json.loads((DATA / f"bench_{b}.json").read_text()) for b in ("classic", "one2any")
               if (DATA / f"bench_{b}.json").exists()}
    bench = benches["classic"]
    ros = json.loads((DATA / "ros_bench.json").read_text())
    ros_objects = json.loads((DATA / "ros_bench_objects.json").read_text())
    faults = json.loads((DATA / "faults.json").read_text())
    diagnose = json.loads((DATA / "diagnose_val30.json").read_text())
    appearance = json.loads((DATA / "appearance.json").read_text()) if (DATA / "appearance.json").exists() else None
    speed = DATA / "global_search_speed.json"
    speed_classic = DATA / "global_search_speed_classic.json"
    open3d = DATA / "open3d_comparison.json"
    plot_accuracy(reports, IMG / "accuracy_by_rotation.png")
    plot_stages(bench, IMG / "latency_stages.png")
    plot_ros(ros, IMG / "ros_soak.png")
    m = ros["machine"]
    doc = f"""# Benchmarks

Generated by `.venv/bin/python tools/make_benchmarks_doc.py` from the measurements in `docs/data/`
(see the script's docstring for what produces each file; `--refresh ros faults` measures those again).
Do not edit by hand. Machine of the ROS and latency runs: {m['cpu_count']} CPU cores ({m['cpu']}),
{f(m['memory_gb'], 0)} GB, Python {m['python']}, no GPU; ROS 2 Kilted wheels in a venv; measured at commit
`{m.get('git_commit') or '?'}` ({m.get('timestamp', '')}).

{accuracy_section(reports)}
{diagnose_section(diagnose)}
{appearance_section(appearance) if appearance else ""}
{"".join(stages_section(b) for b in benches.values())}
{search_speed_section(json.loads(speed.read_text()), json.loads(speed_classic.read_text()) if speed_classic.exists() else None) if speed.exists() else ""}
{open3d_section(json.loads(open3d.read_text())) if open3d.exists() else ""}
{ros_section(ros)}
{objects_section(ros_objects)}
{faults_section(faults)}
## Bad input, generated (test/test_property.py)

Property-based tests (hypothesis) feed `camera.decode_depth`, `make_view`, `make_reference`,
`PoseEstimator.set_reference` / `estimate`, `load_reference` (random bytes and mutated files) and the
node's message conversion (`conversions.view_from_messages`) random shapes, dtypes, NaN/inf/zero/negative
depth, masks of 0-3 pixels, extreme or singular intrinsics and malformed Image/CameraInfo fields; each
must give a result or a typed `One2AnyError`, never another exception. Inputs that once broke something
are pinned with `@example`.
"""
    DOC.write_text(doc)
    print(f"wrote {DOC.relative_to(ROOT)} and {', '.join(str(p.relative_to(ROOT)) for p in sorted(IMG.glob('*.png')))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
