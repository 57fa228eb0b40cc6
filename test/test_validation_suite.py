"""The validation suite's definition and its paired comparison (tools/validation_suite.py, docs/validation.md):
>= 1,000 queries over every family with a 120-180 deg bin, and a comparison that pairs queries, finds a loss beyond
its interval and counts confident wrong poses. The full suite is not rendered here (minutes): one tiny part is."""
import json
from pathlib import Path

import numpy as np
import pytest
from tool_modules import load_tool

vs = load_tool("validation_suite")


def test_the_suite_has_a_thousand_queries_over_every_family_and_the_wide_bins():
    parts = vs.parts()
    queries = sum(p["scenes"] * (p["frames"] - 1) for p in parts)
    assert queries >= 1000, queries
    assert {p["family"] for p in parts} == {"shape_asymmetric", "texture_only", "symmetric"}
    assert len({p["seed"] for p in parts}) >= 2
    assert all(p["max_rotation_deg"] >= 180 and p["occluder_prob"] > 0 for p in parts)


def _write_run(root: Path, hits: list[bool], bins: list[str], conf: list[float]) -> None:
    part = root / "shape_asymmetric_s101"
    part.mkdir(parents=True)
    lines = [json.dumps({"scene_id": 1, "im_id": i, "obj_id": 1, "hit": h, "bin": b, "confidence": c})
             for i, (h, b, c) in enumerate(zip(hits, bins, conf))]
    (part / "queries.jsonl").write_text("\n".join(lines) + "\n")


def test_compare_pairs_queries_and_refuses_a_bin_that_loses(tmp_path: Path):
    n = 200
    bins = ["0-30"] * n + ["90-120"] * n
    a_hits = [True] * n + [True] * n
    b_hits = [True] * n + [i % 4 != 0 for i in range(n)]  # B loses a quarter of 90-120
    _write_run(tmp_path / "A", a_hits, bins, [0.9] * (2 * n))
    _write_run(tmp_path / "B", b_hits, bins, [0.9] * (2 * n))
    out = vs.compare(tmp_path / "A", tmp_path / "B")
    assert out["n"] == 2 * n
    assert out["bins"]["0-30"]["B_minus_A"] == 0.0 and not out["bins"]["0-30"]["loses_beyond_interval"]
    wide = out["bins"]["90-120"]
    assert wide["B_minus_A"] == pytest.approx(-0.25) and wide["loses_beyond_interval"] and wide["mcnemar_p"] < 1e-6
    assert out["confident_wrong_A"] == 0 and out["confident_wrong_B"] == n // 4
    assert out["take"] is False


def test_compare_over_several_draws_averages_each_query_and_counts_every_draws_confident_wrong(tmp_path: Path):
    """Two draws a side (``run --draw``), paired by position: B loses a quarter of 90-120 in one draw and nothing in
    the other, so each of those queries is right in half of B's draws: B - A is -0.125, and the confident wrong
    poses are those of both draws. Unequal numbers of draws are refused."""
    n = 200
    bins = ["0-30"] * n + ["90-120"] * n
    _write_run(tmp_path / "A0", [True] * (2 * n), bins, [0.9] * (2 * n))
    _write_run(tmp_path / "A1", [True] * (2 * n), bins, [0.9] * (2 * n))
    _write_run(tmp_path / "B0", [True] * n + [i % 4 != 0 for i in range(n)], bins, [0.9] * (2 * n))
    _write_run(tmp_path / "B1", [True] * (2 * n), bins, [0.9] * (2 * n))
    out = vs.compare([tmp_path / "A0", tmp_path / "A1"], [tmp_path / "B0", tmp_path / "B1"])
    assert out["draws"] == 2 and out["n"] == 2 * n
    wide = out["bins"]["90-120"]
    assert wide["B_minus_A"] == pytest.approx(-0.125) and wide["loses_beyond_interval"]
    assert out["confident_wrong_B"] == n // 4 and out["take"] is False
    with pytest.raises(ValueError, match="one to one"):
        vs.compare([tmp_path / "A0", tmp_path / "A1"], [tmp_path / "B0"])


def test_summary_of_one_run_gives_recall_per_bin_confident_wrong_and_auroc(tmp_path: Path):
    """docs/benchmarks.md's suite section: one run alone. Right poses at confidence 0.8, wrong ones at 0.6 and one
    failure (no confidence, counted as 0): every right pose ranks above every wrong one (AUROC 1), one wrong above
    0.5."""
    bins = ["0-30", "0-30", "0-30", "90-120", "90-120", "90-120"]
    hits = [True, True, True, True, False, False]
    _write_run(tmp_path / "A", hits, bins, [0.8, 0.8, 0.8, 0.8, 0.6, 0.6])
    lines = (tmp_path / "A" / "shape_asymmetric_s101" / "queries.jsonl").read_text().splitlines()
    rec = json.loads(lines[-1])
    rec["confidence"] = None  # a failure
    (tmp_path / "A" / "shape_asymmetric_s101" / "queries.jsonl").write_text("\n".join(lines[:-1] + [json.dumps(rec)]))
    out = vs.summary(tmp_path / "A")
    part = out["parts"]["shape_asymmetric_s101"]
    assert out["all"]["n"] == 6 and out["all"]["recall"] == pytest.approx(0.667, abs=1e-3)
    assert part["bins"]["0-30"] == {"n": 3, "recall": 1.0}
    assert part["bins"]["90-120"]["recall"] == pytest.approx(0.333, abs=1e-3)
    assert part["confident_wrong"] == 1 and part["auroc"] == 1.0
    assert vs.auroc(np.array([True, False]), np.array([0.2, 0.9])) == 0.0
    assert vs.auroc(np.array([True, True]), np.array([0.2, 0.9])) is None  # no wrong pose: nothing to rank

def test_mcnemar_is_symmetric_and_one_without_discordant_pairs():
    assert vs.mcnemar_p(0, 0) == 1.0
    assert vs.mcnemar_p(3, 9) == pytest.approx(vs.mcnemar_p(9, 3))
    assert vs.mcnemar_p(0, 12) < 0.001


def test_segmenter_parts_reuse_rendered_frames_and_add_300_queries():
    parts = {p["name"]: p for p in vs.parts()}
    segmenter = [p for p in parts.values() if p.get("query_masks") == "segmenter"]
    assert {p["family"] for p in segmenter} == {"shape_asymmetric", "texture_only", "symmetric"}
    assert sum(p["scenes"] * (p["frames"] - 1) for p in segmenter) >= 300
    for p in segmenter:  # the same frames as a rendered part: only the masks differ
        base = parts[p["dataset"]]
        assert "dataset" not in base
        assert {k: v for k, v in p.items() if k not in ("dataset", "query_masks")} == {**base, "name": p["name"]}
    assert vs.SUITE_VERSION == 2


def _fake_suite(root: Path, version: int = 1) -> Path:
    """A suite whose rendered parts are marked complete (no frames): enough for render's reuse and run's plumbing."""
    for part in (p for p in vs.parts() if "dataset" not in p):
        (root / part["name"]).mkdir(parents=True)
        (root / part["name"] / "one2any_suite_part.json").write_text(json.dumps({"suite_version": version, **part}))
    return root


def test_render_links_an_earlier_version_instead_of_rendering(tmp_path: Path, monkeypatch):
    import one2any_ros.data.generate as generate

    monkeypatch.setattr(generate, "render_dataset", lambda *a, **k: pytest.fail("rendered again"))
    v1 = _fake_suite(tmp_path / "v1")
    vs.render(tmp_path / "v2", reuse=v1)
    meta = json.loads((tmp_path / "v2" / "suite.json").read_text())
    assert meta["suite_version"] == 2 and meta["parts"] == vs.parts()
    assert (tmp_path / "v2" / "texture_only_s101").resolve() == (v1 / "texture_only_s101").resolve()
    vs.render(tmp_path / "v2")  # complete now: nothing to do
    stale = _fake_suite(tmp_path / "stale")
    part = json.loads((stale / "symmetric_s202" / "one2any_suite_part.json").read_text())
    (stale / "symmetric_s202" / "one2any_suite_part.json").write_text(json.dumps({**part, "scenes": 3}))
    with pytest.raises(ValueError):
        vs.render(tmp_path / "v3", reuse=stale)


def _fake_evaluate(calls: list):
    """evaluate_dataset's stand-in: one hit per query, a miss where the masks are segmenter-like."""
    def evaluate_dataset(dataset, *, out_dir, query_masks="clean", **kwargs):
        calls.append((Path(dataset).name, Path(out_dir).name, query_masks))
        Path(out_dir).mkdir(parents=True)
        lines = [json.dumps({"scene_id": 1, "im_id": i, "obj_id": 1, "bin": "0-30", "confidence": 0.9,
                             "hit": query_masks == "clean" or i > 0}) for i in range(4)]
        (Path(out_dir) / "queries.jsonl").write_text("\n".join(lines) + "\n")
    return evaluate_dataset


def test_run_evaluates_segmenter_parts_on_their_frames_and_compare_pairs_them(tmp_path: Path, monkeypatch):
    import one2any_ros.evaluation as evaluation

    calls: list = []
    monkeypatch.setattr(evaluation, "evaluate_dataset", _fake_evaluate(calls))
    suite = _fake_suite(tmp_path / "v1")
    vs.render(suite)
    vs.run(suite, tmp_path / "A", backend="classic", settings={}, source=None, only=["*_s101"])
    vs.run(suite, tmp_path / "A", backend="classic", settings={}, source=None, only=["*_segmenter"])
    assert sorted(calls) == sorted([(f"{f}_s101", f"{f}_s101", "clean") for f in vs.FAMILIES]
                                   + [(f"{f}_s101", f"{f}_s101_segmenter", "segmenter") for f in vs.FAMILIES])
    assert len(vs.run_parts(tmp_path / "A")) == 6  # the second run added to the first
    with pytest.raises(ValueError):  # another setting never joins a run
        vs.run(suite, tmp_path / "A", backend="classic", settings={"icp_keep": 1}, source=None, only=["x"])
    same = vs.compare(tmp_path / "A", tmp_path / "A")
    assert same["n"] == 24 and set(same["query_masks"]) == {"clean", "segmenter"}
    masks = vs.compare(tmp_path / "A", tmp_path / "A", masks=True)
    assert masks["n"] == 12 and set(masks["parts"]) == {f"{f}_s101" for f in vs.FAMILIES}
    assert masks["all"]["A"] == pytest.approx(1.0) and masks["all"]["B"] == pytest.approx(0.75)
    assert masks["confident_wrong_B"] == 3 and masks["bins"]["0-30"]["confident_wrong_B"] == 3


def test_a_version_1_suite_still_runs(tmp_path: Path, monkeypatch):
    import one2any_ros.evaluation as evaluation

    calls: list = []
    monkeypatch.setattr(evaluation, "evaluate_dataset", _fake_evaluate(calls))
    suite = _fake_suite(tmp_path / "v1")
    rendered = [p for p in vs.parts() if "dataset" not in p]
    (suite / "suite.json").write_text(json.dumps({"suite_version": 1, "parts": rendered}))
    vs.run(suite, tmp_path / "A", backend="classic", settings={}, source=None)
    assert sorted(calls) == sorted((p["name"], p["name"], "clean") for p in rendered)
    assert vs.compare(tmp_path / "A", tmp_path / "A")["n"] == 4 * len(rendered)


@pytest.mark.slow
def test_a_tiny_suite_renders_runs_and_compares_with_itself(tmp_path: Path, monkeypatch):
    pytest.importorskip("pybullet")
    monkeypatch.setattr(vs, "SCENES", 1)
    monkeypatch.setattr(vs, "FRAMES", 3)
    monkeypatch.setattr(vs, "FAMILIES", ("shape_asymmetric",))
    monkeypatch.setattr(vs, "SEEDS", (101,))
    vs.render(tmp_path / "suite")
    vs.run(tmp_path / "suite", tmp_path / "A", backend="classic", settings={}, source=None)
    out = vs.compare(tmp_path / "A", tmp_path / "A")
    assert out["n"] == 4 and out["take"] is True  # the rendered part and its segmenter part
    assert np.isclose(out["all"]["B_minus_A"], 0.0)
    masks = vs.compare(tmp_path / "A", tmp_path / "A", masks=True)
    assert masks["n"] == 2 and list(masks["parts"]) == ["shape_asymmetric_s101"]
    records = [json.loads(line) for line in
               (tmp_path / "A" / "shape_asymmetric_s101_segmenter" / "queries.jsonl").read_text().splitlines()]
    assert all(0.0 < r["query_mask_iou"] < 1.0 for r in records if r["ok"])
