"""render_dataset writes a readable BOP dataset with the asked rotation spread; the bundled sample."""

import json

import numpy as np
import pytest

from one2any_ros.data import bop
from one2any_ros.data import objects as O


def _angle(Ra, Rb):
    return float(np.degrees(np.arccos(np.clip((np.trace(Ra.T @ Rb) - 1) / 2, -1, 1))))


def assert_json_close(a, b, atol=1e-6, where="$"):
    """Equal JSON, numbers within ``atol`` (BOP poses: rotations, mm, px). The same poses computed on another
    machine (another BLAS kernel: OPENBLAS_CORETYPE) differ in the last bits: a rotation entry by one ulp, a
    translation by 1e-14 mm. A wrong pose differs by far more than 1e-6."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert sorted(a) == sorted(b), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            assert_json_close(a[k], b[k], atol, f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{where}: lengths {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_json_close(x, y, atol, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, (int, float)) and isinstance(b, (int, float)), f"{where}: {a!r} != {b!r}"
        assert abs(a - b) <= atol, f"{where}: {a!r} != {b!r} (atol {atol})"
    else:  # ints (object ids), strings, bools, null: exactly
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    pytest.importorskip("pybullet")
    from one2any_ros.data.generate import render_dataset

    out = tmp_path_factory.mktemp("ds")
    K = np.array([[150.0, 0, 79.5], [0, 150.0, 59.5], [0, 0, 1]])
    render_dataset(
        out,
        objects="test",
        scenes=2,
        frames=6,
        max_rotation_deg=90.0,
        seed=4,
        width=160,
        height=120,
        K=K,
        progress=False,
    )
    return out, K


def test_dataset_layout_and_rotation_spread(small_dataset):
    root, K = small_dataset
    assert bop.list_scenes(root, "test") == [1, 2]
    infos = bop.load_models_info(root)
    assert sorted(infos) == [1, 2]
    meta = json.loads((root / "one2any_render.json").read_text())
    for sid in (1, 2):
        assert O.split_of(meta["scenes"][str(sid)]["one2any_id"]) == "test"  # never a training object
        scene = bop.load_scene(root, "test", sid)
        assert scene.im_ids == list(range(6))
        imgs = [bop.load_image(scene, i, 0) for i in scene.im_ids]
        assert scene.gt_info[0][0]["visib_fract"] >= 0.5  # the reference
        R0 = imgs[0]["T_cam_obj"][:3, :3]
        angles = [_angle(R0, im["T_cam_obj"][:3, :3]) for im in imgs]
        assert angles[0] < 1e-3
        for k in range(1, 6):  # frame k lies in the k-th of 5 equal bins of [0, 90]
            assert 18 * (k - 1) - 1e-6 <= angles[k] <= 18 * k + 1e-6
        np.testing.assert_allclose(angles, meta["scenes"][str(sid)]["rotation_deg"], atol=1e-3)
        for im in imgs:
            np.testing.assert_allclose(im["K"], K)
            assert im["rgb"].shape == (120, 160, 3) and im["mask"].sum() >= 30
            assert 0.4 - 0.2 <= im["T_cam_obj"][2, 3] <= 1.2 + 0.01
            m = im["mask"] & (im["depth"] > 0)
            # depth inside the mask is near the object's distance (noise, edges and holes allowed)
            assert (
                np.median(np.abs(im["depth"][m] - im["T_cam_obj"][2, 3]))
                < 0.5 * infos[sid]["diameter"] / 1000 + 0.01
            )
    targets = json.loads((root / "test_targets_bop19.json").read_text())
    assert len(targets) == 12 and (root / "camera.json").is_file()


def test_dataset_is_deterministic(small_dataset, tmp_path):
    from one2any_ros.data.generate import render_dataset, rotation_schedule

    root, K = small_dataset
    render_dataset(
        tmp_path,
        objects="test",
        scenes=1,
        frames=6,
        max_rotation_deg=90.0,
        seed=4,
        width=160,
        height=120,
        K=K,
        progress=False,
    )
    a = json.loads((root / "test" / "000001" / "scene_gt.json").read_text())
    b = json.loads((tmp_path / "test" / "000001" / "scene_gt.json").read_text())
    assert_json_close(a, b)
    s = rotation_schedule(101, 120.0, np.random.default_rng(0))
    assert s[0] == 0 and np.all(np.diff(s) > 0) and s.max() <= 120
    assert abs(np.mean(s[1:]) - 60) < 3  # uniform over [0, 120]


def test_bundled_sample():
    from one2any_ros.data.sample import (
        SAMPLE_DIR,
        SAMPLE_MAX_ROTATION_DEG,
        load_sample_sequence,
        sample_object_id,
    )

    total = sum(p.stat().st_size for p in SAMPLE_DIR.rglob("*") if p.is_file())
    assert total < 6 * 1024 * 1024
    seq = load_sample_sequence()
    frames = seq["frames"]
    assert 8 <= len(frames) <= 12 and not seq["symmetric"]
    assert seq["model_points"].shape[1] == 3 and 0.05 < seq["diameter_m"] < 0.3
    assert (
        O.split_of(seq["model_info"]["one2any_id"]) == "test"
        and seq["model_info"]["one2any_id"] == sample_object_id()
    )
    R0 = frames[0]["T_cam_obj"][:3, :3]
    angles = np.array([_angle(R0, f["T_cam_obj"][:3, :3]) for f in frames])
    np.testing.assert_allclose(angles, np.linspace(0, SAMPLE_MAX_ROTATION_DEG, len(frames)), atol=1e-3)
    for f in frames:
        assert f["rgb"].shape == (480, 640, 3) and f["depth"].shape == (480, 640)
        assert f["mask"].sum() > 2000 and f["visib_fract"] >= 0.99
        assert ((f["depth"] > 0) & f["mask"]).sum() > 0.8 * f["mask"].sum()
        # ground truth agrees with the depth: model points in the camera land on the measured surface
        pts = seq["model_points"] @ f["T_cam_obj"][:3, :3].T + f["T_cam_obj"][:3, 3]
        u = np.round(f["K"][0, 0] * pts[:, 0] / pts[:, 2] + f["K"][0, 2]).astype(int)
        v = np.round(f["K"][1, 1] * pts[:, 1] / pts[:, 2] + f["K"][1, 2]).astype(int)
        d = f["depth"][v, u]
        front = (d > 0) & f["mask"][v, u] & (pts[:, 2] <= d + 0.01)
        assert front.sum() > 100
        assert np.median(np.abs(pts[front, 2] - d[front])) < 0.005


def test_sample_regenerates_identically(tmp_path, images_close):
    """The bundled sample is what ``make_sample`` renders, up to the last bits of the poses (another BLAS kernel)
    and what they move: a few edge pixels of the mask, depth by at most one 1-mm PNG level there."""
    pytest.importorskip("pybullet")
    from one2any_ros.data.sample import SAMPLE_DIR, make_sample

    make_sample(tmp_path, frames=2)  # frame 0 does not depend on the frame count
    for sub in ("scene_gt.json", "scene_camera.json"):
        a = json.loads((SAMPLE_DIR / "test" / "000001" / sub).read_text())["0"]
        b = json.loads((tmp_path / "test" / "000001" / sub).read_text())["0"]
        assert_json_close(a, b)
    a = bop.load_image(bop.load_scene(SAMPLE_DIR, "test", 1), 0)
    b = bop.load_image(bop.load_scene(tmp_path, "test", 1), 0)
    assert a["mask"].sum() > 2000
    images_close(a, b, depth_atol=0.0011)  # a few pixels at most; depth (m) in 1 mm PNG levels
    assert np.abs(a["rgb"].astype(int) - b["rgb"]).mean() < 1.0  # JPEG codecs may differ by a level
