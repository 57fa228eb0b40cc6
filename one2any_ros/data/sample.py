"""The bundled sample: a tiny BOP dataset of one unseen TEST object on a turntable.

One scene, 10 frames at 640x480: a procedural test-split object (never trained on; asymmetric, textured)
rests on a textured table beside a static box and ball; the camera (0.5 m away, 35° above the
table) is still and the object turns about the
table's normal by 0..60° in equal steps, so frame k differs from the reference (frame 0) by k·60/9°
and from frame k-1 by 6.7° (smooth enough to track). RGB is JPEG (BOP allows it), depth uint16 mm.

Regenerate (deterministic) with ``python -m one2any_ros.data.sample [OUT_DIR]``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from one2any_ros.data import bop

if TYPE_CHECKING:
    from one2any_ros.data.objects import ObjectSpec
    from one2any_ros.data.render import BackgroundSpec, Renderer

SAMPLE_DIR = Path(__file__).resolve().parent / "sample"
SAMPLE_SCENE_ID = 1
SAMPLE_OBJ_ID = 1  # BOP id inside the sample
SAMPLE_FRAMES = 10
SAMPLE_MAX_ROTATION_DEG = 60.0
_SHAPES = ("mug", "box_handle", "toy")  # clearly asymmetric geometry, on top of an asymmetric texture


def sample_object_id() -> int:
    """The test-split object id of the sample: the first procedural test id (seed 0) of a clearly
    asymmetric shape with a 12-22 cm diameter."""
    from one2any_ros.data.objects import make_object, split_ids

    for oid in split_ids("test", 400, seed=0):
        o = make_object(oid)
        if not o.symmetric and o.name in _SHAPES and 0.12 <= o.diameter <= 0.22:
            return oid
    raise RuntimeError("no suitable sample object found")  # pragma: no cover


def _look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """T_world_cam of an OpenCV camera at ``eye`` looking at ``target``, world z up."""
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, :3] = np.stack([x, y, z], 1)
    T[:3, 3] = eye
    return T


def make_sample(
    out_dir: str | Path = SAMPLE_DIR,
    *,
    frames: int = SAMPLE_FRAMES,
    max_rotation_deg: float = SAMPLE_MAX_ROTATION_DEG,
    seed: int = 0,
) -> Path:
    """Write the sample dataset to ``out_dir`` (deterministic). Returns the root."""
    from one2any_ros.data.objects import make_object
    from one2any_ros.data.render import DEFAULT_HEIGHT, DEFAULT_K, DEFAULT_WIDTH, Renderer

    out = Path(out_dir)
    obj = make_object(sample_object_id(), symmetric=False)
    bop.write_models(out, [obj], obj_ids=[SAMPLE_OBJ_ID])
    depth_scale = 1.0
    bop.write_camera_json(out, DEFAULT_K, DEFAULT_WIDTH, DEFAULT_HEIGHT, depth_scale)
    _write_readme(out, obj, frames, max_rotation_deg)
    T_cam_world = _camera_pose(obj)
    zmin = float(obj.vertices[:, 2].min())
    light = _sample_light(T_cam_world)
    rng = np.random.default_rng([seed, 0x5A3])
    with Renderer(seed=seed) as r:
        bg = _table_background(r, T_cam_world)
        with bop.BopSceneWriter(
            out, SAMPLE_SCENE_ID, rgb_ext=".jpg", jpg_quality=90, depth_scale=depth_scale, png_compression=9
        ) as w:
            for k in range(frames):
                T = _turntable_pose(T_cam_world, zmin, k, frames, max_rotation_deg)
                view = r.render(
                    obj, T, DEFAULT_K, DEFAULT_WIDTH, DEFAULT_HEIGHT, background=bg, light=light, rng=rng
                )
                gt = {"obj_id": SAMPLE_OBJ_ID, "T_cam_obj": T, "mask_visib": view["mask"], "mask": view["mask_full"]}
                w.add(k, view["rgb"], view["depth"], DEFAULT_K, [gt])
    return out


def _write_readme(out: Path, obj: ObjectSpec, frames: int, max_rotation_deg: float) -> None:
    """The sample's README.md: what the dataset shows and how to regenerate and load it."""
    (out / "README.md").write_text(
        "# one2any sample (BOP format)\n\n"
        f"One scene (test/000001), {frames} frames, 640x480: the unseen test-split procedural object "
        f"{obj.obj_id} ({obj.name}, diameter {obj.diameter * 1000:.0f} mm, BOP obj_id {SAMPLE_OBJ_ID}) "
        "turning "
        f"0-{max_rotation_deg:g} deg on a turntable in front of a still camera. Frame 0 is the reference.\n"
        "rgb/ JPEG, depth/ uint16 mm (depth_scale 1.0) with simulated sensor noise, "
        "mask_visib/ ground truth.\n\n"
        "Regenerate (deterministic): `python -m one2any_ros.data.sample [OUT_DIR]`; load with "
        "`one2any_ros.data.sample.load_sample_sequence()`.\n"
    )


def _camera_pose(obj: ObjectSpec) -> np.ndarray:
    """T_cam_world of the still camera. World: table z = 0, the object resting at the origin; the camera
    0.5 m from the object's mid-height, 35° above the table."""
    zmin = float(obj.vertices[:, 2].min())
    zmax = float(obj.vertices[:, 2].max())
    elev, dist = np.radians(35.0), 0.5
    target = np.array([0.0, 0.0, 0.5 * (zmax - zmin)])
    T_world_cam = _look_at(target + dist * np.array([0.0, -np.cos(elev), np.sin(elev)]), target)
    return np.linalg.inv(T_world_cam)


def _sample_light(T_cam_world: np.ndarray) -> dict:
    """A soft light fixed in the world (given in the camera frame), no shadows: the same on every frame."""
    return {
        "direction": T_cam_world[:3, :3] @ np.array([0.4, -0.5, 1.0]) / np.linalg.norm([0.4, -0.5, 1.0]),
        "color": [1.0, 0.97, 0.92],
        "ambient": 0.55,
        "diffuse": 0.55,
        "specular": 0.15,
        "shadow": False,
    }


def _table_background(r: Renderer, T_cam_world: np.ndarray) -> BackgroundSpec:
    """The textured table plane (z = 0) with a static box and ball on it, in the camera frame."""
    from one2any_ros.data.render import BackgroundSpec, axis_angle_to_matrix

    n_cam = T_cam_world[:3, :3] @ np.array([0.0, 0.0, 1.0])
    o_cam = T_cam_world[:3, 3].copy()
    bg = BackgroundSpec(
        normal=n_cam,
        offset=float(n_cam @ o_cam),
        center=o_cam,
        texture=3,
        texture_size_m=1.2,
        tint=(0.95, 0.9, 0.85),
        far_color=(90, 95, 105),
    )
    for idx, (x, y) in ((1, (0.2, 0.2)), (2, (-0.22, 0.16))):  # a static box and ball on the table
        he = r._distractors[idx][1]
        Tw = np.eye(4)
        Tw[:3, :3] = axis_angle_to_matrix([0, 0, 1], 0.4 + idx)
        Tw[:3, 3] = [x, y, he[2]]
        bg.distractors.append((idx, T_cam_world @ Tw, 5 + idx))
    return bg


def _turntable_pose(T_cam_world: np.ndarray, zmin: float, k: int, frames: int, max_rotation_deg: float) -> np.ndarray:
    """T_cam_obj of frame ``k``: the object on the table turned about its normal, 0..max_rotation_deg in equal
    steps from a start yaw of -50° (the handle/side parts half turned towards the camera)."""
    from one2any_ros.data.render import axis_angle_to_matrix

    yaw0 = np.radians(-50.0)
    yaw = yaw0 + np.radians(max_rotation_deg) * k / max(frames - 1, 1)
    T_world_obj = np.eye(4)
    T_world_obj[:3, :3] = axis_angle_to_matrix([0, 0, 1], yaw)
    T_world_obj[:3, 3] = [0.0, 0.0, -zmin]
    return T_cam_world @ T_world_obj


def load_sample_sequence(root: str | Path = SAMPLE_DIR) -> dict:
    """The sample as {'frames': list of dicts as :func:`bop.load_image` in order (frame 0 is the
    reference; each has 'T_cam_obj' ground truth), 'model_points' (N,3) m, 'diameter_m', 'symmetric',
    'model_info' (the models_info.json entry, mm), 'obj_id' (BOP id), 'root'}."""
    root = Path(root)
    if not (root / "test").is_dir():
        raise FileNotFoundError(
            f"the sample dataset is missing at {root}: run python -m one2any_ros.data.sample"
        )
    scene = bop.load_scene(root, "test", SAMPLE_SCENE_ID)
    frames = [bop.load_image(scene, i, 0) for i in scene.im_ids]
    info = bop.load_models_info(root)[SAMPLE_OBJ_ID]
    return {
        "frames": frames,
        "model_points": bop.load_model_points(root, SAMPLE_OBJ_ID),
        "diameter_m": float(info["diameter"]) / 1000.0,
        "symmetric": bop.is_symmetric(info),
        "model_info": info,
        "obj_id": SAMPLE_OBJ_ID,
        "root": root,
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m one2any_ros.data.sample [OUT]``: regenerate the bundled sample (a maintainer's tool)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m one2any_ros.data.sample",
                                description="Regenerate the bundled sample (BOP format, one object never trained on).")
    p.add_argument("out", nargs="?", type=Path, default=SAMPLE_DIR, help=f"output folder (default: {SAMPLE_DIR})")
    print(make_sample(p.parse_args(argv).out))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
