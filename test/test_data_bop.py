"""BOP writer -> reader round trips: poses, K, depth scale, masks, gt_info, models, PLY, results CSV.
Synthetic arrays only (no renderer, no downloaded data)."""

import json

import numpy as np
import pytest

from one2any_ros.data import bop
from one2any_ros.data import objects as O
from one2any_ros.data.ply import load_ply, save_ply


def _rot(rng):
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    x, y, z, w = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


@pytest.mark.parametrize("rgb_ext,depth_scale", [(".png", 0.1), (".jpg", 1.0)])
def test_scene_round_trip(tmp_path, rgb_ext, depth_scale):
    rng = np.random.default_rng(0)
    H, W = 48, 64
    K = np.array([[70.0, 0, 31.5], [0, 71.0, 23.5], [0, 0, 1]])
    written = {}
    with bop.BopSceneWriter(tmp_path, 3, rgb_ext=rgb_ext, depth_scale=depth_scale) as w:
        for im_id in (0, 1, 5):
            rgb = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
            rgb[:] = rgb[:1, :1]  # flat colour: survives JPEG
            depth = np.round(rng.uniform(0.3, 2.0, (H, W)) * 1000) / 1000
            depth[:5] = 0
            full = np.zeros((H, W), bool)
            full[10:30, 20:50] = True
            vis = full.copy()
            vis[10:15] = False
            T = np.eye(4)
            T[:3, :3], T[:3, 3] = _rot(rng), rng.uniform(-0.2, 0.2, 3) + [0, 0, 0.8]
            w.add(
                im_id,
                rgb,
                depth.astype(np.float32),
                K,
                [{"obj_id": 7, "T_cam_obj": T, "mask_visib": vis, "mask": full}],
            )
            written[im_id] = (rgb, depth, vis, full, T)
    assert bop.list_scenes(tmp_path, "test") == [3]
    scene = bop.load_scene(tmp_path, "test", 3)
    assert scene.im_ids == [0, 1, 5] and scene.gt_info is not None
    for im_id, (rgb, depth, vis, full, T) in written.items():
        img = bop.load_image(scene, im_id, 0)
        assert img["obj_id"] == 7 and img["rgb"].dtype == np.uint8 and img["depth"].dtype == np.float32
        np.testing.assert_allclose(img["K"], K)
        np.testing.assert_allclose(img["T_cam_obj"], T, atol=1e-7)
        np.testing.assert_allclose(img["depth"], depth, atol=depth_scale / 1000 / 2 + 1e-6)
        np.testing.assert_array_equal(img["mask"], vis)
        np.testing.assert_array_equal(img["mask_full"], full)
        if rgb_ext == ".png":
            np.testing.assert_array_equal(img["rgb"], rgb)
        else:
            assert np.abs(img["rgb"].astype(int) - rgb).max() <= 3
        info = scene.gt_info[im_id][0]
        assert info["px_count_all"] == full.sum() and info["px_count_visib"] == vis.sum()
        assert info["visib_fract"] == pytest.approx(vis.sum() / full.sum())
        assert info["bbox_obj"] == [20, 10, 30, 20] and info["bbox_visib"] == [20, 15, 30, 15]
        assert img["visib_fract"] == pytest.approx(info["visib_fract"])
    cam = json.loads((tmp_path / "test" / "000003" / "scene_camera.json").read_text())
    assert cam["0"]["depth_scale"] == depth_scale and len(cam["0"]["cam_K"]) == 9
    gt = json.loads((tmp_path / "test" / "000003" / "scene_gt.json").read_text())
    np.testing.assert_allclose(gt["1"][0]["cam_t_m2c"], written[1][4][:3, 3] * 1000)  # mm in the file
    np.testing.assert_allclose(gt["1"][0]["cam_R_m2c"], written[1][4][:3, :3].ravel())  # row-wise


def test_models_round_trip(tmp_path):
    objs = [O.make_object(2_000_011), O.make_object(15, symmetric=True), O.make_object(16, symmetric=False)]
    bop.write_models(tmp_path, objs, obj_ids=[1, 2, 5])
    infos = bop.load_models_info(tmp_path)
    assert sorted(infos) == [1, 2, 5]
    for bid, o in zip([1, 2, 5], objs):
        info = infos[bid]
        assert info["diameter"] == pytest.approx(o.diameter * 1000, rel=1e-6)  # mm
        assert info["size_x"] == pytest.approx(o.extents[0] * 1000, rel=1e-5)
        assert bop.is_symmetric(info) == o.symmetric
        pts = bop.load_model_points(tmp_path, bid, max_points=500)
        assert pts.shape == (500, 3)
        assert np.abs(pts).max() < o.diameter  # metres, object frame
        np.testing.assert_array_equal(
            pts, bop.load_model_points(tmp_path, bid, max_points=500)
        )  # deterministic
        ply = load_ply(tmp_path / "models" / f"obj_{bid:06d}.ply")
        np.testing.assert_allclose(ply["pts"] / 1000, o.vertices, atol=1e-6)  # mm in the file
        np.testing.assert_array_equal(ply["faces"], o.faces)
        assert ply["normals"].shape == o.vertices.shape and ply["texture_file"] == f"obj_{bid:06d}.png"
        # eval model: dense enough that no vertex is far from the surface samples of the mesh
        ev = load_ply(tmp_path / "models_eval" / f"obj_{bid:06d}.ply")["pts"] / 1000
        assert len(ev) >= len(np.unique(np.round(o.vertices, 7), axis=0))
    assert infos[2]["symmetries_continuous"] or infos[2]["symmetries_discrete"]
    assert "symmetries_continuous" not in infos[5] and "symmetries_discrete" not in infos[5]
    assert not bop.is_symmetric({"diameter": 1.0}) and bop.is_symmetric(
        {"symmetries_discrete": [list(range(16))]}
    )


def test_sparse_model_points_are_topped_up(tmp_path):
    V = np.array(
        [[x, y, z] for x in (-50, 50) for y in (-20, 20) for z in (-10, 10)], float
    )  # mm box corners
    F = np.array(
        [
            [0, 1, 3],
            [0, 3, 2],
            [4, 6, 7],
            [4, 7, 5],
            [0, 4, 5],
            [0, 5, 1],
            [2, 3, 7],
            [2, 7, 6],
            [0, 2, 6],
            [0, 6, 4],
            [1, 5, 7],
            [1, 7, 3],
        ]
    )
    (tmp_path / "models").mkdir()
    save_ply(tmp_path / "models" / "obj_000001.ply", V, faces=F)
    pts = bop.load_model_points(tmp_path, 1, max_points=400)
    assert pts.shape == (400, 3)
    assert np.all(np.abs(pts) <= np.array([0.05, 0.02, 0.01]) + 1e-9)


def test_ascii_ply_and_quads(tmp_path):
    p = tmp_path / "a.ply"
    p.write_text(
        "ply\nformat ascii 1.0\ncomment made by hand\nelement vertex 4\nproperty float x\nproperty float y\n"
        "property float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\nelement face 1\n"
        "property list uchar int vertex_indices\nend_header\n0 0 0 255 0 0\n1 0 0 0 255 0\n1 1 0 0 0 255\n"
        "0 1 0 9 9 9\n4 0 1 2 3\n"
    )
    ply = load_ply(p)
    assert ply["pts"].shape == (4, 3) and ply["colors"][1].tolist() == [0, 255, 0]
    assert ply["faces"].shape == (2, 3)  # the quad as two triangles of the same winding
    tris = {tuple(np.roll(t, -int(np.argmin(t)))) for t in ply["faces"].tolist()}
    assert tris in ({(0, 1, 2), (0, 2, 3)}, {(0, 1, 3), (1, 2, 3)})


@pytest.mark.parametrize("encoding", ["binary", "ascii"])
def test_ply_round_trip_mm_uv_colours(tmp_path, encoding):
    """save -> load keeps millimetre coordinates, normals, UVs, colours, faces and the texture file, in the
    file's vertex order, within float32 precision (BOP ships binary and ascii models)."""
    rng = np.random.default_rng(3)
    n = 50
    pts_mm = rng.uniform(-120.0, 120.0, (n, 3))  # millimetres, as BOP models
    normals = rng.normal(size=(n, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    colors = rng.integers(0, 256, (n, 3), dtype=np.uint8)
    uvs = rng.uniform(0.0, 1.0, (n, 2))
    faces = rng.integers(0, n, (70, 3))
    p = tmp_path / "obj_000001.ply"
    save_ply(
        p, pts_mm, faces=faces, normals=normals, colors=colors, uvs=uvs, texture_file="obj_000001.png",
        encoding=encoding,
    )
    assert (b"format ascii" in p.read_bytes()[:200]) == (encoding == "ascii")
    ply = load_ply(p)
    np.testing.assert_allclose(ply["pts"], pts_mm, rtol=1e-6, atol=1e-5)  # float32 of up to 120 mm
    np.testing.assert_allclose(ply["normals"], normals, atol=1e-6)
    np.testing.assert_allclose(ply["texture_uv"], uvs, atol=1e-6)
    np.testing.assert_array_equal(ply["colors"], colors)
    assert ply["colors"].dtype == np.uint8 and ply["faces"].dtype == np.int64
    np.testing.assert_array_equal(ply["faces"], faces)
    assert ply["texture_file"] == "obj_000001.png"


def test_ply_points_only(tmp_path):
    pts = np.random.default_rng(4).uniform(-5.0, 5.0, (20, 3))
    save_ply(tmp_path / "p.ply", pts)
    ply = load_ply(tmp_path / "p.ply")
    np.testing.assert_allclose(ply["pts"], pts, atol=1e-6)
    assert set(ply) == {"pts"}
    (tmp_path / "bad.ply").write_bytes(b"solid x\n")
    with pytest.raises(ValueError):
        load_ply(tmp_path / "bad.ply")


def test_results_csv_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    rows = []
    for i in range(4):
        R = _rot(rng)
        rows.append(
            {
                "scene_id": 1,
                "im_id": i,
                "obj_id": 3,
                "score": 0.5 + 0.1 * i,
                "R": R,
                "t": rng.uniform(-100, 900, 3),
                "time": 0.01 * i,
            }
        )
    T = np.eye(4)
    T[:3, 3] = [0.1, 0.2, 0.7]
    rows.append({"scene_id": 2, "im_id": 0, "obj_id": 4, "score": 1.0, "T_cam_obj": T})
    path = tmp_path / "res" / "results.csv"
    bop.write_results_csv(path, rows)
    assert path.read_text().splitlines()[0] == "scene_id,im_id,obj_id,score,R,t,time"
    back = bop.read_results_csv(path)
    assert len(back) == 5
    for a, b in zip(rows[:4], back[:4]):
        assert (b["scene_id"], b["im_id"], b["obj_id"]) == (a["scene_id"], a["im_id"], a["obj_id"])
        np.testing.assert_allclose(b["R"], a["R"], atol=1e-7)
        np.testing.assert_allclose(b["t"], a["t"], atol=1e-5)
        assert b["score"] == pytest.approx(a["score"]) and b["time"] == pytest.approx(a["time"])
        np.testing.assert_allclose(b["T_cam_obj"][:3, 3], a["t"] / 1000, atol=1e-8)
    np.testing.assert_allclose(back[4]["t"], [100, 200, 700])
    assert back[4]["time"] == -1
