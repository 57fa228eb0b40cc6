"""Several objects in one camera's frames, with a label image (issue 17): each object rendered alone by the same
camera and z-composited (the nearest surface wins a pixel), so every frame carries one RGB-D image and a mono16
label image in which object k (1-based) owns its visible pixels - what one segmenter gives the node.

The renderer draws one object per call (data/render.py); compositing is exact for the geometry (one camera, one
depth buffer); the objects do not shade each other.
"""
from __future__ import annotations

import numpy as np

from .objects import ObjectSpec


def render_multi_object_frames(objects: list[ObjectSpec], poses: list[list[np.ndarray]], K: np.ndarray, width: int,
                               height: int, *, seed: int = 0, depth_noise: bool = False) -> list[dict]:
    """``poses[f][k]``: object k's (4,4) pose in the camera at frame f (metres). Returns per frame {rgb (H,W,3)
    uint8, depth (H,W) float32 m (0 = nothing), labels (H,W) uint16 (k+1 = object k, 0 = background), K,
    T_cam_obj: list of each object's pose}."""
    from .render import Renderer

    frames = []
    with Renderer(seed=seed) as r:
        for frame_poses in poses:
            rgb = np.zeros((height, width, 3), np.uint8)
            depth = np.zeros((height, width), np.float32)
            labels = np.zeros((height, width), np.uint16)
            for label, (obj, T) in enumerate(zip(objects, frame_poses), start=1):
                out = r.render(obj, T, K, width, height, background="none", depth_noise=depth_noise)
                d = np.where(out["mask"], out["depth"], np.inf)
                nearer = out["mask"] & ((depth == 0) | (d < depth))
                rgb[nearer], depth[nearer], labels[nearer] = out["rgb"][nearer], out["depth"][nearer], label
            frames.append({"rgb": rgb, "depth": depth, "labels": labels, "K": np.asarray(K, np.float64),
                           "T_cam_obj": [np.asarray(T, np.float64) for T in frame_poses]})
    return frames


def pose_from_rotvec(rotvec_deg, t) -> np.ndarray:
    """(4,4) pose from a rotation vector in degrees and a translation in metres."""
    from scipy.spatial.transform import Rotation

    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(np.radians(rotvec_deg)).as_matrix()
    T[:3, 3] = t
    return T


def two_object_scene(width: int = 320, height: int = 240) -> tuple[list[ObjectSpec], np.ndarray, list[dict]]:
    """A small fixed scene for tests: two shape-asymmetric TEST objects (a hammer on the left, label 1; a box with
    knobs on the right, label 2) ~0.5 m away in three frames, each object turning ~15-25 deg from frame 0.
    Returns (objects, K, frames as ``render_multi_object_frames``)."""
    from .objects import make_object, split_ids

    objs = [make_object(i) for i in split_ids("test", 2, seed=3, family="shape_asymmetric")]
    f = 280.0 * width / 320
    K = np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]])
    poses = [[pose_from_rotvec([90, 0, 0], [-0.08, 0.0, 0.5]), pose_from_rotvec([60, 30, 0], [0.09, 0.0, 0.55])],
             [pose_from_rotvec([90, 15, 5], [-0.07, 0.02, 0.52]), pose_from_rotvec([60, 15, 10], [0.1, -0.01, 0.53])],
             [pose_from_rotvec([95, 25, 0], [-0.075, 0.01, 0.51]), pose_from_rotvec([55, 5, 15], [0.095, 0.0, 0.54])]]
    return objs, K, render_multi_object_frames(objs, poses, K, width, height)
