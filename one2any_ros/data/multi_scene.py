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
