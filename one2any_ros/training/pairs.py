"""Training pairs: a reference and a query view of the SAME object at a rotation difference spread over
[0, max_rotation_deg], each rendered directly at the network input size with the shifted intrinsics of
the fixed crop rule, with the ground-truth ROC of every query pixel.

Per pair: the reference crop goes through ``make_view``/``make_reference`` exactly as at inference (its C
and s come from its own noisy masked depth), the query through ``model.inputs.query_arrays``; the target is
the query's noise-free surface point carried into the reference camera (and, for symmetric objects, through
every symmetry of the object: up to ``max_variants`` targets, the loss takes the best), minus C, over s.

Augmentation: a random textured plane with distractors (depth too), pasted texture images or nothing as
background; random light; occluders in front of the query (the crop then follows the VISIBLE mask, as at
inference: the query is rendered twice); RealSense-like depth noise and RGB noise (renderer); mask erosion
or dilation; low-resolution blur for objects that are small in the image.

Workers: ``PairDataset`` is a torch ``IterableDataset`` whose DataLoader workers each own a renderer and a
small pool of objects (reused for a few pairs each, since building an object costs more than rendering).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterator, Sequence

import cv2
import numpy as np

from one2any_ros.core import camera
from one2any_ros.core.errors import InputError
from one2any_ros.core.geometry import invert_transform
from one2any_ros.core.strict_config import from_dict_strict
from one2any_ros.core.model.inputs import CropWindow, crop_window_from_bbox, query_arrays, reference_arrays
from one2any_ros.core.reference import make_reference
from one2any_ros.core.frame import make_view
from one2any_ros.data.objects import SPLIT_RANGES, ObjectSpec, make_object, random_texture
from one2any_ros.data.render import Renderer, axis_angle_to_matrix, random_light, random_rotation, rotation_at_angle
from one2any_ros.data.render_gl import GlRenderer, make_renderer

COVISIBLE_BAND = 0.05  # x diameter: a little wider than the verifier's 0.03 (pixel rounding at grazing angles)
REF_POINTS = 256  # reference cloud points per pair (for validation ADD)
RENDERERS = ("pybullet", "gl", "auto")


@dataclass(frozen=True)
class PairConfig:
    input_size: int = 64
    output_stride: int = 2
    split: str = "train"
    max_rotation_deg: float = 180.0
    # with this probability the angle is drawn from [wide_rotation_deg, max_rotation_deg] instead of the whole range:
    # small baselines are learned early and the training-free search already solves them; wide ones are where the
    # network has to add something (issue #4) and need the samples
    wide_rotation_prob: float = 0.0
    wide_rotation_deg: float = 60.0
    image_size: tuple[int, int] = (640, 480)  # the virtual camera the crops are cut from (width, height)
    focal_range: tuple[float, float] = (450.0, 750.0)  # px
    pixel_diameter: tuple[float, float] = (40.0, 320.0)  # the object's apparent diameter, px (log-uniform)
    background_plane_prob: float = 0.7  # textured plane + distractors; else a pasted texture image (or none)
    background_none_prob: float = 0.1
    occluder_prob: float = 0.3  # query only
    max_occluders: int = 2
    min_visible_fraction: float = 0.35
    depth_noise: bool = True
    mask_erode_prob: float = 0.25
    mask_dilate_prob: float = 0.1
    lowres_prob: float = 0.5  # blur crops whose object is smaller in the image than the input size
    max_variants: int = 12  # symmetric targets per pair (continuous symmetry discretised in 360/max_variants)
    object_pool: int = 8  # objects a worker keeps
    pairs_per_object: int = 6  # mean number of pairs drawn from an object before it is replaced
    # pybullet | gl (render_gl.GlRenderer: moderngl, offscreen) | auto (gl where a GL context can be made)
    renderer: str = "pybullet"

    def __post_init__(self) -> None:
        if self.renderer not in RENDERERS:
            raise ValueError(f"unknown renderer {self.renderer!r} ({'|'.join(RENDERERS)})")
        if not 0.0 <= self.wide_rotation_prob <= 1.0 or not 0.0 <= self.wide_rotation_deg <= self.max_rotation_deg:
            raise ValueError(f"wide_rotation_prob {self.wide_rotation_prob} must lie in [0, 1] and wide_rotation_deg "
                             f"{self.wide_rotation_deg} in [0, max_rotation_deg {self.max_rotation_deg}]")

    @classmethod
    def from_dict(cls, d: dict) -> "PairConfig":
        return from_dict_strict(cls, d, "pair-sampler settings", lambda _, v: tuple(v) if isinstance(v, list) else v)

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def symmetry_transforms(obj: ObjectSpec, max_variants: int) -> np.ndarray:
    """(S,4,4) object-frame symmetries, identity first; continuous ones discretised; at most max_variants."""
    out = [np.eye(4)] + [np.asarray(T, float) for T in obj.symmetries_discrete]
    for sym in obj.symmetries_continuous:
        n = max(max_variants - len(out) + 1, 2)
        axis, off = np.asarray(sym["axis"], float), np.asarray(sym.get("offset", [0, 0, 0]), float)
        for k in range(1, n):
            R = axis_angle_to_matrix(axis, 2 * np.pi * k / n)
            T = np.eye(4)
            T[:3, :3] = R
            T[:3, 3] = off - R @ off
            out.append(T)
    return np.stack(out[:max_variants])


def pool_mean(x: np.ndarray, valid: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Numpy twin of ``network.pool_roc``: valid-weighted mean over r x r cells.
    x (...,C,N,N), valid (N,N) bool -> ((...,C,N/r,N/r), (N/r,N/r) bool)."""
    n = valid.shape[0]
    g = n // r
    v = valid.astype(np.float32).reshape(g, r, g, r)
    den = v.sum(axis=(1, 3))
    xs = x.reshape(x.shape[:-2] + (g, r, g, r))
    num = (xs * v).sum(axis=(-3, -1))
    ok = den > 0
    return np.where(ok, num / np.maximum(den, 1e-6), 0.0).astype(np.float32), ok


def covisible(points_ref: np.ndarray, ref: dict, diameter: float, *, band: float = COVISIBLE_BAND) -> np.ndarray:
    """Which query pixels the reference camera also saw. points_ref (S,3,...): each query pixel's surface point
    in the reference camera, one per symmetry variant; ref: the reference's "K", "depth_clean" (m) and "mask".
    A pixel is co-visible when, through some variant, it projects onto the reference's object mask within
    ``band`` x diameter of the reference's depth (in front of it means a wrong variant, behind it means hidden).
    Only these pixels can be matched to a reference pixel: the rest of the query surface is one the reference
    never showed. -> (...) bool."""
    depth, mask = ref["depth_clean"], ref["mask"]
    z = points_ref[:, 2]
    vi, ui, inside = camera.pixel_lookup(points_ref[:, 0], points_ref[:, 1], z, ref["K"], depth.shape)
    zr = depth[vi, ui]
    return (inside & mask[vi, ui] & (zr > 0) & (np.abs(zr - z) < band * diameter)).any(axis=0)


def _bbox(pts_uv: np.ndarray) -> tuple[int, int, int, int]:
    """Inclusive pixel bbox of the pixels whose centres fall inside a projected silhouette's extent."""
    umin, vmin = np.ceil(pts_uv.min(axis=0))  # pixel centres are at integer coordinates
    umax, vmax = np.floor(pts_uv.max(axis=0))
    return int(umin), int(max(umax, umin)), int(vmin), int(max(vmax, vmin))


class PairSampler:
    """Renders training/validation pairs; one renderer and object pool per instance (one per worker)."""

    def __init__(self, cfg: PairConfig, *, seed: int = 0, object_ids: Sequence[int] | None = None) -> None:
        self.cfg = cfg
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        self.object_ids = None if object_ids is None else list(object_ids)
        self._renderer: Renderer | GlRenderer | None = None
        self._pool: list[ObjectSpec] = []
        self._textures: list[np.ndarray] = []

    @property
    def renderer(self) -> Renderer | GlRenderer:
        """Made on first use, so in the process that renders (a DataLoader worker): a GL context must not
        cross a fork."""
        if self._renderer is None:
            self._renderer = make_renderer(self.cfg.renderer, seed=int(self.rng.integers(1 << 31)))
        return self._renderer

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # -- objects ------------------------------------------------------------------------------------
    def _new_object(self, rng: np.random.Generator) -> ObjectSpec:
        if self.object_ids is not None:
            return make_object(int(self.object_ids[rng.integers(len(self.object_ids))]))
        lo, hi = SPLIT_RANGES[self.cfg.split]
        return make_object(int(rng.integers(lo, hi)))

    def _object(self, rng: np.random.Generator) -> ObjectSpec:
        if len(self._pool) < self.cfg.object_pool:
            self._pool.append(self._new_object(rng))
            return self._pool[-1]
        i = int(rng.integers(len(self._pool)))
        if rng.random() < 1.0 / max(self.cfg.pairs_per_object, 1):
            self._pool[i] = self._new_object(rng)
        return self._pool[i]

    def _texture(self, rng: np.random.Generator) -> np.ndarray:
        if len(self._textures) < 16 or rng.random() < 0.05:
            tex = random_texture(rng, 128)
            if len(self._textures) < 16:
                self._textures.append(tex)
            else:
                self._textures[int(rng.integers(16))] = tex
            return tex
        return self._textures[int(rng.integers(len(self._textures)))]

    # -- one view ----------------------------------------------------------------------------------
    def _camera(self, rng: np.random.Generator) -> np.ndarray:
        w, h = self.cfg.image_size
        f = rng.uniform(*self.cfg.focal_range)
        return np.array([[f, 0, (w - 1) / 2 + rng.uniform(-8, 8)], [0, f * rng.uniform(0.99, 1.01), (h - 1) / 2 + rng.uniform(-8, 8)],
                         [0, 0, 1.0]])

    def _pose(self, obj: ObjectSpec, R: np.ndarray, K: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        w, h = self.cfg.image_size
        lo, hi = np.log(self.cfg.pixel_diameter)
        px = float(np.exp(rng.uniform(lo, hi)))
        z = float(np.clip(K[0, 0] * obj.diameter / px, 0.15, 3.5))
        r = 0.5 * obj.diameter
        ru, rv = K[0, 0] * r / z, K[1, 1] * r / z
        u = rng.uniform(min(ru, w / 2), max(w - 1 - ru, w / 2))
        v = rng.uniform(min(rv, h / 2), max(h - 1 - rv, h / 2))
        T = np.eye(4)
        T[:3, :3] = R
        T[:3, 3] = [(u - K[0, 2]) * z / K[0, 0], (v - K[1, 2]) * z / K[1, 1], z]
        return T

    def _window(self, obj: ObjectSpec, T: np.ndarray, K: np.ndarray) -> CropWindow:
        pts = obj.vertices @ T[:3, :3].T + T[:3, 3]
        uv, _ = camera.project(pts, K)
        return crop_window_from_bbox(*_bbox(uv), self.cfg.input_size)

    def _render(self, obj: ObjectSpec, T: np.ndarray, K: np.ndarray, rng: np.random.Generator, *, occluders: int,
                dilate_ok: bool = True) -> dict | None:
        """Render the crop of one view (following the visible mask when occluded); None when unusable.
        ``dilate_ok`` False (the reference): the mask is only ever eroded, since a mask spilling onto the
        background corrupts the reference's C and s for the whole sequence (a reference is captured with care)."""
        cfg, n = self.cfg, self.cfg.input_size
        win = self._window(obj, T, K)
        Kc = win.intrinsics(K)
        roll = rng.random()
        if roll < cfg.background_plane_prob:
            bg = self.renderer.sample_background(obj, T, rng, K=Kc)
        elif roll < cfg.background_plane_prob + cfg.background_none_prob:
            bg = None
        else:
            tex = self._texture(rng)
            y0, x0 = rng.integers(0, 64, 2)
            bg = np.ascontiguousarray(cv2.resize(tex[y0:y0 + 64, x0:x0 + 64], (n, n), interpolation=cv2.INTER_LINEAR))
        light = random_light(rng)
        seed = int(rng.integers(1 << 31))
        kw = dict(background=bg if bg is not None else "none", light=light, occluders=occluders,
                  depth_noise=cfg.depth_noise, full_mask=occluders > 0)
        out = self.renderer.render(obj, T, Kc, n, n, rng=np.random.default_rng(seed), **kw)
        if occluders > 0:
            if out.get("visib_fract", 1.0) < cfg.min_visible_fraction or out["mask"].sum() < camera.MIN_MASK_PIXELS:
                return None
            # the crop rule applies to the visible mask: re-render with the window of the visible pixels
            vs, us = np.nonzero(out["mask"])
            a = win.step
            # crop cell x covers image coordinates [u0 + x a - 0.5, u0 + (x + 1) a - 0.5)
            umin = int(np.ceil(win.u0 + us.min() * a - 0.5))
            umax = int(np.ceil(win.u0 + (us.max() + 1) * a - 0.5)) - 1
            vmin = int(np.ceil(win.v0 + vs.min() * a - 0.5))
            vmax = int(np.ceil(win.v0 + (vs.max() + 1) * a - 0.5)) - 1
            win = crop_window_from_bbox(umin, max(umax, umin), vmin, max(vmax, vmin), n)
            Kc = win.intrinsics(K)
            out = self.renderer.render(obj, T, Kc, n, n, rng=np.random.default_rng(seed), **kw)
        if out["mask"].sum() < camera.MIN_MASK_PIXELS:
            return None
        rgb = out["rgb"]
        if win.side < n and rng.random() < cfg.lowres_prob:  # the camera saw fewer pixels than the crop has
            small = cv2.resize(rgb, (max(win.side, 4), max(win.side, 4)), interpolation=cv2.INTER_AREA)
            rgb = cv2.resize(small, (n, n), interpolation=cv2.INTER_LINEAR)
        mask_in = out["mask"]
        roll = rng.random()
        if roll < cfg.mask_erode_prob or (dilate_ok is False and roll < cfg.mask_erode_prob + cfg.mask_dilate_prob):
            mask_in = cv2.erode(mask_in.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        elif roll < cfg.mask_erode_prob + cfg.mask_dilate_prob:
            mask_in = cv2.dilate(mask_in.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        return {"rgb": rgb, "depth": out["depth"], "depth_clean": out["depth_clean"], "mask": out["mask"],
                "mask_in": mask_in, "K": Kc, "T": T}

    # -- one pair ----------------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator | None = None, *, angle_deg: float | None = None,
               obj: ObjectSpec | None = None, max_tries: int = 20) -> dict[str, np.ndarray]:
        """One pair as a dict of fixed-shape numpy arrays (see ``_pair``); retries unusable draws."""
        rng = self.rng if rng is None else rng
        for _ in range(max_tries):
            o = obj if obj is not None else self._object(rng)
            pair = self._pair(o, rng, angle_deg)
            if pair is not None:
                return pair
        raise RuntimeError(f"no usable pair after {max_tries} tries (object {o.obj_id})")

    def _angle(self, rng: np.random.Generator) -> float:
        """Reference-to-query rotation, degrees: uniform over the range, or over its wide part (``wide_rotation_*``)."""
        cfg = self.cfg
        wide = cfg.wide_rotation_prob > 0 and rng.random() < cfg.wide_rotation_prob  # no draw when off: same streams
        low = cfg.wide_rotation_deg if wide else 0.0
        return float(rng.uniform(low, cfg.max_rotation_deg))

    def _pair(self, obj: ObjectSpec, rng: np.random.Generator, angle_deg: float | None) -> dict | None:
        cfg = self.cfg
        n, r = cfg.input_size, cfg.output_stride
        angle = self._angle(rng) if angle_deg is None else float(angle_deg)
        R_ref = random_rotation(rng)
        R_q = rotation_at_angle(R_ref, math.radians(angle), rng)
        K_ref, K_q = self._camera(rng), self._camera(rng)
        T_ref = self._pose(obj, R_ref, K_ref, rng)
        T_q = self._pose(obj, R_q, K_q, rng)
        ref = self._render(obj, T_ref, K_ref, rng, occluders=0, dilate_ok=False)
        if ref is None:
            return None
        occ = int(rng.integers(1, cfg.max_occluders + 1)) if rng.random() < cfg.occluder_prob else 0
        q = self._render(obj, T_q, K_q, rng, occluders=occ)
        if q is None:
            return None
        try:
            view = make_view(ref["rgb"], ref["depth"], ref["mask_in"], ref["K"])
            reference = make_reference(view)
        except InputError:
            return None
        s = reference.scale
        ref_x, ref_valid = reference_arrays(view.rgb, reference.roc_map, view.mask,
                                            camera.object_depth_mask(view.depth, view.K, view.mask))
        xyz = camera.depth_to_xyz_image(q["depth"], q["K"])
        q_valid = camera.object_depth_mask(q["depth"], q["K"], q["mask_in"])
        if q_valid.sum() < camera.MIN_MASK_PIXELS:
            return None
        q_x = query_arrays(q["rgb"], xyz, q["mask_in"], q_valid, s)
        # targets: the noise-free query surface in the reference camera through each symmetry, minus C, over s
        syms = symmetry_transforms(obj, cfg.max_variants)
        xyz_clean = camera.depth_to_xyz_image(q["depth_clean"], q["K"]).reshape(-1, 3).astype(np.float64)
        T_r_q = T_ref @ syms @ invert_transform(T_q)  # (S,4,4): query camera -> reference camera, per symmetry
        c = reference.T_refcam_C[:3, 3]
        gt = np.einsum("sij,nj->sin", T_r_q[:, :3, :3], xyz_clean) + (T_r_q[:, :3, 3] - c)[:, :, None]
        gt = (gt / s).astype(np.float32).reshape(len(syms), 3, n, n)
        gt_valid = q_valid & q["mask"] & (q["depth_clean"] > 0)
        gt_o, gt_ok = pool_mean(gt, gt_valid, r)
        covis_o, _ = pool_mean(covisible(gt * s + c[None, :, None, None], ref, obj.diameter)[None].astype(np.float32),
                               gt_valid, r)
        S = cfg.max_variants
        gt_full = np.repeat(gt_o[:1], S, axis=0)  # padded with the identity variant: harmless in a min
        gt_full[: len(syms)] = gt_o
        pts_o, pts_ok = pool_mean(xyz.transpose(2, 0, 1), q_valid, r)
        T_q_C = np.repeat((T_q @ invert_transform(T_ref) @ reference.T_refcam_C)[None], S, axis=0)  # padded: identity
        T_q_C[: len(syms)] = T_q @ invert_transform(syms) @ invert_transform(T_ref) @ reference.T_refcam_C
        cloud = reference.points_C
        idx = rng.choice(len(cloud), REF_POINTS, replace=len(cloud) < REF_POINTS)
        return {
            "ref": ref_x, "ref_valid": ref_valid, "query": q_x,
            "gt": gt_full, "gt_valid": gt_ok[None].astype(np.float32), "gt_covisible": covis_o,
            "q_points": pts_o, "q_points_valid": pts_ok[None].astype(np.float32),
            "T_query_C": T_q_C.astype(np.float64), "ref_points": cloud[idx].astype(np.float32),
            "scale": np.float32(s), "diameter": np.float32(obj.diameter), "angle_deg": np.float32(angle),
            "num_variants": np.int64(len(syms)), "obj_id": np.int64(obj.obj_id),
        }


def make_validation_pairs(cfg: PairConfig, n: int, *, seed: int = 1234, num_objects: int | None = None) -> list[dict]:
    """A fixed, deterministic set of n pairs on VALIDATION objects (never trained on), with the rotation
    differences spread evenly over [0, max_rotation_deg]."""
    from one2any_ros.data.objects import split_ids

    vcfg = PairConfig.from_dict({**cfg.to_dict(), "split": "val"})
    ids = split_ids("val", num_objects or max(n // 2, 1), seed=seed)
    sampler = PairSampler(vcfg, seed=seed, object_ids=ids)
    out = []
    try:
        for i in range(n):
            rng = np.random.default_rng([seed, i])
            angle = (i + 0.5) / n * vcfg.max_rotation_deg
            obj = make_object(ids[i % len(ids)])
            out.append(sampler.sample(rng, angle_deg=angle, obj=obj))
    finally:
        sampler.close()
    return out


try:  # the DataLoader wrapper needs torch; the sampler itself does not
    import torch
    from torch.utils.data import IterableDataset, get_worker_info

    class PairDataset(IterableDataset):
        """Endless stream of pairs; every (rank, worker) gets its own seed, renderer and object pool."""

        def __init__(self, cfg: PairConfig, *, seed: int = 0, rank: int = 0) -> None:
            super().__init__()
            self.cfg, self.seed, self.rank = cfg, seed, rank

        def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
            info = get_worker_info()
            wid = 0 if info is None else info.id
            torch.set_num_threads(1)
            sampler = PairSampler(self.cfg, seed=int(np.random.SeedSequence([self.seed, self.rank, wid]).generate_state(1)[0]))
            try:
                while True:
                    yield sampler.sample()
            finally:
                sampler.close()
except ImportError:  # pragma: no cover
    PairDataset = None  # type: ignore[assignment,misc]
