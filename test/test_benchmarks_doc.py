"""tools/make_benchmarks_doc.py renders docs/benchmarks.md from docs/data/ alone (what ``--no-run`` does), without
measuring: every section of the committed page comes back, and the verdicts follow the numbers in the reports."""
import copy
import importlib
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def doc():
    """The tool as a module (tools/ is not a package; its parts import each other by plain name, so tools/ goes on
    the path while these tests run, and they are imported by name, not by import statements)."""
    sys.path.insert(0, str(REPO / "tools"))
    try:
        yield importlib.import_module("make_benchmarks_doc")
    finally:
        sys.path.remove(str(REPO / "tools"))


@pytest.fixture(scope="module")
def inputs(doc):
    return doc.load_inputs()


def _headings(text: str) -> list[str]:
    return re.findall(r"^#+ .*$", text, flags=re.MULTILINE)


def test_renders_every_section_of_the_page_from_docs_data(doc, inputs):
    page = doc.render_doc(inputs)
    assert _headings(page) == _headings((REPO / "docs" / "benchmarks.md").read_text())
    assert "{" not in "".join(_headings(page)) and "PASS" in page


def test_the_template_has_every_block_the_sections_use(doc):
    names = set(importlib.import_module("benchmarks_text").blocks())
    used = set()
    for module in ("make_benchmarks_doc", "benchmarks_sections", "benchmarks_ros_sections"):
        used |= set(re.findall(r'render\(\s*"(\w+)"', (REPO / "tools" / f"{module}.py").read_text()))
    used |= {"objects_sublinear", "objects_linear", "objects_superlinear"}  # chosen by name from the ratio
    assert used <= names, used - names


def test_soak_verdict_follows_the_targets(doc, inputs):
    ros_section = importlib.import_module("benchmarks_ros_sections").ros_section
    r = copy.deepcopy(inputs["ros_bench"])
    r["targets"] = {k: True for k in r["targets"]}
    for p in r["phases"]:
        p["node_cpu_percent"] = 50.0
    text = ros_section(r)
    assert text.count("| PASS |") == 3 and "FAIL" not in text and "bound at one core" not in text
    r["targets"]["memory_growth_under_50mb"] = False
    r["phases"][0]["node_cpu_percent"] = 99.0
    text = ros_section(r)
    assert text.count("| FAIL |") == 1 and "bound at one core**: 99 % in phase" in text


@pytest.mark.parametrize("ratio, words", [(0.6, "less than N separate objects would cost"),
                                          (1.0, "about N times one object's"), (1.5, "more than N times one object's")])
def test_objects_verdict_from_the_cost_ratio(doc, inputs, ratio, words):
    objects_section = importlib.import_module("benchmarks_ros_sections").objects_section
    d = copy.deepcopy(inputs["ros_bench_objects"])
    base = next(r["summary"]["per_frame_ms"] for r in d["runs"] if r["n_objects"] == 1)
    for r in d["runs"]:
        r["summary"]["per_frame_ms"] = base * (1 if r["n_objects"] == 1 else ratio * r["n_objects"])
    text = objects_section(d)
    assert f"So N objects cost {words}" in text and f"**{ratio:.2f} of 4 x one object's**" in text


def test_plots_are_drawn(doc, inputs, tmp_path):
    pytest.importorskip("matplotlib")
    doc.draw_plots(inputs, img=tmp_path)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["accuracy_by_rotation.png", "latency_stages.png",
                                                               "ros_soak.png"]
