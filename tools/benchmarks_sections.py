"""The library's sections of docs/benchmarks.md (tools/make_benchmarks_doc.py): accuracy, where the misses come
from, latency per stage, appearance, the global search's speed, and Open3D. Each renders one docs/data/*.json
report into its block of tools/benchmarks_template.md."""
from __future__ import annotations

import json
import os
from pathlib import Path

from benchmarks_text import f, render, table

from one2any_ros.apps.bench import stage_rows
from one2any_ros.core.protocol import BIN_NAMES as BINS, STAGES

ROOT = Path(__file__).resolve().parent.parent
SCENES = 40  # the held-out test set: `one2any render --objects test --scenes 40`


def accuracy_section(reports: dict[str, dict]) -> str:
    """report_<backend>_test40.json: ADD(-S)@0.1d and the other metrics by backend and rotation bin."""
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
    return render("accuracy", n_queries=any_r["n_queries"], n_objects=any_r.get("n_objects", "?"),
                  n_scenes=any_r.get("n_scenes", "?"), scenes=SCENES,
                  protocol=any_r.get("protocol", "one-reference protocol"),
                  metric=any_r.get("metric_notes", "").split(";")[0].split(":", 1)[-1].strip(),
                  table=table(head, rows), note=one2any_note(reports))


def one2any_note(reports: dict[str, dict]) -> str:
    """Which model the one2any row measured (bundled or a run in training), or why there is no such row."""
    if "one2any" not in reports:
        return render("one2any_none") + " "
    m = reports["one2any"].get("model") or {}
    ck = str(m.get("checkpoint") or "")
    tr = m.get("training") or {}
    values = {"roc": "with" if m.get("roc_to_verifier") else "without",
              "trained": render("one2any_trained", samples=tr.get("samples", "?"), steps=tr.get("steps", "?"),
                                hours=f((tr.get("elapsed_s") or 0) / 3600, 1),
                                max_rotation=m.get("max_rotation_deg_trained", "?"))}
    extra = []
    if (m.get("query_rolls") or 1) > 1:
        extra.append(render("one2any_rolls", rolls=m.get("query_rolls")))
    if m.get("scorer"):
        extra.append(render("one2any_scorer", scorer=os.path.relpath(m["scorer"], ROOT), weight=m.get("scorer_weight")))
    if ck.endswith("one2any_ros/core/model/default.safetensors"):
        return "".join(s + " " for s in [render("one2any_bundled", **values), *extra])
    values["checkpoint"] = os.path.relpath(ck, ROOT) if ck else "?"
    return "".join(s + " " for s in [render("one2any_not_bundled", **values), *extra]) \
        + render("one2any_not_bundled_end") + "\n"


def diagnose_section(d: dict) -> str:
    """diagnose_val30.json (tools/diagnose_pool.py): per bin, where a right pose was (chosen, pooled, refined...)."""
    rows = [[b, str(r["n"])] + [f"{r[k]} ({f(r[k] / max(r['n'], 1))})" for k in
                                 ("chosen", "in_pool", "refined", "learned", "grid")] for b, r in d["bins"].items()]
    m = d.get("model") or {}
    return render("diagnose", dataset=Path(d["dataset"]).name, backend=d["backend"], rolls=m.get("query_rolls", "-"),
                  roc="on" if m.get("roc_to_verifier") else "off", roc_part=_roc_accuracy_part(d),
                  table=table(["bin", "queries", "chosen", "in the pool", "refined", "learned", "grid"], rows))


def _roc_accuracy_part(d: dict) -> str:
    rows = [[b, str(r["roc_within_band"]["n"]), f(r["roc_within_band"]["covisible"]), f(r["roc_within_band"]["on_covisible"]),
             f(r["roc_within_band"]["all"]), f(r["roc_within_band"]["confident"])]
            for b, r in d["bins"].items() if "roc_within_band" in r]
    if not rows:
        return ""
    return render("diagnose_roc", table=table(["bin", "queries", "co-visible", "ROC right (co-visible)", "ROC right (all)",
                                               "ROC right (20 % most confident)"], rows))


def stages_section(b: dict) -> str:
    """bench_<backend>.json (one2any bench): median and p90 ms per stage, global search and tracking."""
    rows = []
    for s, g, t in stage_rows(b):
        tn = f" ({t['n']} of {b['tracking']['total']['n']})" if t and t["n"] < b["tracking"]["total"]["n"] else ""
        rows.append([s, f(g and g["median_ms"], 1), f(g and g["p90_ms"], 1), f(t and t["median_ms"], 1) + tn,
                     f(t and t["p90_ms"], 1)])
    rows.append(["**fps** (1 / median total)", f(b["global"]["fps"], 1), "", f(b["tracking"]["fps"], 1), ""])
    m = b.get("model") or {}
    ck = m.get("checkpoint")
    model = render("stages_model", checkpoint=os.path.relpath(ck, ROOT), device=m.get("device", "?")) if ck else ""
    mach = b.get("machine") or {}
    measured = (f", at commit `{str(mach.get('git_commit'))[:7]}` ({mach.get('timestamp', '')}, load average "
                f"{f(mach.get('load_avg_1m'), 1)} at the start)") if mach.get("git_commit") else ""
    return render("stages", backend=b["backend"], model=model, width=b["image_size"][0], height=b["image_size"][1],
                  measured=measured,
                  encode_ms=f(b["reference_encode_ms"], 0), n_queries=b["n_queries"], repeats=b["repeats"],
                  table=table(["stage", "global median", "global p90", "tracking median", "tracking p90"], rows))


def appearance_section(a: dict) -> str:
    """appearance.json: what the texture term, the honest confidence and the twins do."""
    val = [[v["set"], v["variant"], str(v["n_texture_only"]), f(v["texture_only"]), f(v["texture_only_90_120"]),
            str(v["symmetry_errors"]), f(v["confidence_auroc"]), f(v["extra_ms_median"], 0, " ms")] for v in a["validation"]]
    test = [[f"seed {t['seed']}", t["backend"], t["variant"], f(t["overall"])] + [f(t["bins"][k]) for k in BINS[:4]]
            + [f(t["texture_only"]), str(t["symmetry_errors"]), f(t["confidence_auroc"]), f(t["precision_at_recall_0_8"])]
            for t in a["test"]]
    return render("appearance", on=", ".join(f"`{k}` {v}" for k, v in a["on"].items()),
                  validation=table(["set", "variant", "n", "ADD@0.1d", "90-120", "symmetry errors", "conf. AUROC (all)",
                                    "extra"], val),
                  test=table(["seed", "backend", "appearance", "ADD(-S)@0.1d"] + list(BINS[:4])
                             + ["texture-only", "symmetry errors", "conf. AUROC", "precision@80% recall"], test),
                  texture_only=texture_only_split(a) if a.get("texture_only_split") else "")


def texture_only_split(a: dict) -> str:
    """The texture-only evaluation: its own split, shipped settings, and where the misses come from."""
    t = a["texture_only_split"]
    rows = [[r["set"], r["backend"], r["variant"], str(r["n"]), f(r["overall"])] + [f(r["bins"][k]) for k in BINS[:4]]
            + [f(r["symmetry_error_share"]), f(r["confidence_auroc"]), f(r["precision_at_recall_0_8"])] for r in t["rows"]]
    d = t["diagnosis"]
    return render("texture_only", render=t["render"], on=d["on"], absent=f(d["absent"]),
                  picked_wrong=f(d["picked_wrong"]), tried=d["tried"],
                  table=table(["set", "backend", "settings", "n", "ADD@0.1d"] + list(BINS[:4])
                              + ["symmetry errors (share)", "conf. AUROC", "precision@80% recall"], rows))


def _pooled_recall(d: dict, name: str, bins: tuple[str, ...] | None = None) -> str:
    """ADD(-S)@0.1d of variant ``name`` pooled over every dataset of the report (over ``bins`` only, if given)."""
    hits = total = 0.0
    for acc in d["accuracy"].values():
        parts = [acc[name]["by_rotation_bin"][b] for b in bins if b in acc[name]["by_rotation_bin"]] if bins \
            else [acc[name]]
        hits += sum(p["n"] * p["add_s_01d_recall"] for p in parts)
        total += sum(p["n"] for p in parts)
    return f"{hits / total:.3f}" if total else "-"


def _speed_tables(d: dict) -> tuple[str, str, str]:
    """(stage table, accuracy table, pooled summary) of one compare_search_settings.py report."""
    t = d["timing"]["median_ms"]
    names = list(t)
    stages = [st for st in STAGES if any(st in t[n] for n in names) and st != "total"]
    stages += [st for st in t[names[0]] if st not in stages and st != "total"] + ["total"]
    rows = [[st] + [f(t[n].get(st), 1) for n in names] for st in stages]
    acc_rows = []
    for ds, acc in d["accuracy"].items():
        for n in names:
            r = acc[n]
            acc_rows.append([f"`{ds}`", n, str(r["n"]), f(r["add_s_01d_recall"], 3)]
                            + [f(r["by_rotation_bin"].get(b, {}).get("add_s_01d_recall"), 3) for b in BINS[:4]])
    pooled = "; ".join(f"*{n}* {_pooled_recall(d, n)} overall, {_pooled_recall(d, n, ('60-90', '90-120'))} at 60-120 deg"
                       for n in names)
    return (table(["stage"] + names, rows),
            table(["dataset", "variant", "queries", "ADD(-S)@0.1d"] + [f"{b} deg" for b in BINS[:4]], acc_rows), pooled)


def search_speed_section(d: dict, classic: dict | None) -> str:
    """global_search_speed*.json (tools/compare_search_settings.py): before/after per stage and accuracy."""
    stages, acc, pooled = _speed_tables(d)
    m = d["machine"]
    part_classic = ""
    if classic:
        c_stages, c_acc, c_pooled = _speed_tables(classic)
        part_classic = render("search_speed_classic", load=f(classic["machine"]["load_avg_1m"], 1), stages=c_stages,
                              accuracy=c_acc, pooled=c_pooled)
    return render("search_speed", backend=d["timing"]["backend"], frames=d["timing"]["frames"],
                  repeats=d["timing"]["repeats"], cpu_count=m["cpu_count"], load=f(m["load_avg_1m"], 1),
                  commit=m["git_commit"], variants="; ".join(f"*{n}*: `{json.dumps(v)}`" for n, v in d["variants"].items()),
                  stages=stages, accuracy=acc, pooled=pooled, classic=part_classic)


def open3d_section(d: dict) -> str:
    """open3d_comparison.json (tools/compare_open3d.py): the global search against Open3D, same pairs."""
    rows = []
    for key, r in d["methods"].items():
        fam = r.get("by_family", {})
        rows.append([d["labels"].get(key, key), f(r["median_ms"], 0), f(r["p90_ms"], 0), f(r["add_s_01d_recall"])]
                    + [f(r["by_rotation_bin"].get(b, {}).get("add_s_01d_recall")) for b in BINS[:4]]
                    + [f(fam.get("shape_asymmetric", {}).get("add_s_01d_recall")),
                       f(fam.get("texture_only", {}).get("add_s_01d_recall")),
                       f"{f(r['median_rot_err_deg'], 1)} deg / {f(r['median_trans_err_mm'], 1)} mm"])
    m = d["machine"]
    load = m.get("load_average_start") or [float("nan")]
    head = ["method", "median ms", "p90 ms", "ADD(-S)@0.1d"] + [f"{b} deg" for b in BINS[:4]] + [
        "shape-asymmetric", "texture-only", "median rot / trans err"]
    return render("open3d", command=d["command"], n=next(iter(d["methods"].values()))["n_pairs"],
                  n_objects=d["n_objects"], cpu_count=m["cpu_count"], load=f(load[0], 1),
                  commit=str(m.get("git_commit", "?"))[:7], table=table(head, rows), ratios=open3d_ratios(d))


def open3d_ratios(d: dict) -> str:
    """Each project row's median time per pair as a multiple of each Open3D row's (issue 28 asks <= 2.5x)."""
    ms = {d["labels"].get(k, k): r["median_ms"] for k, r in d["methods"].items()}
    ours = {k: v for k, v in ms.items() if k.startswith("project")}
    peers = {k: v for k, v in ms.items() if not k.startswith("project")}
    parts = [f"{o} {v / pv:.1f}x {p}" for o, v in ours.items() for p, pv in peers.items() if v and pv]
    return "Median time per pair as a multiple of Open3D's: " + "; ".join(parts) + "." if parts else ""


def validation_section(d: dict) -> str:
    """validation_suite.json (tools/validation_suite.py summary and compare --masks of one run): the shipped
    defaults on the validation suite, per part and rotation bin, and what segmenter-like masks cost."""
    s = d["summary"]
    head = ["part", "queries", "ADD(-S)@0.1d"] + [f"{b} deg" for b in BINS] + ["confident wrong", "AUROC"]
    rows = [[name, str(p["n"]), f(p["recall"], 3)] + [f(p["bins"].get(b, {}).get("recall"), 3) for b in BINS]
            + [str(p["confident_wrong"]), f(p["auroc"])] for name, p in s["parts"].items()]
    a = s["all"]
    rows.append(["**all**", str(a["n"]), f"**{f(a['recall'], 3)}**"]
                + [f(a["bins"].get(b, {}).get("recall"), 3) for b in BINS] + [str(a["confident_wrong"]), f(a["auroc"])])
    seg = d["segmenter"]
    groups = [("all", seg["all"])] + [(f"{b} deg", seg["bins"][b]) for b in BINS if b in seg["bins"]]
    seg_rows = [[name, str(g["n"]), f(g["A"], 3), f(g["B"], 3),
                 f"{g['B_minus_A']:+.3f} [{g['ci95'][0]:+.3f}, {g['ci95'][1]:+.3f}]"] for name, g in groups]
    return render("validation", version=s["suite_version"], backend=s["backend"], commit=d["commit"],
                  n=a["n"], table=table(head, rows),
                  seg_table=table(["", "queries", "clean", "segmenter-like", "difference [95 %]"], seg_rows),
                  seg_wrong_a=seg["all"]["confident_wrong_A"], seg_wrong_b=seg["all"]["confident_wrong_B"])
