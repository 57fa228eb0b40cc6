"""The ``one2any`` command end to end on a tiny rendered dataset: render -> eval, and estimate from files."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def _one2any(*args, cwd):
    return subprocess.run([sys.executable, "-m", "one2any_ros.apps.cli", *args], cwd=cwd, capture_output=True, text=True,
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


def _module(name, *args, cwd):
    return subprocess.run([sys.executable, "-m", name, *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "PYTHONPATH": str(REPO)})


def test_python_m_entry_points_are_the_cli_subcommands(tmp_path):
    """``python -m one2any_ros`` is the CLI (tools/gpu_train_chunk.sh, README; ``torchrun -m one2any_ros train`` runs it
    the same way); no lower layer has a ``__main__`` of its own that hands over to it."""
    for args, usage in ((("train",), "usage: one2any train"), (("promote",), "usage: one2any promote"),
                        (("demo",), "usage: one2any demo"), ((), "usage: one2any")):
        r = _module("one2any_ros", *args, "--help", cwd=tmp_path)
        assert r.returncode == 0 and r.stdout.startswith(usage), (args, r.stdout[:200], r.stderr[-500:])
    r = _module("one2any_ros.data.sample", "--help", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("usage: python -m one2any_ros.data.sample"), r.stderr[-500:]
    assert not any(tmp_path.iterdir()), "a --help wrote files"  # it once regenerated the sample into ./--help
    r = _module("one2any_ros", "train", "--config", str(tmp_path / "missing.yaml"), cwd=tmp_path)
    assert r.returncode == 2 and "one2any train: error (config_missing)" in r.stderr


def test_train_through_python_m_with_the_gpu_script_flags(tmp_path):
    """The flags tools/gpu_train_chunk.sh passes (--resume, --device, --set, --out-dir) reach train()."""
    out = tmp_path / "run"
    args = ["train", "--config", str(REPO / "config" / "train_tiny.yaml"), "--device", "cpu", "--out-dir", str(out),
            "--set", "train.max_steps=2", "--set", "data.val_pairs=0", "--set", "data.workers=0"]
    r = _module("one2any_ros", *args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((out / "train_state.json").read_text())["step"] == 2
    r = _module("one2any_ros", *args[:-6], "--resume", "--set", "train.max_steps=3", "--set", "data.val_pairs=0",
                "--set", "data.workers=0", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    st = json.loads((out / "train_state.json").read_text())
    assert st["step"] == 3 and st["resumes"] == 1


def test_promote_is_a_subcommand(monkeypatch, capsys, tmp_path):
    from one2any_ros.apps import cli
    from one2any_ros.training import promote

    calls = []

    def fake_run(checkpoint, dataset, out_dir, *, max_queries=None, export=False):
        calls.append((checkpoint, dataset, out_dir, max_queries, export))
        return {"promote": False, "variant": "one2any_no_roc", "n_queries": 3, "exported": None,
                "comparison": {"overall": {"classic": 0.5, "one2any": 0.4}}}

    monkeypatch.setattr(promote, "run", fake_run)
    assert cli.main(["promote", "--max-queries", "3", "--out", str(tmp_path)]) == 0
    assert calls == [(promote.DEFAULT_RUN_CHECKPOINT, Path(promote.DEFAULT_DATASET), tmp_path, 3, False)]
    assert "decision: keep classic as the default" in capsys.readouterr().out
