"""CPU renderer: pybullet's ER_TINY_RENDERER in DIRECT mode (docs/architecture.md, Renderers), plus pose
samplers and a RealSense/Kinect-like depth noise model.

Camera: OpenCV optical frame at the world origin (x right, y down, z forward), so the world frame IS
the camera frame and an object is placed with ``T_cam_obj`` directly. View = diag(1,-1,-1,1); the
projection comes from K with pixel centres at integer coordinates (measured: a rectangle edge at
u = 60.1 covers columns 61.. and one at 60.0 covers 60..); metric z = f·n / (f − (f−n)·d).
Render crops directly with :func:`crop_intrinsics` (a shifted, scaled K) rather than cropping.

Scene beyond the object: a textured plane (a table or wall) behind or under the object, with random
distractor boxes/spheres resting on it, so depth outside the mask is realistic; depth beyond the far
plane (``max_range``) is 0 like a real sensor's range limit.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from .objects import ObjectSpec, random_texture

MIN_RANGE_M = 0.1  # sensor minimum range: closer depth reads 0
MAX_RANGE_M = 4.0  # sensor maximum range (and far plane)
_HIDDEN = (1000.0, 1000.0, -1000.0)  # behind and beside the camera: never rasterised (checked)
DEFAULT_WIDTH, DEFAULT_HEIGHT = 640, 480
DEFAULT_K = np.array([[600.0, 0.0, 319.5], [0.0, 600.0, 239.5], [0.0, 0.0, 1.0]])  # a 640x480 RGB-D camera


# --------------------------------------------------------------------------------------------------
# rotations (scipy's Rotation) and poses


def occluder_pose(T_cam_obj: np.ndarray, diameter: float, rng: np.random.Generator) -> np.ndarray:
    """Pose (4,4) of an occluder between the camera and the object, over a random part of its silhouette
    (one place for both renderers, so the same rng draws the same scene)."""
    target = T_cam_obj[:3, 3] + rng.uniform(-0.7, 0.7, 3) * 0.5 * diameter
    p = target * rng.uniform(0.5, 0.85)
    if p[2] < MIN_RANGE_M + 0.05:
        p = target * (MIN_RANGE_M + 0.05) / target[2]
    T = np.eye(4)
    T[:3, :3] = random_rotation(rng)
    T[:3, 3] = p
    return T


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """(3,3) rotation uniformly distributed on SO(3): a normalised 4D Gaussian is a uniform unit quaternion
    (drawn from ``rng`` rather than by ``Rotation.random``, so a seed keeps its scenes)."""
    q = rng.normal(size=4)
    return Rotation.from_quat(q / np.linalg.norm(q)).as_matrix()


def axis_angle_to_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation by ``angle`` radians about ``axis`` (normalised here; a zero axis gives the identity)."""
    a = np.asarray(axis, float)
    return Rotation.from_rotvec(a * (angle / max(np.linalg.norm(a), 1e-12))).as_matrix()


def rotation_angle(Ra: np.ndarray, Rb: np.ndarray) -> float:
    """Geodesic angle between two rotations, radians in [0, pi]."""
    c = (np.trace(Ra[:3, :3].T @ Rb[:3, :3]) - 1.0) / 2.0
    return float(np.arccos(np.clip(c, -1.0, 1.0)))


def rotation_at_angle(
    R: np.ndarray, angle: float, rng: np.random.Generator | None = None, *, axis: np.ndarray | None = None
) -> np.ndarray:
    """A rotation exactly ``angle`` radians from ``R`` (geodesic): ``exp(angle·axis) @ R``, the extra
    rotation about a camera-frame axis (random unit axis unless given)."""
    if axis is None:
        rng = rng if rng is not None else np.random.default_rng()
        axis = rng.normal(size=3)
    return axis_angle_to_matrix(axis, angle) @ np.asarray(R, float)[:3, :3]


def sample_translation(
    rng: np.random.Generator,
    *,
    K: np.ndarray,
    width: int,
    height: int,
    distance_range: tuple[float, float] = (0.4, 1.2),
    radius: float = 0.0,
    margin: float = 0.05,
) -> np.ndarray:
    """(3,) camera-frame position: depth uniform in ``distance_range``, the projection uniform over the
    image keeping an object of ``radius`` (m) inside it with a ``margin`` (fraction of the size)."""
    z = float(rng.uniform(*distance_range))
    rpx_u, rpx_v = K[0, 0] * radius / z, K[1, 1] * radius / z
    lo_u, hi_u = margin * width + rpx_u, (1 - margin) * width - 1 - rpx_u
    lo_v, hi_v = margin * height + rpx_v, (1 - margin) * height - 1 - rpx_v
    u = rng.uniform(lo_u, hi_u) if hi_u > lo_u else 0.5 * (width - 1)
    v = rng.uniform(lo_v, hi_v) if hi_v > lo_v else 0.5 * (height - 1)
    return np.array([(u - K[0, 2]) * z / K[0, 0], (v - K[1, 2]) * z / K[1, 1], z])


def sample_pose(
    rng: np.random.Generator,
    *,
    K: np.ndarray | None = None,
    width: int = 640,
    height: int = 480,
    distance_range: tuple[float, float] = (0.4, 1.2),
    radius: float = 0.0,
    margin: float = 0.05,
    R: np.ndarray | None = None,
) -> np.ndarray:
    """(4,4) random object pose in front of the camera: uniform rotation (or ``R``), see
    :func:`sample_translation` for the position."""
    K = DEFAULT_K if K is None else np.asarray(K, float)
    T = np.eye(4)
    T[:3, :3] = random_rotation(rng) if R is None else R
    T[:3, 3] = sample_translation(
        rng, K=K, width=width, height=height, distance_range=distance_range, radius=radius, margin=margin
    )
    return T


def crop_intrinsics(K: np.ndarray, u0: float, v0: float, side: float, out_size: int) -> np.ndarray:
    """K of a square crop (top-left (u0, v0), ``side`` px) resized to ``out_size`` px, with the
    cv2.resize pixel-centre convention. Render a crop directly with this K and (out_size, out_size)."""
    s = side / out_size
    K2 = np.array(K, dtype=np.float64, copy=True)
    K2[0, 0] /= s
    K2[1, 1] /= s
    K2[0, 1] /= s
    K2[0, 2] = (K[0, 2] - u0 + 0.5) / s - 0.5
    K2[1, 2] = (K[1, 2] - v0 + 0.5) / s - 0.5
    return K2


def projection_matrix(K: np.ndarray, width: int, height: int, near: float, far: float) -> list[float]:
    """pybullet projection (column-major 16 floats) for an OpenCV K, pixel centres at integers."""
    fx, fy, cx, cy, sk = K[0, 0], K[1, 1], K[0, 2], K[1, 2], K[0, 1]
    P = np.array(
        [
            [2 * fx / width, -2 * sk / width, 1 - 2 * cx / width, 0],
            [0, 2 * fy / height, 2 * (cy + 1) / height - 1, 0],
            [0, 0, -(far + near) / (far - near), -2 * far * near / (far - near)],
            [0, 0, -1, 0],
        ]
    )
    return P.T.ravel().tolist()


_VIEW = np.diag([1.0, -1.0, -1.0, 1.0]).T.ravel().tolist()


# --------------------------------------------------------------------------------------------------
# depth noise (pure numpy)


def depth_noise_sigma(z: np.ndarray, level: float = 1.0) -> np.ndarray:
    """Axial noise std (m) of a structured-light/stereo sensor at depth z (m): grows ~z² (Nguyen et al.)."""
    return level * (0.0012 + 0.0019 * (z - 0.4) ** 2)


def add_depth_noise(
    depth: np.ndarray,
    rng: np.random.Generator,
    *,
    K: np.ndarray | None = None,
    level: float | None = None,
    min_range: float = MIN_RANGE_M,
    max_range: float = MAX_RANGE_M,
) -> np.ndarray:
    """Return a noisy copy of a clean metric depth map (0 = invalid), RealSense/Kinect-like:
    z²-growing axial noise with a spatially correlated part, jittered and dropped depth edges, a stereo
    shadow band beside foreground edges, grazing-angle and random holes, mm quantisation, range limits.
    ``level`` scales the noise (random in [0.5, 2] if None); pixel sizes follow ``K`` (crops included)."""
    depth = np.asarray(depth, np.float32)
    z = depth.copy()
    h, w = z.shape
    valid = z > 0
    if not valid.any():
        return z
    level = float(rng.uniform(0.5, 2.0)) if level is None else level
    fx = float(K[0, 0]) if K is not None else 600.0
    px = float(np.clip(fx / 600.0, 0.25, 4.0))  # sensor artefact size in this image's pixels (crops scale it)
    sig = depth_noise_sigma(z, level)
    low = cv2.resize(
        rng.normal(0, 1, (max(h // 16, 2), max(w // 16, 2))).astype(np.float32),
        (w, h),
        interpolation=cv2.INTER_LINEAR,
    )
    z = z + sig * (0.8 * _normals(rng, z.shape) + 0.6 * low)
    # depth discontinuities: jitter (lateral noise) and drop some edge pixels
    k3 = np.ones((3, 3), np.uint8)
    zmax = cv2.dilate(depth, k3)
    zmin = cv2.erode(np.where(valid, depth, 1e3).astype(np.float32), k3)
    edge = valid & ((zmax - zmin) > 0.02 + 0.02 * depth)
    if edge.any():
        band = cv2.dilate(edge.astype(np.uint8), k3, iterations=max(1, int(round(px)))).astype(bool) & valid
        vv, uu = np.nonzero(band)
        dv = np.clip(vv + rng.integers(-1, 2, len(vv)), 0, h - 1)
        du = np.clip(uu + rng.integers(-1, 2, len(uu)), 0, w - 1)
        z[vv, uu] = z[dv, du]
        z[vv, uu] *= valid[dv, du]
        drop = rng.random(len(vv)) < rng.uniform(0.1, 0.5)
        z[vv[drop], uu[drop]] = 0
    # stereo shadow: background pixels left of a foreground edge are seen by one imager only
    if rng.random() < 0.6:
        baseline = float(rng.uniform(0.015, 0.055))
        disp = np.where(valid, fx * baseline / np.maximum(depth, 1e-3), 0).astype(np.float32)
        shadow = np.zeros_like(valid)
        max_shift = int(min(np.ceil(disp.max() - disp[valid].min()), w // 4, 64))
        for s in range(1, max_shift + 1):
            shadow[:, :-s] |= (disp[:, s:] - disp[:, :-s]) > s
        z[shadow] = 0
    # grazing angles: surfaces seen edge-on return nothing
    gz_u = cv2.Sobel(depth, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gz_v = cv2.Sobel(depth, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    slope = np.sqrt(gz_u**2 + gz_v**2) * fx / np.maximum(depth, 1e-3)  # dz per metre laterally
    graze = valid & ~edge & (slope > rng.uniform(2.5, 5.0)) & (_normals(rng, z.shape) < 0.52)  # p = 0.7
    z[graze] = 0
    # random small holes (dark/specular patches)
    for _ in range(int(rng.poisson(1.5))):
        c = (int(rng.integers(w)), int(rng.integers(h)))
        ax = (max(1, int(rng.uniform(1, 6) * px)), max(1, int(rng.uniform(1, 6) * px)))
        hole = np.zeros((h, w), np.uint8)
        cv2.ellipse(hole, c, ax, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        z[hole.astype(bool)] = 0
    z = np.round(z * 1000.0) / 1000.0
    z[~valid | (z < min_range) | (z > max_range)] = 0
    return z.astype(np.float32)


def _normal_bank() -> np.ndarray:
    """2^21 standard normals (float32), made once: slices of it are the per-pixel noise (drawing a new
    normal per pixel costs ~10 ms at 640x480; a random slice is as good for sensor noise)."""
    global _BANK
    if _BANK is None:
        _BANK = np.random.default_rng(20240601).standard_normal(1 << 21, dtype=np.float32)
    return _BANK


_BANK: np.ndarray | None = None


def _normals(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    n = int(np.prod(shape))
    bank = _normal_bank()
    if n > len(bank) // 2:
        return rng.standard_normal(shape, dtype=np.float32)
    start = int(rng.integers(0, len(bank) - n))
    out = bank[start : start + n].reshape(shape)
    return out if rng.random() < 0.5 else -out


def add_rgb_noise(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sensor noise, slight blur and exposure/white-balance jitter."""
    gain = (rng.uniform(0.85, 1.15) * rng.uniform(0.93, 1.07, 3)).astype(np.float32)
    img = cv2.multiply(
        rgb.astype(np.float32), cv2.merge([np.full(rgb.shape[:2], g, np.float32) for g in gain])
    )
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.3, 0.9)))
    img += _normals(rng, img.shape) * np.float32(rng.uniform(1.0, 4.0)) + np.float32(rng.uniform(-10, 10))
    return np.clip(img, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# the renderer


@dataclass
class BackgroundSpec:
    """A reproducible background: a textured plane (normal n towards the camera, points x with
    n·x = offset, camera frame; ``center`` is its texture origin), lit like the object, plus distractor
    placements. ``Renderer.sample_background`` makes one; pass it to ``render(background=...)`` to keep
    the same scene over a sequence."""

    normal: np.ndarray  # (3,) unit, pointing towards the camera side
    offset: float  # m
    center: np.ndarray  # (3,) a point of the plane near the object
    texture: int  # index into the renderer's texture pool
    texture_size_m: float = 0.5  # one texture tile spans this many metres on the plane
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    far_color: tuple[int, int, int] = (200, 200, 200)  # pixels that see nothing within range
    distractors: list[tuple[int, np.ndarray, int]] = field(
        default_factory=list
    )  # (pool index, T (4,4), texture)


def random_light(rng: np.random.Generator) -> dict:
    """Random light: a direction towards the light from the camera's side (camera frame), a near-white
    colour, random ambient/diffuse/specular coefficients."""
    d = np.array([rng.uniform(-1, 1), rng.uniform(-1.2, 0.4), rng.uniform(-1.5, -0.2)])
    return {
        "direction": d / np.linalg.norm(d),
        "color": (1.0 - rng.uniform(0, 0.25, 3)).tolist(),
        "ambient": float(rng.uniform(0.35, 0.75)),
        "diffuse": float(rng.uniform(0.25, 0.7)),
        "specular": float(rng.uniform(0.0, 0.4)),
        "shadow": False,
        "distance": 3.0,
    }


class Renderer:
    """One pybullet DIRECT client; reusable; caches loaded objects by ``ObjectSpec.fingerprint`` (LRU).

    The object, distractors and occluders are rasterised by pybullet; the background plane is computed
    analytically (ray-plane depth, remapped texture, the same Lambert light) and z-composited, because a
    full-screen surface costs the tiny renderer ~50 ms at 640x480 against ~20 ms for the object alone.
    """

    DISTRACTOR_POOL = 8
    OCCLUDER_POOL = 4
    TEXTURE_POOL = 12

    def __init__(
        self,
        *,
        seed: int = 0,
        max_cached_objects: int = 32,
        reset_every_loads: int = 200,
        max_range: float = MAX_RANGE_M,
    ) -> None:
        import pybullet

        self._pb = pybullet
        self._rng = np.random.default_rng(seed)
        self._tmp = Path(tempfile.mkdtemp(prefix="one2any_render_"))
        self._cid = pybullet.connect(pybullet.DIRECT)
        self._max_cached = max_cached_objects
        self._reset_every = reset_every_loads
        self.max_range = max_range
        self._objects: OrderedDict[str, int] = OrderedDict()
        self._loads = 0
        self._ray_cache: dict = {}
        tex_rng = np.random.default_rng([seed, 77])
        self._textures = [random_texture(tex_rng, 256) for _ in range(self.TEXTURE_POOL)]
        self._setup_scene()

    # -- scene management ------------------------------------------------------------------------
    def _setup_scene(self) -> None:
        pb, cid = self._pb, self._cid
        pb.resetSimulation(physicsClientId=cid)
        pb.setPhysicsEngineParameter(enableFileCaching=0, physicsClientId=cid)
        self._objects.clear()
        self._loads = 0
        rng = np.random.default_rng(1234)
        self._tex_ids = [self._load_texture(t, f"bg{i}") for i, t in enumerate(self._textures)]
        self._distractors = []
        for i in range(self.DISTRACTOR_POOL):
            if i % 3 != 2:
                he = rng.uniform(0.03, 0.12, 3)
                vs = pb.createVisualShape(pb.GEOM_BOX, halfExtents=he.tolist(), physicsClientId=cid)
            else:
                r = float(rng.uniform(0.03, 0.08))
                vs = pb.createVisualShape(pb.GEOM_SPHERE, radius=r, physicsClientId=cid)
                he = np.array([r, r, r])
            self._distractors.append(
                (
                    pb.createMultiBody(0, baseVisualShapeIndex=vs, basePosition=_HIDDEN, physicsClientId=cid),
                    he,
                )
            )
        self._occluders = []
        for i in range(self.OCCLUDER_POOL):
            he = np.array([0.012 + 0.008 * i, 0.02 + 0.006 * i, 0.01])
            vs = pb.createVisualShape(pb.GEOM_BOX, halfExtents=he.tolist(), physicsClientId=cid)
            self._occluders.append(
                (
                    pb.createMultiBody(0, baseVisualShapeIndex=vs, basePosition=_HIDDEN, physicsClientId=cid),
                    he,
                )
            )

    def _load_texture(self, img: np.ndarray, name: str) -> int:
        path = self._tmp / f"{name}.png"
        cv2.imwrite(str(path), img[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1])
        return self._pb.loadTexture(str(path), physicsClientId=self._cid)

    def _body_for(self, obj: ObjectSpec) -> int:
        key = obj.fingerprint
        if key in self._objects:
            self._objects.move_to_end(key)
            return self._objects[key]
        if self._loads >= self._reset_every:  # pybullet keeps some per-shape memory: start clean now and then
            self._setup_scene()
        while len(self._objects) >= self._max_cached:
            _, bid = self._objects.popitem(last=False)
            self._pb.removeBody(bid, physicsClientId=self._cid)
        d = self._tmp / "objects"
        stem = f"o{self._loads}_{obj.key}"
        path = obj.export_obj(d, stem=stem)
        vs = self._pb.createVisualShape(self._pb.GEOM_MESH, fileName=str(path), physicsClientId=self._cid)
        bid = self._pb.createMultiBody(
            0, baseVisualShapeIndex=vs, basePosition=_HIDDEN, physicsClientId=self._cid
        )
        for f in d.glob(f"{stem}.*"):  # pybullet has read them (file caching is off)
            f.unlink()
        self._loads += 1
        self._objects[key] = bid
        return bid

    def _place(self, bid: int, T: np.ndarray | None) -> None:
        if T is None:
            self._pb.resetBasePositionAndOrientation(bid, _HIDDEN, (0, 0, 0, 1), physicsClientId=self._cid)
        else:
            self._pb.resetBasePositionAndOrientation(
                bid,
                np.asarray(T[:3, 3], float).tolist(),
                Rotation.from_matrix(T[:3, :3]).as_quat().tolist(),  # (x, y, z, w): pybullet's order too
                physicsClientId=self._cid,
            )

    # -- backgrounds -----------------------------------------------------------------------------
    def sample_background(
        self,
        obj: ObjectSpec,
        T_cam_obj: np.ndarray,
        rng: np.random.Generator,
        *,
        K: np.ndarray | None = None,
        resting_prob: float = 0.5,
        max_distractors: int = 4,
    ) -> BackgroundSpec:
        """A random plane behind/under the object (a table tilted towards camera-up, or a wall; up to
        ~70° from facing the camera), touching the object with ``resting_prob`` else up to 0.4 m behind
        it, with distractors resting on it that never cover the object (bounding-sphere test)."""
        t = T_cam_obj[:3, 3]
        n0 = -t / np.linalg.norm(t)
        target = (
            (np.array([0.0, -1.0, 0.0]) + rng.normal(0, 0.3, 3))
            if rng.random() < 0.6
            else n0 + rng.normal(0, 0.5, 3)
        )
        ax = np.cross(n0, target)
        ang = float(rng.uniform(0.0, np.radians(70.0)))
        nrm = n0 if np.linalg.norm(ax) < 1e-6 else axis_angle_to_matrix(ax, ang) @ n0
        pts = obj.vertices @ T_cam_obj[:3, :3].T + t
        gap = 0.0 if rng.random() < resting_prob else float(rng.uniform(0.02, 0.4))
        offset = float((pts @ nrm).min()) - gap
        center = t - (t @ nrm - offset) * nrm
        far = rng.uniform(40, 255, 3) * (rng.uniform(0.3, 1.0) if rng.random() < 0.5 else 1.0)
        spec = BackgroundSpec(
            normal=nrm,
            offset=offset,
            center=center,
            texture=int(rng.integers(len(self._textures))),
            texture_size_m=float(np.exp(rng.uniform(np.log(0.15), np.log(1.5)))),
            tint=tuple(float(c) for c in rng.uniform(0.6, 1.0, 3)),
            far_color=tuple(int(c) for c in far),
        )
        if K is not None and max_distractors > 0:
            Rp = _frame_from_normal(nrm)
            r_obj = 0.5 * obj.diameter
            uv_o = K[:2, :2] @ (t[:2] / t[2]) + K[:2, 2]
            r_o_px = K[0, 0] * r_obj / max(t[2] - r_obj, 0.05)
            for idx in rng.permutation(len(self._distractors))[: int(rng.integers(0, max_distractors + 1))]:
                he = self._distractors[idx][1]
                rad = float(np.linalg.norm(he))
                for _ in range(4):
                    d = rng.uniform(0.1, 0.6)
                    phi = rng.uniform(0, 2 * np.pi)
                    p = center + d * (np.cos(phi) * Rp[:, 0] + np.sin(phi) * Rp[:, 1]) + he[2] * nrm
                    if p[2] - rad < MIN_RANGE_M + 0.1:
                        continue
                    uv_p = K[:2, :2] @ (p[:2] / p[2]) + K[:2, 2]
                    r_p_px = K[0, 0] * rad / max(p[2] - rad, 0.05)
                    if p[2] - rad < t[2] + r_obj and np.linalg.norm(uv_p - uv_o) < r_o_px + r_p_px:
                        continue  # could cover the object
                    T = np.eye(4)
                    T[:3, :3] = Rp @ axis_angle_to_matrix([0, 0, 1], rng.uniform(0, 2 * np.pi))
                    T[:3, 3] = p
                    spec.distractors.append((int(idx), T, int(rng.integers(len(self._textures)))))
                    break
        return spec

    def _rays(self, K: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, y, |ray|^2) (H,W) float32 grids of the rays (x, y, 1) through each pixel (cached)."""
        key = (width, height) + tuple(np.round(K.ravel(), 6))
        rays = self._ray_cache.get(key)
        if rays is None:
            v, u = np.mgrid[0:height, 0:width].astype(np.float64)
            y = (v - K[1, 2]) / K[1, 1]
            x = (u - K[0, 2] - K[0, 1] * y) / K[0, 0]
            rays = (x.astype(np.float32), y.astype(np.float32), (x * x + y * y + 1).astype(np.float32))
            if len(self._ray_cache) > 8:
                self._ray_cache.clear()
            self._ray_cache[key] = rays
        return rays

    def _plane_image(
        self, bg: BackgroundSpec, K: np.ndarray, width: int, height: int, light: dict
    ) -> tuple[np.ndarray, np.ndarray]:
        """Analytic background plane: (rgb (H,W,3) uint8, depth (H,W) float32 m; 0 where out of range)."""
        x, y, r2 = self._rays(K, width, height)
        n = bg.normal.astype(np.float64)
        den = x * np.float32(n[0]) + y * np.float32(n[1]) + np.float32(n[2])  # ray . n
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.float32(bg.offset) / den
        z[~((den < -1e-6) & (z > 0) & (z <= self.max_range))] = 0
        Rp = _frame_from_normal(n)
        c = bg.center.astype(np.float64)
        tex = self._textures[bg.texture % len(self._textures)]
        s = tex.shape[0] / bg.texture_size_m
        e1, e2 = Rp[:, 0], Rp[:, 1]
        mu = z * (x * np.float32(e1[0] * s) + y * np.float32(e1[1] * s) + np.float32(e1[2] * s)) - np.float32(
            c @ e1 * s
        )
        # texture rows run down the image: minus keeps the plane's texture unmirrored as seen from the camera
        mv = np.float32(c @ e2 * s) - z * (
            x * np.float32(e2[0] * s) + y * np.float32(e2[1] * s) + np.float32(e2[2] * s)
        )
        col = cv2.remap(
            tex, mu, mv, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
        )  # mirrored tiles: no seams
        L = np.asarray(light["direction"], np.float64)
        L = L / max(float(np.linalg.norm(L)), 1e-6)
        shade = light["ambient"] + light["diffuse"] * max(float(n @ L), 0.0)
        # a soft falloff away from the object, as from a lamp near it: 1 / (1 + 0.15 |z·ray − c|²)
        d2 = z * (
            z * r2 - np.float32(2 * c[0]) * x - np.float32(2 * c[1]) * y - np.float32(2 * c[2])
        ) + np.float32(c @ c)
        fall = np.float32(shade) / (1.0 + np.float32(0.15) * d2)
        gain = (np.asarray(bg.tint) * np.asarray(light["color"])).astype(np.float32)
        col = cv2.multiply(col.astype(np.float32), cv2.merge([fall * g for g in gain]))
        col[z == 0] = bg.far_color
        return np.clip(col, 0, 255).astype(np.uint8), z

    def _apply_distractors(self, bg: BackgroundSpec | None) -> None:
        used = {idx: (T, tex) for idx, T, tex in (bg.distractors if bg is not None else [])}
        for i, (bid, _) in enumerate(self._distractors):
            if i in used:
                self._place(bid, used[i][0])
                self._pb.changeVisualShape(
                    bid,
                    -1,
                    textureUniqueId=self._tex_ids[used[i][1] % len(self._tex_ids)],
                    physicsClientId=self._cid,
                )
            else:
                self._place(bid, None)

    def _place_occluders(
        self, n: int, T_cam_obj: np.ndarray, obj: ObjectSpec, rng: np.random.Generator
    ) -> list[float]:
        """Small textured boxes between the camera and the object, over a random part of its silhouette."""
        zs = []
        for i, (bid, he) in enumerate(self._occluders):
            if i >= n:
                self._place(bid, None)
                continue
            T = occluder_pose(T_cam_obj, obj.diameter, rng)
            p = T[:3, 3]
            self._place(bid, T)
            self._pb.changeVisualShape(
                bid,
                -1,
                textureUniqueId=self._tex_ids[int(rng.integers(len(self._tex_ids)))],
                physicsClientId=self._cid,
            )
            zs.append(float(p[2] - np.linalg.norm(he)))
        return zs

    # -- rendering -------------------------------------------------------------------------------
    def render(
        self,
        obj: ObjectSpec,
        T_cam_obj: np.ndarray,
        K: np.ndarray,
        width: int,
        height: int,
        *,
        background: str | np.ndarray | BackgroundSpec | None = "random",
        light: dict | None = None,
        occluders: int = 0,
        depth_noise: bool = True,
        rgb_noise: bool | None = None,
        full_mask: bool = False,
        rng: np.random.Generator | None = None,
    ) -> dict:
        """Render ``obj`` at ``T_cam_obj`` (4,4, m, OpenCV camera) with intrinsics K into (height, width).

        ``background``: "random" (a textured plane with depth + distractors), a BackgroundSpec (reproducible),
        None/"none" (nothing: rgb 0, depth 0), or an (H,W,3) uint8 RGB image pasted behind (depth 0 there).
        ``light``: keys as :func:`random_light` returns (missing keys random). ``occluders``: number of small
        boxes in front of the object (at most OCCLUDER_POOL). ``rgb_noise``: sensor noise on the colour
        image (default: same as ``depth_noise``). ``rng``: the randomness of this call (default: the
        renderer's own, seeded by ``seed``).

        Returns {'rgb' (H,W,3) uint8, 'depth' (H,W) float32 m (0 = invalid/background beyond range),
        'depth_clean' (H,W) float32 m (noise-free), 'mask' (H,W) bool visible object pixels, 'mask_full'
        (H,W) bool unoccluded silhouette (with occluders only when ``full_mask``), 'visib_fract' float
        (when mask_full is known), 'K' (3,3), 'T_cam_obj' (4,4)}.
        """
        pb, cid = self._pb, self._cid
        rng = self._rng if rng is None else rng
        K = np.asarray(K, np.float64)
        T_cam_obj = np.asarray(T_cam_obj, np.float64)
        bid = self._body_for(obj)
        for other in self._objects.values():
            if other != bid:
                self._place(other, None)
        self._place(bid, T_cam_obj)
        bg_image = None
        if isinstance(background, str):
            if background == "random":
                background = self.sample_background(obj, T_cam_obj, rng, K=K)
            elif background == "none":
                background = None
            else:
                raise ValueError(f"unknown background {background!r} (random|none|BackgroundSpec|image)")
        elif isinstance(background, np.ndarray):
            bg_image, background = background, None
        self._apply_distractors(background)
        occ_z = self._place_occluders(min(occluders, len(self._occluders)), T_cam_obj, obj, rng)
        # near/far tight around what pybullet rasterises (the plane is analytic)
        r = 0.5 * obj.diameter
        z_obj = float(T_cam_obj[2, 3])
        near = max(0.01, min([z_obj - r - 0.02] + [z - 0.02 for z in occ_z]))
        far = z_obj + r + 0.05
        for _, Td, _ in background.distractors if background is not None else []:
            far = max(far, float(Td[2, 3]) + 0.25)
        far = min(max(far, near + 0.05), self.max_range + 0.5)
        lt = {**random_light(rng), **(light or {})}
        kw = dict(
            lightDirection=list(map(float, lt["direction"])),
            lightColor=list(map(float, lt["color"])),
            lightDistance=float(lt["distance"]),
            shadow=int(bool(lt["shadow"])),
            lightAmbientCoeff=float(lt["ambient"]),
            lightDiffuseCoeff=float(lt["diffuse"]),
            lightSpecularCoeff=float(lt["specular"]),
        )
        proj = projection_matrix(K, width, height, near, far)
        def capture():
            return pb.getCameraImage(width, height, viewMatrix=_VIEW, projectionMatrix=proj,
                                     renderer=pb.ER_TINY_RENDERER, physicsClientId=cid, **kw)

        _, _, rgba, dbuf, seg = capture()
        rgb = np.ascontiguousarray(np.asarray(rgba, np.uint8).reshape(height, width, 4)[:, :, :3])
        dbuf = np.asarray(dbuf, np.float32).reshape(height, width)
        seg = np.asarray(seg).reshape(height, width)
        hit = (seg >= 0) & (dbuf < 1.0)
        fn, fmn = np.float32(far * near), np.float32(far - near)
        depth = np.where(hit, fn / (np.float32(far) - fmn * dbuf), np.float32(0)).astype(np.float32)
        mask = (seg == bid) & hit
        if background is not None:
            prgb, pz = self._plane_image(background, K, width, height, lt)
            use_plane = (~hit | ((pz > 0) & (pz < depth))) & ~mask  # the plane is behind every object point
            np.copyto(rgb, prgb, where=use_plane[..., None])
            np.copyto(depth, pz, where=use_plane)
        elif bg_image is not None:
            bgi = np.asarray(bg_image, np.uint8)
            if bgi.shape[:2] != (height, width):
                bgi = cv2.resize(bgi, (width, height), interpolation=cv2.INTER_AREA)
            np.copyto(rgb, bgi, where=~hit[..., None])
        else:
            rgb[~hit] = 0
        depth[depth > self.max_range] = 0
        out = {"depth_clean": depth, "mask": mask, "K": K.copy(), "T_cam_obj": T_cam_obj.copy()}
        if occluders == 0:
            out["mask_full"] = mask.copy()
        elif full_mask:
            for ob, _ in self._occluders:
                self._place(ob, None)
            _, _, _, _, seg2 = capture()
            out["mask_full"] = np.asarray(seg2).reshape(height, width) == bid
        if "mask_full" in out:
            n_full = int(out["mask_full"].sum())
            out["visib_fract"] = float(mask.sum()) / n_full if n_full else 0.0
        if rgb_noise if rgb_noise is not None else depth_noise:
            rgb = add_rgb_noise(rgb, rng)
        out["rgb"] = rgb
        out["depth"] = (
            add_depth_noise(depth, rng, K=K, max_range=self.max_range) if depth_noise else depth.copy()
        )
        return out

    def close(self) -> None:
        """Disconnect pybullet and delete the temporary files (idempotent)."""
        if self._cid is not None:
            try:
                self._pb.disconnect(physicsClientId=self._cid)
            except Exception:  # already disconnected (e.g. at interpreter shutdown)
                pass
            self._cid = None
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> "Renderer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _frame_from_normal(n: np.ndarray) -> np.ndarray:
    """(3,3) rotation whose z axis is ``n``."""
    n = np.asarray(n, float) / np.linalg.norm(n)
    a = np.array([1.0, 0, 0]) if abs(n[0]) < 0.9 else np.array([0, 1.0, 0])
    x = np.cross(a, n)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(n, x), n], 1)
