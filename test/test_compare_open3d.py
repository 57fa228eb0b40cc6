"""tools/compare_open3d.py: its command line, the message and exit code 2 when Open3D is missing (Open3D is not in
the default install), and, where Open3D is installed, one small real run (skipped otherwise)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tool_modules import load_tool

REPO = Path(__file__).resolve().parent.parent
TOOL = REPO / "tools" / "compare_open3d.py"


def test_arguments():
    tool = load_tool("compare_open3d")
    a = tool.parse_args([])
    assert a.backend == ["auto"] and a.max_pairs is None and a.icp == "point-to-plane" and a.voxel_fraction == 0.05
    a = tool.parse_args(["--backend", "auto", "classic", "--max-pairs", "5", "--cores", "1", "--icp", "point-to-point"])
    assert a.backend == ["auto", "classic"] and a.max_pairs == 5 and a.cores == 1 and a.icp == "point-to-point"
    assert a.ransac == [(100000, 0.999)]
    assert tool.parse_args(["--ransac", "100000:0.999", "20000:1"]).ransac == [(100000, 0.999), (20000, 1.0)]
    for bad in (["--max-pairs", "0"], ["--cores", "0"], ["--voxel-fraction", "1.5"], ["--backend", "nope"],
                ["--ransac", "0:0.9"], ["--ransac", "100:0"], ["--ransac", "100"]):
        with pytest.raises(SystemExit) as e:
            tool.parse_args(bad)
        assert e.value.code == 2


def test_missing_open3d_says_how_to_install(tmp_path):
    """Run as its own process (the tool pins cores and sets thread variables) with ``import open3d`` made to fail,
    whether or not Open3D is installed here."""
    code = ("import runpy, sys; sys.modules['open3d'] = None; "
            f"sys.argv = ['compare_open3d.py', '--dataset', {str(tmp_path)!r}, '--out', {str(tmp_path / 'x.json')!r}]; "
            f"runpy.run_path({str(TOOL)!r}, run_name='__main__')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "cannot import open3d" in r.stderr and "pip install open3d" in r.stderr
    assert not (tmp_path / "x.json").exists()


@pytest.mark.slow
def test_small_real_run(tmp_path):
    pytest.importorskip("open3d")
    pytest.importorskip("pybullet")
    from one2any_ros.data.generate import render_dataset

    K = np.array([[300.0, 0, 159.5], [0, 300.0, 119.5], [0, 0, 1]])
    root = render_dataset(tmp_path / "ds", objects="val", scenes=1, frames=3, max_rotation_deg=30.0, seed=3,
                          width=320, height=240, K=K, progress=False)
    out = tmp_path / "cmp.json"
    r = subprocess.run([sys.executable, str(TOOL), "--dataset", str(root), "--backend", "classic", "--out", str(out),
                        "--no-progress"], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert r.returncode == 0, r.stderr
    rep = json.loads(out.read_text())
    assert set(rep["methods"]) == {"project_classic", "open3d_100000_0.999"}
    assert len(rep["pairs"]) == 2 and all(m["n_pairs"] == 2 for m in rep["methods"].values())
    assert rep["machine"]["open3d"] and "git_modified" in rep["machine"]
    assert "Open3D FPFH+RANSAC+ICP" in r.stdout and "median ms" in r.stdout
