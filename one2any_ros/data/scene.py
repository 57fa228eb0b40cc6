"""The scene both renderers draw, and how a frame is put together: everything but rasterising.

``render.Renderer`` (pybullet) and ``render_gl.GlRenderer`` (OpenGL) subclass :class:`SceneRenderer` and
implement only ``_rasterise``: draw the object, the distractors and the occluders of a :class:`SceneDraw`
and return a :class:`Raster`. This module chooses the scene (texture, distractor and occluder pools, the
background plane and distractors resting on it, occluder poses, the light) and finishes the frame (the
analytic background plane, a pasted image or nothing behind, range limits, visible fraction, sensor noise).
Given the same ``rng`` both renderers therefore draw the same scene, in the same order of random draws.

Background plane: computed analytically (ray-plane depth, remapped texture, the same Lambert light) and
z-composited, because a full-screen surface costs pybullet's tiny renderer ~50 ms at 640x480 against
~20 ms for the object alone. Depth beyond ``max_range`` is 0, like a real sensor's range limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from one2any_ros.data.objects import ObjectSpec, random_texture
from one2any_ros.data.poses import axis_angle_to_matrix, random_rotation
from one2any_ros.data.sensor import MAX_RANGE_M, MIN_RANGE_M, add_depth_noise, add_rgb_noise

DISTRACTOR_POOL = 8  # boxes and spheres that may rest on the background plane
OCCLUDER_POOL = 4  # small boxes that may stand between the camera and the object
TEXTURE_POOL = 12  # textures of the plane, the distractors and the occluders


def distractor_shapes(n: int = DISTRACTOR_POOL) -> list[tuple[str, np.ndarray]]:
    """("box" | "sphere", half extents (3,) m) of the distractor pool: fixed draws, the same in every
    renderer (a sphere's half extents are its radius three times)."""
    rng = np.random.default_rng(1234)
    out = []
    for i in range(n):
        if i % 3 != 2:
            out.append(("box", rng.uniform(0.03, 0.12, 3)))
        else:
            r = float(rng.uniform(0.03, 0.08))
            out.append(("sphere", np.array([r, r, r])))
    return out


def occluder_half_extents(n: int = OCCLUDER_POOL) -> list[np.ndarray]:
    """Half extents (3,) m of the occluder boxes, smallest first."""
    return [np.array([0.012 + 0.008 * i, 0.02 + 0.006 * i, 0.01]) for i in range(n)]


def texture_pool(seed: int, n: int = TEXTURE_POOL) -> list[np.ndarray]:
    """The renderer's textures (256x256 RGB uint8), a function of its seed."""
    tex_rng = np.random.default_rng([seed, 77])
    return [random_texture(tex_rng, 256) for _ in range(n)]


@dataclass
class BackgroundSpec:
    """A reproducible background: a textured plane (normal n towards the camera, points x with
    n·x = offset, camera frame; ``center`` is its texture origin), lit like the object, plus distractor
    placements. A renderer's ``sample_background`` makes one; pass it to ``render(background=...)`` to keep
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


@dataclass
class SceneDraw:
    """What a rasteriser draws: the object, and the distractors and occluders as (pool index, T_cam (4,4),
    texture index); the camera (K, width, height); the light (keys as :func:`random_light` gives them);
    ``full_mask``: also the object's unoccluded silhouette."""

    obj: ObjectSpec
    T_cam_obj: np.ndarray
    K: np.ndarray
    width: int
    height: int
    distractors: list[tuple[int, np.ndarray, int]]
    occluders: list[tuple[int, np.ndarray, int]]
    light: dict
    full_mask: bool


@dataclass
class Raster:
    """A rasteriser's images: rgb (H,W,3) uint8 (writable), depth (H,W) float32 m (0 where nothing was
    drawn), hit (H,W) bool (something drawn), mask (H,W) bool (the object visible), mask_full (H,W) bool
    (the object alone; only when asked)."""

    rgb: np.ndarray
    depth: np.ndarray
    hit: np.ndarray
    mask: np.ndarray
    mask_full: np.ndarray | None = None


class SceneRenderer:
    """A renderer's scene and frame, shared; subclasses rasterise (``_rasterise``). Holds the randomness
    (``seed``), the texture pool, the distractor and occluder pools' shapes and the sensor's range."""

    DISTRACTOR_POOL = DISTRACTOR_POOL
    OCCLUDER_POOL = OCCLUDER_POOL
    TEXTURE_POOL = TEXTURE_POOL

    def __init__(self, *, seed: int = 0, max_range: float = MAX_RANGE_M) -> None:
        self._rng = np.random.default_rng(seed)
        self.max_range = max_range
        self._ray_cache: dict = {}
        self._textures = texture_pool(seed, self.TEXTURE_POOL)
        self._distractor_shapes = distractor_shapes(self.DISTRACTOR_POOL)
        self._occluder_half_extents = occluder_half_extents(self.OCCLUDER_POOL)

    def _rasterise(self, scene: SceneDraw) -> Raster:
        """Draw the object, the distractors and the occluders: the one thing a renderer adds."""
        raise NotImplementedError

    # -- the scene -------------------------------------------------------------------------------
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
            self._place_distractors(spec, obj, T_cam_obj, rng, K, max_distractors)
        return spec

    def _place_distractors(self, spec: BackgroundSpec, obj: ObjectSpec, T_cam_obj: np.ndarray,
                           rng: np.random.Generator, K: np.ndarray, max_distractors: int) -> None:
        """Up to ``max_distractors`` pool shapes resting on the plane, appended to ``spec.distractors``; a spot
        that could cover the object (bounding-sphere test in the image) or lies too near is tried again, 4 times."""
        nrm, center, t = spec.normal, spec.center, T_cam_obj[:3, 3]
        Rp = frame_from_normal(nrm)
        r_obj = 0.5 * obj.diameter
        uv_o = K[:2, :2] @ (t[:2] / t[2]) + K[:2, 2]
        r_o_px = K[0, 0] * r_obj / max(t[2] - r_obj, 0.05)
        pool = self._distractor_shapes
        for idx in rng.permutation(len(pool))[: int(rng.integers(0, max_distractors + 1))]:
            he = pool[idx][1]
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

    def _occluder_poses(self, n: int, T_cam_obj: np.ndarray, obj: ObjectSpec,
                        rng: np.random.Generator) -> list[tuple[int, np.ndarray, int]]:
        """(pool index, T (4,4), texture) of ``n`` small boxes between the camera and the object, over a
        random part of its silhouette."""
        return [(i, occluder_pose(T_cam_obj, obj.diameter, rng), int(rng.integers(len(self._textures))))
                for i in range(n)]

    # -- the frame -------------------------------------------------------------------------------
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
        Rp = frame_from_normal(n)
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

    def _resolve_background(self, background: str | np.ndarray | BackgroundSpec | None, obj: ObjectSpec,
                            T_cam_obj: np.ndarray, rng: np.random.Generator,
                            K: np.ndarray) -> tuple[BackgroundSpec | None, np.ndarray | None]:
        """``render``'s ``background`` as (a plane or None, an image to paste or None); "random" draws the plane."""
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
        return background, bg_image

    def _composite(self, ras: Raster, background: BackgroundSpec | None, bg_image: np.ndarray | None,
                   K: np.ndarray, width: int, height: int, light: dict) -> None:
        """In place in ``ras.rgb`` / ``ras.depth``: the plane (behind every object point), the pasted image
        where nothing was drawn, or black."""
        rgb, depth, hit, mask = ras.rgb, ras.depth, ras.hit, ras.mask
        if background is not None:
            prgb, pz = self._plane_image(background, K, width, height, light)
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
        rng = self._rng if rng is None else rng
        K = np.asarray(K, np.float64)
        T_cam_obj = np.asarray(T_cam_obj, np.float64)
        width, height = int(width), int(height)
        background, bg_image = self._resolve_background(background, obj, T_cam_obj, rng, K)
        occ = self._occluder_poses(min(occluders, self.OCCLUDER_POOL), T_cam_obj, obj, rng)
        lt = {**random_light(rng), **(light or {})}
        distractors = list(background.distractors) if background is not None else []
        ras = self._rasterise(SceneDraw(obj, T_cam_obj, K, width, height, distractors, occ, lt,
                                        full_mask=occluders > 0 and full_mask))
        rgb, depth, mask = ras.rgb, ras.depth, ras.mask
        self._composite(ras, background, bg_image, K, width, height, lt)
        depth[depth > self.max_range] = 0
        out = {"depth_clean": depth, "mask": mask, "K": K.copy(), "T_cam_obj": T_cam_obj.copy()}
        _add_full_mask(out, ras, occluders)
        if rgb_noise if rgb_noise is not None else depth_noise:
            rgb = add_rgb_noise(rgb, rng)
        out["rgb"] = rgb
        out["depth"] = (
            add_depth_noise(depth, rng, K=K, max_range=self.max_range) if depth_noise else depth.copy()
        )
        return out


def _add_full_mask(out: dict, ras: Raster, occluders: int) -> None:
    """``mask_full`` (the unoccluded silhouette) and ``visib_fract`` into ``out`` when they are known."""
    mask = out["mask"]
    if occluders == 0:
        out["mask_full"] = mask.copy()
    elif ras.mask_full is not None:
        out["mask_full"] = ras.mask_full
    if "mask_full" in out:
        n_full = int(out["mask_full"].sum())
        out["visib_fract"] = float(mask.sum()) / n_full if n_full else 0.0


def frame_from_normal(n: np.ndarray) -> np.ndarray:
    """(3,3) rotation whose z axis is ``n``."""
    n = np.asarray(n, float) / np.linalg.norm(n)
    a = np.array([1.0, 0, 0]) if abs(n[0]) < 0.9 else np.array([0, 1.0, 0])
    x = np.cross(a, n)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(n, x), n], 1)
