"""Render a one-reference BOP dataset (``one2any render``; docs/architecture.md, BOP format).

One object per scene; frame 0 is the reference (visib_fract >= 0.5); the rotation differences of frames
1..M-1 to frame 0 are stratified uniformly over [0, max_rotation_deg] (frame k falls in the k-th of M-1
equal bins, so the bins are covered evenly and the angle grows with the frame index); each frame gets a
new random position (distance ``distance_range``), background, light and depth noise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from one2any_ros.data import bop
from one2any_ros.data.objects import ObjectSpec, make_object, split_ids
from one2any_ros.data.render import (
    DEFAULT_HEIGHT,
    DEFAULT_K,
    DEFAULT_WIDTH,
    Renderer,
    rotation_angle,
    rotation_at_angle,
    sample_pose,
)

__all__ = ["DEFAULT_K", "DEFAULT_WIDTH", "DEFAULT_HEIGHT", "render_dataset", "rotation_schedule"]

MIN_REFERENCE_VISIB = 0.5
MAX_TRIES = 50


def rotation_schedule(frames: int, max_rotation_deg: float, rng: np.random.Generator) -> np.ndarray:
    """(frames,) rotation differences to frame 0 in degrees: 0 for frame 0, then one stratified uniform
    sample per bin of [0, max_rotation_deg] split in frames-1 equal bins (increasing)."""
    if frames < 1:
        raise ValueError("frames must be >= 1")
    n = frames - 1
    if n == 0:
        return np.zeros(1)
    return np.concatenate([[0.0], (np.arange(n) + rng.random(n)) / n * float(max_rotation_deg)])


def _min_pixels(width: int, height: int) -> int:
    return max(30, int(0.0015 * width * height))  # 460 px at 640x480


def render_dataset(
    out_dir: str | Path,
    *,
    objects: str | list[int] = "test",
    scenes: int = 10,
    frames: int = 8,
    max_rotation_deg: float = 120.0,
    seed: int = 0,
    width: int = DEFAULT_WIDTH,
    height: int = DEFAULT_HEIGHT,
    K: np.ndarray | None = None,
    progress: bool = True,
    distance_range: tuple[float, float] = (0.4, 1.2),
    occluder_prob: float = 0.0,
    include_real: bool = False,
    rgb_ext: str = ".png",
    depth_scale: float = 0.1,
    split: str = "test",
    family: str | None = None,
) -> Path:
    """Write a BOP dataset to ``out_dir``: models/ (+ models_eval/), ``<split>/<scene:06d>/`` for scenes
    1..N (scene k holds BOP object k), camera.json, test_targets_bop19.json and one2any_render.json
    (the arguments and each frame's rotation difference to frame 0).

    ``objects``: "train" | "val" | "test" (ids drawn deterministically from ``seed``) or a list of object
    ids (one scene each; ``scenes`` is then ignored). ``include_real``: with "test", the pybullet_data
    assets come first. ``family``: only objects of that family (``objects.FAMILIES``, e.g. "texture_only":
    symmetric shapes whose faces carry different textures). ``occluder_prob``: chance that a query frame gets
    1-2 occluding boxes.
    Returns the dataset root."""
    out = Path(out_dir)
    K = DEFAULT_K if K is None else np.asarray(K, np.float64)
    ids = _object_ids(objects, scenes, seed=seed, include_real=include_real, family=family)
    objs = [make_object(i) for i in ids]
    bop.write_models(out, objs, obj_ids=list(range(1, len(objs) + 1)))
    bop.write_camera_json(out, K, width, height, depth_scale)
    meta = {
        "generator": "one2any_ros.data.generate.render_dataset",
        "objects": objects if isinstance(objects, str) else ids,
        "family": family,
        "object_ids": ids,
        "frames": frames,
        "max_rotation_deg": max_rotation_deg,
        "seed": seed,
        "width": width,
        "height": height,
        "K": K.tolist(),
        "distance_range": list(distance_range),
        "occluder_prob": occluder_prob,
        "split": split,
        "scenes": {},
    }
    targets = _render_scenes(out, objs, meta["scenes"], K, width, height, frames=frames,
                             max_rotation_deg=max_rotation_deg, seed=seed, distance_range=distance_range,
                             occluder_prob=occluder_prob, split=split, rgb_ext=rgb_ext, depth_scale=depth_scale,
                             progress=progress)
    (out / "test_targets_bop19.json").write_text(json.dumps(targets))
    (out / "one2any_render.json").write_text(json.dumps(meta, indent=1))
    return out


def _render_scenes(out: Path, objs: list, scenes_meta: dict, K: np.ndarray, width: int, height: int, *,
                   frames: int, max_rotation_deg: float, seed: int, distance_range: tuple[float, float],
                   occluder_prob: float, split: str, rgb_ext: str, depth_scale: float, progress: bool) -> list[dict]:
    """Scene k+1 holds ``objs[k]``, rendered by one pybullet renderer seeded ``seed``; fills ``scenes_meta``
    (the object and each frame's rotation from frame 0) and returns the BOP test targets."""
    targets: list[dict] = []
    bar = _progress_bar(len(objs) * frames) if progress else None
    with Renderer(seed=seed) as r:
        for k, obj in enumerate(objs):
            scene_id = k + 1
            scene_targets, rot_meta = _render_scene(
                r, out, scene_id, obj, K, width, height, frames=frames, max_rotation_deg=max_rotation_deg,
                seed=seed, distance_range=distance_range, occluder_prob=occluder_prob, split=split,
                rgb_ext=rgb_ext, depth_scale=depth_scale, bar=bar,
            )
            targets.extend(scene_targets)
            scenes_meta[str(scene_id)] = {"one2any_id": obj.obj_id, "name": obj.name, "rotation_deg": rot_meta}
    if bar is not None:
        bar.close()
    return targets


def _object_ids(
    objects: str | list[int], scenes: int, *, seed: int, include_real: bool, family: str | None
) -> list[int]:
    """The one2any ids of the dataset's objects: drawn from a split by ``seed``, or the given list."""
    if isinstance(objects, str):
        return split_ids(objects, scenes, seed=seed, include_real=include_real, family=family)
    return [int(i) for i in objects]


def _progress_bar(total: int) -> Any:
    """A tqdm bar over all images (tqdm imported only when a bar is asked for)."""
    from tqdm import tqdm

    return tqdm(total=total, desc="render", unit="img")


def _render_scene(
    r: Renderer,
    out: Path,
    scene_id: int,
    obj: ObjectSpec,
    K: np.ndarray,
    width: int,
    height: int,
    *,
    frames: int,
    max_rotation_deg: float,
    seed: int,
    distance_range: tuple[float, float],
    occluder_prob: float,
    split: str,
    rgb_ext: str,
    depth_scale: float,
    bar: Any,
) -> tuple[list[dict], list[float]]:
    """Render and write one scene (frame 0 the reference, the rest on the rotation schedule from it).
    Returns its test targets and each frame's rotation difference to frame 0 (deg)."""
    rng = np.random.default_rng([seed, scene_id, 0x5CE])
    angles = rotation_schedule(frames, max_rotation_deg, rng)
    targets = []
    rot_meta = []
    R0 = None
    with bop.BopSceneWriter(out, scene_id, split=split, rgb_ext=rgb_ext, depth_scale=depth_scale) as w:
        for im_id, ang in enumerate(angles):
            view, T = _render_frame(
                r,
                obj,
                K,
                width,
                height,
                rng,
                R0=R0,
                angle_deg=float(ang),
                distance_range=distance_range,
                occluders=_occluder_count(im_id, occluder_prob, rng),
                min_visib=MIN_REFERENCE_VISIB if im_id == 0 else 0.1,
            )
            if R0 is None:
                R0 = T[:3, :3].copy()
            gt = {"obj_id": scene_id, "T_cam_obj": T, "mask_visib": view["mask"], "mask": view["mask_full"]}
            w.add(im_id, view["rgb"], view["depth"], K, [gt])
            rot_meta.append(round(float(np.degrees(rotation_angle(R0, T[:3, :3]))), 4))
            targets.append({"im_id": im_id, "inst_count": 1, "obj_id": scene_id, "scene_id": scene_id})
            if bar is not None:
                bar.update(1)
    return targets, rot_meta


def _occluder_count(im_id: int, occluder_prob: float, rng: np.random.Generator) -> int:
    """Occluding boxes for a frame: none for the reference, else 1-2 with ``occluder_prob`` (draws as before)."""
    if im_id == 0 or rng.random() >= occluder_prob:
        return 0
    return int(rng.integers(1, 3))


def _render_frame(
    r: Renderer,
    obj: ObjectSpec,
    K: np.ndarray,
    width: int,
    height: int,
    rng: np.random.Generator,
    *,
    R0: np.ndarray | None,
    angle_deg: float,
    distance_range: tuple[float, float],
    occluders: int,
    min_visib: float,
) -> tuple[dict, np.ndarray]:
    """Render one frame whose rotation is ``angle_deg`` from R0 (random when R0 is None), retrying the
    position (and, for the reference, the rotation) until enough of the object is visible."""
    best = None
    for attempt in range(MAX_TRIES):
        R = None if R0 is None else rotation_at_angle(R0, np.radians(angle_deg), rng)
        T = sample_pose(
            rng,
            K=K,
            width=width,
            height=height,
            distance_range=distance_range,
            radius=0.5 * obj.diameter,
            R=R,
        )
        view = r.render(obj, T, K, width, height, occluders=occluders, full_mask=True, rng=rng)
        n = int(view["mask"].sum())
        ok = view.get("visib_fract", 1.0) >= min_visib and n >= _min_pixels(width, height)
        if ok:
            return view, T
        if best is None or n > int(best[0]["mask"].sum()):
            best = (view, T)
        if attempt > MAX_TRIES // 2:
            occluders = 0
    assert best is not None
    return best
