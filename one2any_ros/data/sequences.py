"""Rendered tracking sequences in BOP format (issue 26): what ``one2any eval --sequence`` plays in frame order.

Each scene: two objects of ``objects``' split side by side (one shape-asymmetric, one texture-only), in front of a
textured wall, over ``frames`` images at 320x240 with sensor noise. They move the way a workcell moves them:

- each turns about its own random axis, back and forth, slowly for the first half (``slow_deg`` a frame) and fast for
  the second (``fast_deg``), and drifts a few millimetres a frame;
- an occluder (a third object, not tracked) passes in front of the first object, over a sixth of the sequence from a
  third of the way in;
- the second object leaves the view from two thirds of the way in for ``exit_frames`` frames and comes back where it
  left.

Image 0 is where both objects are fully seen (the reference). An instance is written only on the images where the
object shows (``mask_visib`` not empty): an image without it is a frame where no pose is right. No ROS here.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from one2any_ros.data import bop
from one2any_ros.data.multi_scene import _add_wall, pose_from_rotvec, render_multi_object_frames
from one2any_ros.data.objects import make_object, split_ids

FAMILIES = ("shape_asymmetric", "texture_only")
K_320 = np.array([[280.0, 0.0, 159.5], [0.0, 280.0, 119.5], [0.0, 0.0, 1.0]])
WIDTH, HEIGHT = 320, 240


def sequence_poses(n_frames: int, rng: np.random.Generator, objs: list, *, slow_deg: float, fast_deg: float,
                   exit_frames: int) -> list[list[np.ndarray]]:
    """poses[f] = [object 1, object 2, occluder] as the module docstring says."""
    from one2any_ros.data.render import axis_angle_to_matrix

    starts = [pose_from_rotvec(rng.uniform(-180, 180, 3), [-0.09, 0.0, 0.55]),
              pose_from_rotvec(rng.uniform(-180, 180, 3), [0.09, 0.0, 0.58])]
    axes = [a / np.linalg.norm(a) for a in rng.normal(size=(2, 3))]
    drift = [v / np.linalg.norm(v) * 0.002 for v in rng.normal(size=(2, 3))]
    occ_from, occ_len = n_frames // 3, max(n_frames // 6, 5)
    exit_from = 2 * n_frames // 3
    poses, angle = [], 0.0
    for f in range(n_frames):
        step = slow_deg if f < n_frames // 2 else fast_deg
        swing = (f // 8) % 2  # eight frames one way, eight back
        angle += step if swing == 0 else -step
        k = 8 - abs(f % 16 - 8)  # drift there and back as well
        frame = []
        for i, (T0, ax, v) in enumerate(zip(starts, axes, drift)):
            centre = T0[:3, :3] @ (objs[i].bbox_min + objs[i].extents / 2) + T0[:3, 3]
            R = axis_angle_to_matrix(ax, np.radians(angle))
            T = np.eye(4)
            T[:3, :3] = R @ T0[:3, :3]
            T[:3, 3] = R @ (T0[:3, 3] - centre) + centre + k * v
            if i == 1 and exit_from <= f < exit_from + exit_frames:
                T[:3, 3] += np.array([1.0, 0.0, 0.0])  # out of the image
            frame.append(T)
        # the occluder crosses in front of object 1 (nearer the camera), from the left edge to the right
        u = (f - occ_from) / max(occ_len - 1, 1)
        x = -0.26 + 0.3 * u if 0 <= u <= 1 else 5.0  # far away when not passing
        frame.append(pose_from_rotvec([20, 40, 0], [x, 0.0, 0.38]))
        poses.append(frame)
    return poses


def write_sequence_dataset(out_dir: str | Path, *, scenes: int = 4, frames: int = 60, objects: str = "val",
                           seed: int = 0, slow_deg: float = 3.0, fast_deg: float = 8.0, exit_frames: int = 6,
                           split: str = "test", progress: bool = True) -> Path:
    """Write ``scenes`` sequences of ``frames`` images to ``out_dir`` (BOP: models/, ``<split>/<scene>/``,
    camera.json, one2any_sequences.json with the arguments and each scene's objects). Returns the root."""
    out = Path(out_dir)
    rng = np.random.default_rng([seed, 2026])
    ids = {f: split_ids(objects, 2 * scenes + 1, seed=seed, family=f) for f in FAMILIES}
    occluder_ids = split_ids(objects, scenes + 2, seed=seed + 1, family="shape_asymmetric")
    scene_objs = [[make_object(ids[f][s % len(ids[f])]) for f in FAMILIES] for s in range(scenes)]
    tracked = {o.obj_id: o for objs in scene_objs for o in objs}
    bop_id = {one2any_id: k + 1 for k, one2any_id in enumerate(sorted(tracked))}
    bop.write_models(out, [tracked[i] for i in sorted(tracked)], obj_ids=[bop_id[i] for i in sorted(tracked)])
    bop.write_camera_json(out, K_320, WIDTH, HEIGHT, 0.1)
    meta = {"generator": "one2any_ros.data.sequences.write_sequence_dataset", "objects": objects, "seed": seed,
            "frames": frames, "slow_deg": slow_deg, "fast_deg": fast_deg, "exit_frames": exit_frames, "scenes": {}}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=scenes, desc="render sequences", unit="scene")
    for s, objs in enumerate(scene_objs):
        occluder = make_object(occluder_ids[(s + 2) % len(occluder_ids)])
        poses = sequence_poses(frames, rng, objs, slow_deg=slow_deg, fast_deg=fast_deg, exit_frames=exit_frames)
        rendered = render_multi_object_frames(objs + [occluder], poses, K_320, WIDTH, HEIGHT, seed=seed + s,
                                              depth_noise=True)
        _add_wall(rendered, 0.55 + max(o.diameter for o in objs) / 2 + 0.25, rng)
        with bop.BopSceneWriter(out, s + 1, split=split, depth_scale=0.1) as w:
            for im_id, f in enumerate(rendered):
                instances = [{"obj_id": bop_id[o.obj_id], "T_cam_obj": f["T_cam_obj"][k], "mask_visib": f["labels"] == k + 1,
                              "mask": f["masks_full"][k]}
                             for k, o in enumerate(objs) if (f["labels"] == k + 1).any()]
                w.add(im_id, f["rgb"], f["depth"], f["K"], instances)
        meta["scenes"][str(s + 1)] = {"objects": [{"bop_id": bop_id[o.obj_id], "one2any_id": o.obj_id, "name": o.name}
                                                  for o in objs], "occluder": occluder.obj_id}
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    (out / "one2any_sequences.json").write_text(json.dumps(meta, indent=1))
    return out
