"""``make demo`` / ``one2any demo``: the main job on the bundled sample, one object never trained on.

Reference = frame 0 (with its ground-truth pose, so errors are in the model's frame); every later frame
is estimated in tracking mode (global search on the first frame and after a loss). Prints a per-frame
table, writes ``summary.json`` and overlay PNGs (estimate | ground truth).

``multi_object_scene`` is the scene of ``one2any demo --objects N`` and ``one2any bench --ros --objects N``:
N held-out objects side by side in front of a textured wall, each turning, one label image per frame.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .data.objects import ObjectSpec
from .errors import One2AnyError
from .estimator import PoseEstimator
from .geometry import rotation_angle_deg, transform_points
from .metrics import add, add_s
from .protocol import is_hit
from .reference import make_view
from .visualize import draw_pose, save_rgb, side_by_side


def run_demo(*, backend: str = "auto", out_dir: Path = Path("outputs/demo"), device: str = "auto") -> int:
    from .data.sample import load_sample_sequence

    seq = load_sample_sequence()
    frames, pts, diameter, symmetric = seq["frames"], seq["model_points"], seq["diameter_m"], seq["symmetric"]
    out_dir.mkdir(parents=True, exist_ok=True)
    est = PoseEstimator(backend, device=device)
    f0 = frames[0]
    ref = est.set_reference(make_view(f0["rgb"], f0["depth"], f0["mask"], f0["K"], T_cam_obj=f0["T_cam_obj"]))
    print(f"backend {est.backend.name}: reference from frame 0 ({ref.num_points} points, radius {ref.scale * 1000:.0f} mm)")
    print(f"{'frame':>5} {'rot_err_deg':>11} {'trans_err_mm':>12} {'add_mm':>7} {'inliers':>7} {'conf':>5} {'mode':>6} {'ms':>7}")
    rows = []
    for i, f in enumerate(frames[1:], start=1):
        view = make_view(f["rgb"], f["depth"], f["mask"], f["K"])
        T_gt = f["T_cam_obj"]
        try:
            r = est.estimate(view, track=True)
        except One2AnyError as e:
            print(f"{i:>5}  failed: {e.reason}: {e}")
            rows.append({"frame": i, "ok": False, "reason": e.reason})
            continue
        T = r.T_camera_object
        rot = float(rotation_angle_deg(T[:3, :3].T @ T_gt[:3, :3]))
        tr = float(np.linalg.norm(T[:3, 3] - T_gt[:3, 3]) * 1000)
        err = (add_s if symmetric else add)(T, T_gt, pts)
        rows.append({"frame": i, "ok": True, "rot_err_deg": rot, "trans_err_mm": tr, "add_mm": err * 1000,
                     "add_01d": is_hit(err, diameter), "inliers": r.inliers, "confidence": r.confidence,
                     "mode": r.mode, "ms": r.timings_ms["total"]})
        print(f"{i:>5} {rot:>11.2f} {tr:>12.1f} {err * 1000:>7.1f} {r.inliers:>7d} {r.confidence:>5.2f} {r.mode:>6} {r.timings_ms['total']:>7.1f}")
        cloud = transform_points(r.T_camera_C, ref.points_C)
        gt_cloud = transform_points(T_gt @ np.linalg.inv(ref.T_C_O), ref.points_C)
        img = side_by_side(
            draw_pose(view.rgb, view.K, T, axis_len=ref.scale, cloud_cam=cloud, label=f"frame {i} estimate ({rot:.1f} deg, {tr:.0f} mm)"),
            draw_pose(view.rgb, view.K, T_gt, axis_len=ref.scale, cloud_cam=gt_cloud, cloud_colour=(0, 220, 255), label="ground truth"))
        save_rgb(out_dir / f"overlay_{i:03d}.png", img)
    ok = [r for r in rows if r["ok"]]
    summary = {
        "backend": est.backend.name, "n_frames": len(rows), "n_ok": len(ok),
        "add_01d_recall": sum(r["add_01d"] for r in ok) / max(len(rows), 1),
        "median_rot_err_deg": float(np.median([r["rot_err_deg"] for r in ok])) if ok else None,
        "median_trans_err_mm": float(np.median([r["trans_err_mm"] for r in ok])) if ok else None,
        "median_ms": float(np.median([r["ms"] for r in ok])) if ok else None,
        "frames": rows,
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"ADD(-S)@0.1d {summary['add_01d_recall']:.2f}  median rot {summary['median_rot_err_deg'] or float('nan'):.2f} deg  "
          f"median trans {summary['median_trans_err_mm'] or float('nan'):.1f} mm  -> {out_dir}/summary.json, overlay_*.png")
    return 0


SCENE_FX_640 = 600.0  # the bundled sample's focal length at 640 px wide: the same camera, scaled to the image
WALL_GAP_M = 0.25  # how far the wall stands behind the objects' backs
SCENE_OBJECTS = 4  # the scene's objects are drawn from this many, so fewer objects are a subset of more
SCENE_SEED = 5  # four objects of similar size (diameters 15-19 cm): per-object costs comparable


def scene_K(width: int, height: int) -> np.ndarray:
    """The sample camera's intrinsics scaled to ``width`` (square pixels, centred principal point)."""
    f = SCENE_FX_640 * width / 640.0
    return np.array([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])


def _row_layout(objects: list[ObjectSpec], K: np.ndarray, width: int, height: int) -> list[np.ndarray]:
    """Each object's centre (camera frame, m) in one row, left to right, a gap of a fifth of the largest diameter
    between neighbours, as near as the whole row (and the tallest object) still fits the image with a margin."""
    diam = np.array([o.diameter for o in objects])
    gap = 0.2 * diam.max()
    row = diam.sum() + gap * (len(objects) - 1)
    z = max(0.45, 1.2 * row * K[0, 0] / width, 1.3 * diam.max() * K[1, 1] / height)
    x = -row / 2 + np.cumsum(diam + gap) - gap - diam / 2
    return [np.array([xi, 0.0, z]) for xi in x]


def _turning_poses(objects: list[ObjectSpec], centres: list[np.ndarray], n_frames: int, step_deg: float,
                   rng: np.random.Generator) -> list[list[np.ndarray]]:
    """poses[f][k]: object k from a random start, turned about the camera's vertical axis through its bounding-box
    centre by ``step_deg`` per frame (neighbours the other way), so it stays where it is and shows new sides."""
    from .data.render import axis_angle_to_matrix, random_rotation

    starts = [random_rotation(rng) for _ in objects]
    poses = []
    for f in range(n_frames):
        frame = []
        for k, (obj, c, R0) in enumerate(zip(objects, centres, starts)):
            R = axis_angle_to_matrix(np.array([0.0, 1.0, 0.0]), np.radians((-1) ** k * step_deg * f)) @ R0
            T = np.eye(4)
            T[:3, :3], T[:3, 3] = R, c - R @ (obj.bbox_min + obj.extents / 2)
            frame.append(T)
        poses.append(frame)
    return poses


def _add_wall(frames: list[dict], z: float, rng: np.random.Generator) -> None:
    """A textured wall facing the camera at depth ``z`` behind the objects (label 0): realistic context for the
    overlays and for the verifier's free-space test, without a second renderer pass."""
    import cv2

    from .data.objects import random_texture

    h, w = frames[0]["depth"].shape
    wall = (0.55 * cv2.resize(random_texture(rng, 256), (w, h), interpolation=cv2.INTER_LINEAR)).astype(np.uint8)
    for f in frames:
        bg = f["labels"] == 0
        f["rgb"][bg], f["depth"][bg] = wall[bg], np.float32(z)


def multi_object_scene(n_objects: int, n_frames: int, *, width: int = 640, height: int = 480, step_deg: float = 7.0,
                       seed: int = SCENE_SEED, slots: int | None = None,
                       wall: bool = True) -> tuple[list[ObjectSpec], list[dict]]:
    """The first ``n_objects`` of SCENE_OBJECTS shape-asymmetric TEST-split objects (never trained or tuned on) side
    by side, each turning ``step_deg`` per frame, rendered into ``n_frames`` frames: (objects, frames as
    ``data.multi_scene.render_multi_object_frames`` gives them: rgb, depth m, labels (k+1 = object k), K,
    T_cam_obj[k]). ``slots``: lay out the row for this many objects (default ``n_objects``) and fill the first
    ones, so scenes with 1, 2 and 4 objects show the same objects at the same size (the benchmark compares
    their costs). Deterministic in ``seed``."""
    from .data.multi_scene import render_multi_object_frames
    from .data.objects import make_object, split_ids

    slots = slots or n_objects
    if not 1 <= n_objects <= slots <= SCENE_OBJECTS:
        raise ValueError(f"need 1 <= n_objects <= slots <= {SCENE_OBJECTS}, got {n_objects} and {slots}")
    rng = np.random.default_rng([seed, 17])
    pool = [make_object(i) for i in split_ids("test", SCENE_OBJECTS, seed=seed, family="shape_asymmetric")[:slots]]
    K = scene_K(width, height)
    centres = _row_layout(pool, K, width, height)
    poses = _turning_poses(pool, centres, n_frames, step_deg, rng)
    objects = pool[:n_objects]
    frames = render_multi_object_frames(objects, [p[:n_objects] for p in poses], K, width, height, seed=seed)
    if wall:
        _add_wall(frames, centres[0][2] + max(o.diameter for o in pool) / 2 + WALL_GAP_M, rng)
    return objects, frames
