"""The ``one2any`` command end to end on a tiny rendered dataset: render -> eval, and estimate from files."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def _one2any(*args, cwd):
    return subprocess.run([sys.executable, "-m", "one2any_ros.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**__import__("os").environ, "PYTHONPATH": str(REPO)})


def test_render_eval_estimate(tmp_path):
    ds = tmp_path / "ds"
    r = _one2any("render", "--out", str(ds), "--objects", "test", "--scenes", "1", "--frames", "3",
                 "--max-rotation", "20", "--seed", "3", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = _one2any("eval", "--dataset", str(ds), "--backend", "classic", "--out", str(tmp_path / "ev"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "ADD(-S) recall @0.1d" in r.stdout
    rep = json.loads((tmp_path / "ev" / "report.json").read_text())
    for key in ("backend", "n_queries", "add_s_01d_recall", "add_s_auc", "median_rot_err_deg", "median_trans_err_mm",
                "recall_5deg_5cm", "by_rotation_bin", "failures", "median_latency_ms"):
        assert key in rep, key
    assert rep["n_queries"] == 2 and rep["backend"] == "classic"
    assert list(rep["by_rotation_bin"]) == ["0-30", "30-60", "60-90", "90-120", "120-180"]
    with open(tmp_path / "ev" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and set(rows[0]) == {"scene_id", "im_id", "obj_id", "score", "R", "t", "time"}
    assert len(rows[0]["R"].split()) == 9 and len(rows[0]["t"].split()) == 3

    # estimate from image files: reference = frame 0 with its ground-truth pose, query = frame 1
    scene = ds / "test" / "000001"
    cam = json.loads((scene / "scene_camera.json").read_text())
    gt = json.loads((scene / "scene_gt.json").read_text())
    (tmp_path / "K.json").write_text(json.dumps({"K": cam["0"]["cam_K"]}))
    scale_m = cam["0"]["depth_scale"] / 1000.0

    def pose(i):
        T = np.eye(4)
        T[:3, :3] = np.reshape(gt[str(i)][0]["cam_R_m2c"], (3, 3))
        T[:3, 3] = np.asarray(gt[str(i)][0]["cam_t_m2c"]) / 1000.0
        return T

    (tmp_path / "ref_pose.json").write_text(json.dumps(pose(0).tolist()))
    files = lambda i: [str(next((scene / "rgb").glob(f"{i:06d}.*"))), str(scene / "depth" / f"{i:06d}.png"),
                       str(scene / "mask_visib" / f"{i:06d}_000000.png")]
    r = _one2any("estimate", "--backend", "classic", "--ref", *files(0), "--query", *files(1),
                 "--intrinsics", str(tmp_path / "K.json"), "--depth-scale", str(scale_m),
                 "--ref-pose", str(tmp_path / "ref_pose.json"), "--overlay", str(tmp_path / "o.png"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    T = np.asarray(out["T_camera_object"])
    assert np.linalg.norm(T[:3, 3] - pose(1)[:3, 3]) < 0.02  # <= 20 deg apart: classic is within a few mm
    assert (tmp_path / "o.png").stat().st_size > 1000


def test_estimate_reports_bad_input_cleanly(tmp_path):
    (tmp_path / "K.json").write_text(json.dumps({"fx": 0, "fy": 0, "cx": 1, "cy": 1}))
    r = _one2any("estimate", "--backend", "classic", "--ref", "a.png", "b.png", "c.png", "--query", "a.png", "b.png",
                 "c.png", "--intrinsics", str(tmp_path / "K.json"), cwd=tmp_path)
    assert r.returncode == 2
    assert "error" in r.stderr and "Traceback" not in r.stderr
