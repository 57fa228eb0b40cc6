"""The one-reference BOP evaluation on a tiny BOP dataset written on the fly, with a fake estimator.

The dataset: one scene, 6 images (160x120), two objects side by side — obj 1 an asymmetric box (left),
obj 2 a cylinder with a continuous symmetry (right). Masks are the filled convex hull of the projected
model, depth is flat at the object's distance, and every image's colour encodes its im_id so the fake
estimator knows which query it was handed (and that the .png/.jpg image was really read).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from one2any_ros.core.errors import EstimationFailure

H, W = 120, 160
K = np.array([[200.0, 0.0, 80.0], [0.0, 200.0, 60.0], [0.0, 0.0, 1.0]])
ANGLES = [0.0, 20.0, 40.0, 100.0, 130.0, 175.0]  # each image's rotation about the camera's y axis (deg)
VISIB = {1: [0.3, 0.9, 0.9, 0.9, 0.9, 0.9], 2: [0.8, 0.9, 0.9, 0.9, 0.0, 0.9]}  # obj 2 invisible in image 4
CENTRES = {1: (-0.06, 0.0, 0.5), 2: (0.06, 0.0, 0.5)}  # metres, camera frame


def rot(axis, deg):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    a = np.radians(deg)
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def box_mesh(sx=80.0, sy=50.0, sz=30.0, n=6):
    """A box (mm) with every face a n x n grid, so vertex-only readers still get a dense point set."""
    verts, faces = [], []
    half = np.array([sx, sy, sz]) / 2
    g = np.linspace(-1, 1, n)
    for axis in range(3):
        for sign in (-1, 1):
            base = len(verts)
            a, b = [i for i in range(3) if i != axis]
            for i in g:
                for j in g:
                    p = np.zeros(3)
                    p[axis], p[a], p[b] = sign, i, j
                    verts.append(p * half)
            for i in range(n - 1):
                for j in range(n - 1):
                    v0 = base + i * n + j
                    faces += [(v0, v0 + n, v0 + 1), (v0 + 1, v0 + n, v0 + n + 1)]
    return np.array(verts), np.array(faces)


def cylinder_mesh(r=20.0, h=60.0, seg=36, rings=7):
    """A cylinder about z (mm), side only plus cap centres: seg is a divisor of 360 (10° steps)."""
    verts, faces = [], []
    a = np.radians(np.arange(seg) * 360.0 / seg)
    for z in np.linspace(-h / 2, h / 2, rings):
        verts += [(r * np.cos(t), r * np.sin(t), z) for t in a]
    for k in range(rings - 1):
        for i in range(seg):
            v0, v1 = k * seg + i, k * seg + (i + 1) % seg
            faces += [(v0, v1, v0 + seg), (v1, v1 + seg, v0 + seg)]
    c0, c1 = len(verts), len(verts) + 1
    verts += [(0, 0, -h / 2), (0, 0, h / 2)]
    top = (rings - 1) * seg
    for i in range(seg):
        faces += [(c0, (i + 1) % seg, i), (c1, top + i, top + (i + 1) % seg)]
    return np.array(verts, float), np.array(faces)


def write_ply(path: Path, verts, faces):
    lines = ["ply", "format ascii 1.0", f"element vertex {len(verts)}", "property float x", "property float y",
             "property float z", f"element face {len(faces)}", "property list uchar int vertex_indices", "end_header"]
    lines += [f"{x:.6f} {y:.6f} {z:.6f}" for x, y, z in verts]
    lines += [f"3 {a} {b} {c}" for a, b, c in faces]
    path.write_text("\n".join(lines) + "\n")


MESHES = {1: box_mesh(), 2: cylinder_mesh()}


def gt_pose(obj_id: int, im_id: int) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = rot([0, 1, 0], ANGLES[im_id]) @ rot([1, 0, 0], 30)  # tilted so both show a 2-D silhouette
    T[:3, 3] = CENTRES[obj_id]
    return T


def colour(im_id: int) -> int:
    return 20 + 30 * im_id


def decode_im_id(rgb: np.ndarray) -> int:
    return int(round((float(np.median(rgb)) - 20) / 30))


def make_dataset(root: Path, *, ext: str = "png", with_gt_info: bool = True, with_eval_models: bool = False) -> Path:
    (root / "models").mkdir(parents=True)
    info = {}
    for oid, (v, f) in MESHES.items():
        write_ply(root / "models" / f"obj_{oid:06d}.ply", v, f)
        ext_ = {"min_x": float(v[:, 0].min()), "min_y": float(v[:, 1].min()), "min_z": float(v[:, 2].min()),
                "size_x": float(np.ptp(v[:, 0])), "size_y": float(np.ptp(v[:, 1])), "size_z": float(np.ptp(v[:, 2]))}
        diam = float(max(np.linalg.norm(a - b) for a in v for b in v))
        info[str(oid)] = {"diameter": diam, **ext_}
    info["2"]["symmetries_continuous"] = [{"axis": [0, 0, 1], "offset": [0, 0, 0]}]
    (root / "models" / "models_info.json").write_text(json.dumps(info))
    if with_eval_models:
        (root / "models_eval").mkdir()
        for oid, (v, f) in MESHES.items():
            write_ply(root / "models_eval" / f"obj_{oid:06d}.ply", v, f)
        (root / "models_eval" / "models_info.json").write_text(json.dumps(info))

    sdir = root / "test" / f"{1:06d}"
    for d in ("rgb", "depth", "mask", "mask_visib"):
        (sdir / d).mkdir(parents=True)
    cams, gts, gt_infos = {}, {}, {}
    for im in range(len(ANGLES)):
        depth = np.zeros((H, W), np.uint16)
        gts[str(im)], gt_infos[str(im)] = [], []
        for idx, oid in enumerate((1, 2)):
            T = gt_pose(oid, im)
            v = MESHES[oid][0] * 1e-3 @ T[:3, :3].T + T[:3, 3]
            uv = (v[:, :2] / v[:, 2:3]) * [K[0, 0], K[1, 1]] + [K[0, 2], K[1, 2]]
            m = np.zeros((H, W), np.uint8)
            cv2.fillConvexPoly(m, cv2.convexHull(np.round(uv).astype(np.int32)), 255)
            cv2.imwrite(str(sdir / "mask" / f"{im:06d}_{idx:06d}.png"), m)
            if VISIB[oid][im] == 0.0:
                m[:] = 0
            cv2.imwrite(str(sdir / "mask_visib" / f"{im:06d}_{idx:06d}.png"), m)
            depth[m > 0] = int(round(T[2, 3] * 1000))
            gts[str(im)].append({"cam_R_m2c": T[:3, :3].ravel().tolist(), "cam_t_m2c": (T[:3, 3] * 1000).tolist(),
                                 "obj_id": oid})
            n = int((m > 0).sum())
            gt_infos[str(im)].append({"bbox_obj": [0, 0, 1, 1], "bbox_visib": [0, 0, 1, 1], "px_count_all": n,
                                      "px_count_valid": n, "px_count_visib": n, "visib_fract": VISIB[oid][im]})
        # a duplicate instance of obj 1 (far away) in image 2: only the first instance counts
        T = gt_pose(1, im)
        T[:3, 3] = (0.0, 0.0, 3.0)
        if im == 2:
            gts[str(im)].append({"cam_R_m2c": T[:3, :3].ravel().tolist(), "cam_t_m2c": (T[:3, 3] * 1000).tolist(), "obj_id": 1})
            gt_infos[str(im)].append(dict(gt_infos[str(im)][0], visib_fract=1.0))
            cv2.imwrite(str(sdir / "mask_visib" / f"{im:06d}_{2:06d}.png"), np.zeros((H, W), np.uint8))
            cv2.imwrite(str(sdir / "mask" / f"{im:06d}_{2:06d}.png"), np.zeros((H, W), np.uint8))
        rgb = np.full((H, W, 3), colour(im), np.uint8)
        cv2.imwrite(str(sdir / "rgb" / f"{im:06d}.{ext}"), rgb)
        cv2.imwrite(str(sdir / "depth" / f"{im:06d}.png"), depth)
        cams[str(im)] = {"cam_K": K.ravel().tolist(), "depth_scale": 1.0}
    (sdir / "scene_camera.json").write_text(json.dumps(cams))
    (sdir / "scene_gt.json").write_text(json.dumps(gts))
    if with_gt_info:
        (sdir / "scene_gt_info.json").write_text(json.dumps(gt_infos))
    return root


def shifted(T, dx):
    T = T.copy()
    T[0, 3] += dx
    return T


class FakeEstimator:
    """Returns a planned pose per (obj_id, im_id): ground truth, a perturbed pose, or a failure."""

    def __init__(self, plan):
        self.plan = plan
        self.ref_obj = None
        self.references = []  # (obj_id, im_id) handed to set_reference
        self.calls = []

    def set_reference(self, view):
        assert view.T_cam_obj is not None
        obj = 1 if view.T_cam_obj[0, 3] < 0 else 2
        im = decode_im_id(view.rgb)
        np.testing.assert_allclose(view.T_cam_obj, gt_pose(obj, im), atol=1e-6)  # the reference's GT pose
        self.ref_obj = obj
        self.references.append((obj, im))

    def estimate(self, view, *, track=False):
        assert track is False
        assert view.T_cam_obj is None  # no ground truth leaks into a query
        v, u = np.nonzero(view.mask)
        obj = 1 if u.mean() < K[0, 2] else 2
        assert obj == self.ref_obj
        im = decode_im_id(view.rgb)
        self.calls.append((obj, im))
        outcome = self.plan[(obj, im)]
        if outcome == "fail":
            raise EstimationFailure("planned failure")
        T = outcome(gt_pose(obj, im)) if callable(outcome) else gt_pose(obj, im)
        return SimpleNamespace(T_camera_object=T, confidence=0.75, inliers=100, residual_m=0.001,
                               timings_ms={"total": 1.0}, backend="fake")


PLAN = {
    (1, 0): "gt", (1, 2): "gt", (1, 3): lambda T: shifted(T, 0.003), (1, 4): lambda T: shifted(T, 0.03), (1, 5): "fail",
    # obj 2: a 90° turn about the symmetry axis is a hit by ADD-S (a miss by ADD); image 4's mask is empty
    (2, 1): lambda T: T @ np.block([[rot([0, 0, 1], 90), np.zeros((3, 1))], [np.zeros((1, 3)), np.ones((1, 1))]]),
    (2, 2): lambda T: shifted(T, 0.1), (2, 3): "gt", (2, 5): "gt",
}

REQUIRED_KEYS = {"backend", "n_queries", "add_s_01d_recall", "add_s_auc", "median_rot_err_deg", "median_trans_err_mm",
                 "recall_5deg_5cm", "by_rotation_bin", "failures", "median_latency_ms"}


@pytest.fixture(scope="module")
def evaluate():
    from one2any_ros import evaluation as ev

    return ev


@pytest.mark.parametrize("ext", ["png", "jpg"])
def test_protocol_and_numbers(tmp_path, evaluate, ext):
    root = make_dataset(tmp_path / "ds", ext=ext)
    fake = FakeEstimator(PLAN)
    out = tmp_path / "out"
    rep = evaluate.evaluate_dataset(root, backend="fake", out_dir=out, estimator=fake, progress=False)

    assert REQUIRED_KEYS <= set(rep)
    # references: obj 1's first image has visib 0.3, so image 1; obj 2's is image 0
    assert sorted(fake.references) == [(1, 1), (2, 0)]
    assert {(r["obj_id"], r["im_id"]) for r in rep["references"]} == {(1, 1), (2, 0)}
    # every other image is a query; obj 2's empty mask in image 4 never reaches the estimator
    assert sorted(fake.calls) == sorted(k for k in PLAN)
    assert rep["n_queries"] == 10
    assert rep["n_scenes"] == 1
    # hits: obj1 im0, im2, im3 (3 mm < 0.1d); obj2 im1 (ADD-S), im3, im5
    assert rep["add_s_01d_recall"] == pytest.approx(0.6)
    assert rep["add_01d_recall"] == pytest.approx(0.5)  # the symmetric turn is an ADD miss
    assert rep["failures"] == {"count": 2, "by_reason": {"empty_mask": 1, "estimation_failed": 1}}
    assert rep["median_rot_err_deg"] == pytest.approx(0.0, abs=1e-6)
    # translation errors (mm): 0,0,3,30,inf (obj1) and 0,100,0,inf,0 (obj2): median (0 + 3) / 2
    assert rep["median_trans_err_mm"] == pytest.approx(1.5, abs=1e-6)
    assert rep["recall_5deg_5cm"] == pytest.approx(0.7)
    assert rep["median_latency_ms"] is not None and rep["median_latency_ms"] >= 0
    assert 0.0 < rep["add_s_auc"] < 1.0
    assert rep["per_object"]["1"]["add_s_01d_recall"] == pytest.approx(0.6)
    assert rep["per_object"]["2"]["symmetric"] is True and rep["per_object"]["1"]["symmetric"] is False

    # rotation bins (relative to each object's reference): obj1 ref 20°: 20,20,80,110,155; obj2 ref 0°: 20,40,100,130,175
    bins = rep["by_rotation_bin"]
    assert list(bins) == ["0-30", "30-60", "60-90", "90-120", "120-180"]
    assert {k: b["n"] for k, b in bins.items()} == {"0-30": 3, "30-60": 1, "60-90": 1, "90-120": 2, "120-180": 3}
    assert bins["0-30"]["add_s_01d_recall"] == pytest.approx(1.0)
    assert bins["30-60"]["add_s_01d_recall"] == pytest.approx(0.0)
    assert bins["60-90"]["add_s_01d_recall"] == pytest.approx(1.0)
    assert bins["90-120"]["add_s_01d_recall"] == pytest.approx(0.5)
    assert bins["120-180"]["add_s_01d_recall"] == pytest.approx(1 / 3)

    # files
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk == rep
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    keys = {(int(r["obj_id"]), int(r["im_id"])) for r in rows}
    assert len(rows) == 8 and (1, 5) not in keys and (2, 4) not in keys  # failures left out
    r = next(r for r in rows if (int(r["obj_id"]), int(r["im_id"])) == (1, 3))
    np.testing.assert_allclose([float(x) for x in r["t"].split()], gt_pose(1, 3)[:3, 3] * 1000 + [3, 0, 0], atol=1e-3)
    np.testing.assert_allclose(np.array([float(x) for x in r["R"].split()]).reshape(3, 3), gt_pose(1, 3)[:3, :3], atol=1e-6)
    queries = [json.loads(line) for line in (out / "queries.jsonl").read_text().splitlines()]
    assert len(queries) == 10
    assert sum(q["hit"] for q in queries) == 6
    assert (out / "recall_by_bin.png").stat().st_size > 1000

    from one2any_ros.core import metrics

    adds = [np.inf if q["adds_m"] is None else q["adds_m"] for q in queries]
    assert rep["add_s_auc"] == pytest.approx(metrics.auc(adds))
    table = evaluate.format_report_table(rep)
    for key in bins:
        assert key in table
    assert "0.600" in table


def test_reference_is_first_image_without_gt_info(tmp_path, evaluate):
    root = make_dataset(tmp_path / "ds", with_gt_info=False)
    plan = {k: v for k, v in PLAN.items() if k != (1, 0)}  # image 0 is now obj 1's reference...
    plan[(1, 1)] = "gt"  # ...and image 1 a query
    fake = FakeEstimator(plan)
    rep = evaluate.evaluate_dataset(root, out_dir=tmp_path / "out", estimator=fake, progress=False, plot=False)
    assert sorted(fake.references) == [(1, 0), (2, 0)]
    assert rep["n_queries"] == 10
    assert (1, 0) not in fake.calls and (1, 1) in fake.calls
    assert rep["failures"]["by_reason"] == {"empty_mask": 1, "estimation_failed": 1}
    assert not (tmp_path / "out" / "recall_by_bin.png").exists()


def test_max_queries_and_failed_reference(tmp_path, evaluate):
    root = make_dataset(tmp_path / "ds", with_eval_models=True)
    fake = FakeEstimator(PLAN)
    rep = evaluate.evaluate_dataset(root, out_dir=tmp_path / "out", estimator=fake, progress=False, max_queries=4, plot=False)
    assert rep["n_queries"] == 4 and rep["n_queries_available"] == 10
    assert len(fake.calls) + rep["failures"]["count"] == 4

    class RefFails(FakeEstimator):
        def set_reference(self, view):
            super().set_reference(view)
            if self.ref_obj == 2:
                raise EstimationFailure("reference unusable", reason="degenerate_reference")

    rep = evaluate.evaluate_dataset(root, out_dir=tmp_path / "out1", estimator=FakeEstimator(PLAN), progress=False,
                                    min_query_visib=0.1, plot=False)
    assert rep["n_queries"] == 9 and rep["failures"]["by_reason"] == {"estimation_failed": 1}  # obj 2's image 4 left out

    fake = RefFails(PLAN)
    rep = evaluate.evaluate_dataset(root, out_dir=tmp_path / "out2", estimator=fake, progress=False, obj_ids=[2], plot=False)
    assert rep["n_queries"] == 5 and fake.calls == []
    assert rep["failures"] == {"count": 5, "by_reason": {"reference_degenerate_reference": 5}}
    assert rep["add_s_01d_recall"] == 0.0 and rep["median_trans_err_mm"] is None  # infinite -> null
    assert rep["median_rot_err_deg"] == 180.0


def test_reference_selection_rules(evaluate):
    scene = SimpleNamespace(
        scene_id=3, im_ids=[0, 1, 2, 5],
        gt={0: [{"obj_id": 4}], 1: [{"obj_id": 7}, {"obj_id": 4}], 2: [{"obj_id": 4}, {"obj_id": 4}], 5: [{"obj_id": 4}]},
        gt_info={0: [{"visib_fract": 0.49}], 1: [{"visib_fract": 0.1}, {"visib_fract": 0.2}],
                 2: [{"visib_fract": 0.5}, {"visib_fract": 1.0}], 5: [{"visib_fract": 0.9}]},
    )
    inst = evaluate.first_instances(scene)
    assert inst == {4: [(0, 0), (1, 1), (2, 0), (5, 0)], 7: [(1, 0)]}
    assert evaluate.select_reference(scene, inst[4]) == (2, 0)  # visib_fract >= 0.5 (inclusive)
    assert evaluate.select_reference(scene, inst[7]) is None
    plans, skipped = evaluate.plan_scene(scene)
    assert [(p.obj_id, p.reference, p.queries) for p in plans] == [(4, (2, 0), [(0, 0), (1, 1), (5, 0)])]
    assert skipped[0]["obj_id"] == 7
    scene.gt_info = None
    assert evaluate.select_reference(scene, inst[7]) == (1, 0)
    assert evaluate.select_reference(scene, inst[4]) == (0, 0)


@pytest.mark.parametrize("deg,key", [(0, "0-30"), (29.99, "0-30"), (30, "30-60"), (89.9, "60-90"), (90, "90-120"),
                                     (120, "120-180"), (180, "120-180")])
def test_rotation_bin_edges(evaluate, deg, key):
    assert evaluate.rotation_bin(deg) == key
