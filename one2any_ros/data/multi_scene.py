"""Several objects in one camera's frames, with a label image (issue 17): each object rendered alone by the same
camera and z-composited (the nearest surface wins a pixel), so every frame carries one RGB-D image and a mono16
label image in which object k (1-based) owns its visible pixels - what one segmenter gives the node.

The renderer draws one object per call (data/render.py); compositing is exact for the geometry (one camera, one
depth buffer); the objects do not shade each other.

``multi_object_scene`` is the scene of ``one2any demo --objects N`` and ``one2any bench --ros --objects N``:
N held-out objects side by side in front of a textured wall, each turning, one label image per frame.
"""
from __future__ import annotations

import numpy as np

from one2any_ros.data.objects import ObjectSpec


def render_multi_object_frames(objects: list[ObjectSpec], poses: list[list[np.ndarray]], K: np.ndarray, width: int,
                               height: int, *, seed: int = 0, depth_noise: bool = False,
                               light: dict | None = None) -> list[dict]:
    """``poses[f][k]``: object k's (4,4) pose in the camera at frame f (metres), or None where it is not in the frame.
    Returns per frame {rgb (H,W,3) uint8, depth (H,W) float32 m (0 = nothing), labels (H,W) uint16 (k+1 = object k,
    0 = background), K, T_cam_obj: list of each object's pose (NaN where it is not in the frame), masks_full: list of
    each object's whole silhouette (bool, as if alone)}.
    One ``light`` (keys as ``scene.random_light``'s; None: one drawn from ``seed``) for every object and frame: a
    workcell's lamp does not move between frames (a light drawn per object and frame had changed an object's colours
    from one frame to the next, which no camera sees and the appearance check paid for)."""
    from one2any_ros.data.render import Renderer
    from one2any_ros.data.scene import random_light

    light = random_light(np.random.default_rng([seed, 31])) if light is None else light
    frames = []
    with Renderer(seed=seed) as r:
        for frame_poses in poses:
            rgb = np.zeros((height, width, 3), np.uint8)
            depth = np.zeros((height, width), np.float32)
            labels = np.zeros((height, width), np.uint16)
            full = []
            for label, (obj, T) in enumerate(zip(objects, frame_poses), start=1):
                if T is None:  # not in this frame (it left the view)
                    full.append(np.zeros((height, width), bool))
                    continue
                out = r.render(obj, T, K, width, height, background="none", depth_noise=depth_noise, light=light)
                full.append(np.asarray(out["mask"], bool))
                d = np.where(out["mask"], out["depth"], np.inf)
                nearer = out["mask"] & ((depth == 0) | (d < depth))
                rgb[nearer], depth[nearer], labels[nearer] = out["rgb"][nearer], out["depth"][nearer], label
            frames.append({"rgb": rgb, "depth": depth, "labels": labels, "K": np.asarray(K, np.float64),
                           "T_cam_obj": [np.full((4, 4), np.nan) if T is None else np.asarray(T, np.float64)
                                         for T in frame_poses], "masks_full": full})
    return frames


def pose_from_rotvec(rotvec_deg, t) -> np.ndarray:
    """(4,4) pose from a rotation vector in degrees and a translation in metres."""
    from scipy.spatial.transform import Rotation

    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(np.radians(rotvec_deg)).as_matrix()
    T[:3, 3] = t
    return T


def _two_objects(width: int, height: int) -> tuple[list[ObjectSpec], np.ndarray]:
    """The objects and camera of ``two_object_scene`` and ``tracking_sequence``."""
    from one2any_ros.data.objects import make_object, split_ids

    objs = [make_object(i) for i in split_ids("test", 2, seed=3, family="shape_asymmetric")]
    f = 280.0 * width / 320
    return objs, np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]])


def two_object_scene(width: int = 320, height: int = 240) -> tuple[list[ObjectSpec], np.ndarray, list[dict]]:
    """A small fixed scene for tests: two shape-asymmetric TEST objects (a hammer on the left, label 1; a box with
    knobs on the right, label 2) ~0.5 m away in three frames, each object turning ~15-25 deg from frame 0.
    Returns (objects, K, frames as ``render_multi_object_frames``)."""
    objs, K = _two_objects(width, height)
    poses = [[pose_from_rotvec([90, 0, 0], [-0.08, 0.0, 0.5]), pose_from_rotvec([60, 30, 0], [0.09, 0.0, 0.55])],
             [pose_from_rotvec([90, 15, 5], [-0.07, 0.02, 0.52]), pose_from_rotvec([60, 15, 10], [0.1, -0.01, 0.53])],
             [pose_from_rotvec([95, 25, 0], [-0.075, 0.01, 0.51]), pose_from_rotvec([55, 5, 15], [0.095, 0.0, 0.54])]]
    return objs, K, render_multi_object_frames(objs, poses, K, width, height)


def tracking_sequence(n_frames: int = 12, *, width: int = 320, height: int = 240, step_deg: float = 4.0,
                      step_m: float = 0.003, away: tuple[int, int] | None = None, wall: bool = True,
                      seed: int = 0) -> tuple[list[ObjectSpec], list[dict]]:
    """The two objects of ``two_object_scene`` moving the way a workcell moves them (issue 26): each turns
    ``step_deg`` a frame about its own axis, back and forth (never more than 5 steps from its start), and drifts
    ``step_m`` a frame; with ``away`` = (first, end), object 2 is out of the view on frames first..end-1 and comes
    back where it left; ``wall``: a textured wall WALL_GAP_M behind them. Frame 0 is the reference. (objects, frames
    as ``render_multi_object_frames``)."""
    from one2any_ros.data.render import axis_angle_to_matrix

    objs, K = _two_objects(width, height)
    rng = np.random.default_rng([seed, 26])
    starts = [pose_from_rotvec([90, 0, 0], [-0.08, 0.0, 0.5]), pose_from_rotvec([60, 30, 0], [0.09, 0.0, 0.55])]
    axes = [a / np.linalg.norm(a) for a in rng.normal(size=(2, 3))]
    drift = [v / np.linalg.norm(v) * step_m for v in rng.normal(size=(2, 3))]
    poses = []
    for f in range(n_frames):
        k = f % 10 if f % 10 <= 5 else 10 - f % 10  # 0..5..0: back and forth
        frame = []
        for i, (T0, ax, v) in enumerate(zip(starts, axes, drift)):
            T = T0.copy()
            centre = T0[:3, :3] @ (objs[i].bbox_min + objs[i].extents / 2) + T0[:3, 3]
            R = axis_angle_to_matrix(ax, np.radians(step_deg * k))
            T[:3, :3] = R @ T0[:3, :3]
            T[:3, 3] = R @ (T0[:3, 3] - centre) + centre + k * v
            if i == 1 and away is not None and away[0] <= f < away[1]:
                T[:3, 3] += np.array([1.0, 0.0, 0.0])  # out of the image
            frame.append(T)
        poses.append(frame)
    frames = render_multi_object_frames(objs, poses, K, width, height, seed=seed, depth_noise=True)
    if wall:
        _add_wall(frames, max(T[2, 3] for T in starts) + max(o.diameter for o in objs) / 2 + WALL_GAP_M, rng)
    return objs, frames


SIDE_BY_SIDE_FRAMES = 30
SIDE_BY_SIDE_AWAY = (15, 20)  # frames the third object spends out of view (first, end)


def side_by_side_sequence(seed: int = 8, n_frames: int = SIDE_BY_SIDE_FRAMES,
                          away: tuple[int, int] = SIDE_BY_SIDE_AWAY) -> tuple[list[ObjectSpec], list[dict]]:
    """Three unseen (test-split, shape-asymmetric) objects side by side, each touching the next, turning back and
    forth (up to ~7 deg a frame, within ~50 deg of the reference view) and drifting; the third leaves the view on
    frames ``away`` and comes back where it left, turned ~35 deg (tools/drive_tracking.py over the wire; the library's
    test of neighbours that touch). Frame 0 is the reference. (objects, frames as ``render_multi_object_frames``)."""
    from one2any_ros.data.objects import make_object, split_ids

    objs = [make_object(i) for i in split_ids("test", 3, seed=seed, family="shape_asymmetric")]
    K = np.array([[280.0, 0, 159.5], [0, 280.0, 119.5], [0, 0, 1]])
    poses = []
    for f in range(n_frames):
        sw = np.sin(2 * np.pi * f / SIDE_BY_SIDE_FRAMES)
        gone = 0.6 if away[0] <= f < away[1] else 0.0
        poses.append([pose_from_rotvec([90 + 35 * sw, 25 * sw, 0], [-0.2 + 0.002 * f, 0.0, 0.62]),
                      pose_from_rotvec([60, 30 - 35 * sw, 20 * sw], [0.0, 0.01 - 0.001 * f, 0.6]),
                      pose_from_rotvec([35 * sw, 80, 10], [0.2 + gone, -0.01, 0.64])])
    return objs, render_multi_object_frames(objs, poses, K, 320, 240, seed=seed)


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
    from one2any_ros.data.render import axis_angle_to_matrix, random_rotation

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

    from one2any_ros.data.objects import random_texture

    h, w = frames[0]["depth"].shape
    wall = (0.55 * cv2.resize(random_texture(rng, 256), (w, h), interpolation=cv2.INTER_LINEAR)).astype(np.uint8)
    for f in frames:
        bg = f["labels"] == 0
        f["rgb"][bg], f["depth"][bg] = wall[bg], np.float32(z)


def multi_object_scene(n_objects: int, n_frames: int, *, width: int = 640, height: int = 480, step_deg: float = 7.0,
                       seed: int = SCENE_SEED, slots: int | None = None, wall: bool = True,
                       without_first: tuple[int, ...] = ()) -> tuple[list[ObjectSpec], list[dict]]:
    """The first ``n_objects`` of SCENE_OBJECTS shape-asymmetric TEST-split objects (never trained or tuned on) side
    by side, each turning ``step_deg`` per frame, rendered into ``n_frames`` frames: (objects, frames as
    ``data.multi_scene.render_multi_object_frames`` gives them: rgb, depth m, labels (k+1 = object k), K,
    T_cam_obj[k]). ``slots``: lay out the row for this many objects (default ``n_objects``) and fill the first
    ones, so scenes with 1, 2 and 4 objects show the same objects at the same size (the benchmark compares
    their costs). ``without_first``: frame indices rendered once more after the ``n_frames``, in that order, with
    the first object gone from the view (it left; the others as in those frames): the benchmark's leave-and-return.
    Deterministic in ``seed`` (the extra frames change none of the others)."""
    from one2any_ros.data.objects import make_object, split_ids

    slots = slots or n_objects
    if not 1 <= n_objects <= slots <= SCENE_OBJECTS:
        raise ValueError(f"need 1 <= n_objects <= slots <= {SCENE_OBJECTS}, got {n_objects} and {slots}")
    rng = np.random.default_rng([seed, 17])
    pool = [make_object(i) for i in split_ids("test", SCENE_OBJECTS, seed=seed, family="shape_asymmetric")[:slots]]
    K = scene_K(width, height)
    centres = _row_layout(pool, K, width, height)
    poses = _turning_poses(pool, centres, n_frames, step_deg, rng)
    objects = pool[:n_objects]
    poses = [p[:n_objects] for p in poses] + [[None] + poses[f][1:n_objects] for f in without_first]
    frames = render_multi_object_frames(objects, poses, K, width, height, seed=seed)
    if wall:
        _add_wall(frames, centres[0][2] + max(o.diameter for o in pool) / 2 + WALL_GAP_M, rng)
    return objects, frames
