"""Procedural textured objects (and the few real textured assets shipped in pip packages).

An object is a deterministic function of an integer id; the id range decides the split, so test
objects are never trained on (docs/architecture.md, Objects and splits):

    train: [0, 1_000_000)   val: [1_000_000, 2_000_000)   test: [2_000_000, 3_000_000)
    real test assets (pybullet_data duck, mug, jenga, soccer ball): REAL_TEST_IDS, inside the test range

Object frame: origin at the bounding-box centre, metres. UVs follow the OBJ convention (v = 0 at the
bottom row of the texture image). Objects are asymmetric by default (random texture and, for the
composite shapes, parts); ``symmetric=True`` (or by id for ~10 % of them) gives a rotationally
textured body of revolution (continuous symmetry about z) or a plain box (discrete 180° symmetries),
with the symmetry recorded in BOP form.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import string
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

TRAIN_RANGE = (0, 1_000_000)
VAL_RANGE = (1_000_000, 2_000_000)
TEST_RANGE = (2_000_000, 3_000_000)
SPLIT_RANGES = {"train": TRAIN_RANGE, "val": VAL_RANGE, "test": TEST_RANGE}
REAL_TEST_IDS = {2_999_000: "duck", 2_999_001: "mug", 2_999_002: "jenga", 2_999_003: "soccerball"}
PROCEDURAL_TEST_RANGE = (TEST_RANGE[0], min(REAL_TEST_IDS))  # procedural test ids stop below the real ones
SYMMETRIC_FRACTION = 0.1
DIAMETER_RANGE_M = (0.05, 0.30)
TEXTURE_SIZE = 512
_SALT = 0x0B2A  # mixes into every per-object seed, so ids do not collide with other uses of the same integers

ASYMMETRIC_SHAPES = (
    "box",
    "cylinder",
    "frustum",
    "ellipsoid",
    "capsule",
    "bottle",
    "mug",
    "bowl",
    "box_handle",
    "l_shape",
    "hammer",
    "toy",
    "flashlight",
)
SYMMETRIC_SHAPES = ("cylinder", "frustum", "capsule", "bottle", "bowl", "spheroid", "plain_box")
# asymmetric-labelled shapes whose geometry alone is symmetric (boxes, ellipsoids: discrete; lathe bodies:
# continuous): only the texture, which differs face to face, tells their poses apart (scored by ADD)
TEXTURE_ONLY_SHAPES = ("box", "cylinder", "frustum", "ellipsoid", "capsule", "bottle", "bowl")
FAMILIES = ("texture_only", "shape_asymmetric", "symmetric")


def split_of(obj_id: int) -> str:
    """'train' | 'val' | 'test' for an object id; ValueError outside all ranges."""
    for name, (lo, hi) in SPLIT_RANGES.items():
        if lo <= obj_id < hi:
            return name
    raise ValueError(f"object id {obj_id} is outside every split range")


def split_ids(split: str, n: int, *, seed: int = 0, include_real: bool = False,
              family: str | None = None) -> list[int]:
    """``n`` distinct object ids of ``split``, a deterministic function of (split, n, seed, family).

    ``include_real`` (test only) puts the available real assets first. ``family`` keeps only procedural
    objects of that family (``FAMILIES``; ``object_family``), drawn from the same sequence."""
    if split not in SPLIT_RANGES:
        raise ValueError(f"unknown split {split!r} (train|val|test)")
    if family is not None and family not in FAMILIES:
        raise ValueError(f"unknown family {family!r} ({'|'.join(FAMILIES)})")
    out: list[int] = []
    if include_real and split == "test" and family is None:
        out = real_test_object_ids()[:n]
    lo, hi = PROCEDURAL_TEST_RANGE if split == "test" else SPLIT_RANGES[split]
    rng = np.random.default_rng([seed, _SALT, lo])
    if family is None:
        picked = rng.choice(hi - lo, size=n - len(out), replace=False) + lo
        return out + [int(i) for i in picked]
    # a texture-only object is about 1 in 2, a symmetric one 1 in 10: draw enough, keep the family's
    picked = rng.choice(hi - lo, size=min(hi - lo, 40 * n + 100), replace=False) + lo
    out += [int(i) for i in picked if object_family(int(i)) == family][: n - len(out)]
    if len(out) < n:
        raise ValueError(f"only {len(out)} {family} objects found in split {split!r}")
    return out


def _shape_draw(obj_id: int, symmetric: bool | None = None) -> tuple[np.random.Generator, bool, str]:
    """The object's generator after its first draws: (rng, symmetric, shape) - the one place they are made."""
    rng = np.random.default_rng([_SALT, int(obj_id)])
    sym_by_id = rng.random() < SYMMETRIC_FRACTION
    sym = sym_by_id if symmetric is None else bool(symmetric)
    return rng, sym, str(rng.choice(SYMMETRIC_SHAPES if sym else ASYMMETRIC_SHAPES))


def object_family(obj_id: int) -> str:
    """``symmetric`` (shape and texture), ``texture_only`` (a symmetric shape told apart only by its texture)
    or ``shape_asymmetric`` for a procedural object id, without building it."""
    _, sym, shape = _shape_draw(obj_id)
    if sym:
        return "symmetric"
    return "texture_only" if shape in TEXTURE_ONLY_SHAPES else "shape_asymmetric"


# --------------------------------------------------------------------------------------------------
# the object representation


@dataclass(eq=False)
class ObjectSpec:
    """A textured triangle mesh in its object frame (metres)."""

    obj_id: int
    name: str
    vertices: np.ndarray  # (N,3) float64 m
    faces: np.ndarray  # (F,3) int32, counter-clockwise seen from outside
    uvs: np.ndarray  # (N,2) float32, OBJ convention (v up)
    normals: np.ndarray  # (N,3) float32 unit
    texture: np.ndarray  # (H,W,3) uint8 RGB
    symmetric: bool = False
    symmetries_discrete: list[np.ndarray] = field(default_factory=list)  # (4,4) m, identity excluded
    symmetries_continuous: list[dict] = field(default_factory=list)  # {"axis": [3], "offset": [3] m}
    split: str = "train"
    source: str = "procedural"
    shape_symmetry: str = "none"  # symmetry of the geometry alone: none | continuous | discrete

    @property
    def key(self) -> str:
        """Unique per distinct object (same id built with a forced symmetry flag differs)."""
        return f"{self.obj_id}{'s' if self.symmetric else ''}"

    @functools.cached_property
    def fingerprint(self) -> str:
        """Hash of the geometry and texture (the renderer's cache key: two specs with one id never mix)."""
        h = hashlib.blake2b(digest_size=8)
        for a in (self.vertices, self.faces, self.uvs, self.texture):
            h.update(np.ascontiguousarray(a).tobytes())
        return f"{self.key}-{h.hexdigest()}"

    @functools.cached_property
    def diameter(self) -> float:
        """Largest distance between two vertices, metres."""
        return _diameter(self.vertices)

    @property
    def bbox_min(self) -> np.ndarray:
        return self.vertices.min(axis=0)

    @property
    def extents(self) -> np.ndarray:
        return self.vertices.max(axis=0) - self.vertices.min(axis=0)

    def sample_surface(self, n: int, *, seed: int = 0) -> np.ndarray:
        """(n,3) points uniformly on the surface (area-weighted), metres, deterministic in seed."""
        return sample_surface(self.vertices, self.faces, n, seed=seed)

    def export_obj(self, directory: str | os.PathLike, *, stem: str | None = None) -> Path:
        """Write ``<stem>.obj``, ``<stem>.mtl`` and ``<stem>.png`` (metres); returns the .obj path."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        stem = stem or f"obj_{self.key}"
        cv2.imwrite(
            str(directory / f"{stem}.png"), self.texture[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1]
        )
        (directory / f"{stem}.mtl").write_text(
            f"newmtl m0\nKa 1 1 1\nKd 1 1 1\nKs 0.2 0.2 0.2\nNs 20\nillum 2\nmap_Kd {stem}.png\n"
        )
        buf = io.StringIO()
        buf.write(f"mtllib {stem}.mtl\no {stem}\n")
        np.savetxt(buf, self.vertices, fmt="v %.6f %.6f %.6f")
        np.savetxt(buf, self.uvs, fmt="vt %.6f %.6f")
        np.savetxt(buf, self.normals, fmt="vn %.5f %.5f %.5f")
        buf.write("usemtl m0\n")
        f1 = self.faces + 1
        np.savetxt(buf, np.repeat(f1, 3, axis=1), fmt="f %d/%d/%d %d/%d/%d %d/%d/%d")
        path = directory / f"{stem}.obj"
        path.write_text(buf.getvalue())
        return path

    def vertex_colors(self) -> np.ndarray:
        """(N,3) uint8 texture colour at each vertex's UV (for BOP .ply vertex colours)."""
        h, w = self.texture.shape[:2]
        u = np.clip(np.round(self.uvs[:, 0] * (w - 1)), 0, w - 1).astype(int)
        v = np.clip(np.round((1.0 - self.uvs[:, 1]) * (h - 1)), 0, h - 1).astype(int)
        return self.texture[v, u]


def _diameter(vertices: np.ndarray) -> float:
    pts = np.unique(np.round(vertices, 6), axis=0)
    if len(pts) > 8:
        try:
            from scipy.spatial import ConvexHull

            pts = pts[ConvexHull(pts).vertices]
        except Exception:  # degenerate (flat) point sets: fall back to all points
            pass
    if len(pts) > 3000:
        pts = pts[np.random.default_rng(0).choice(len(pts), 3000, replace=False)]
    d2 = ((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1)
    return float(np.sqrt(d2.max()))


def sample_surface(vertices: np.ndarray, faces: np.ndarray, n: int, *, seed: int = 0) -> np.ndarray:
    """(n,3) area-weighted uniform samples on a triangle mesh; same units as vertices."""
    tri = vertices[faces]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(faces), size=n, p=area / area.sum())
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    a, b, c = 1 - s, s * (1 - r2), s * r2
    t = tri[idx]
    return a[:, None] * t[:, 0] + b[:, None] * t[:, 1] + c[:, None] * t[:, 2]


# --------------------------------------------------------------------------------------------------
# textures


def _palette(rng: np.random.Generator, k: int | None = None) -> np.ndarray:
    """(k,3) uint8 RGB colours: a random scheme (analogous, complementary or wild)."""
    k = int(rng.integers(2, 6)) if k is None else k
    h0 = rng.random()
    scheme = rng.integers(3)
    if scheme == 0:
        hues = h0 + rng.uniform(-0.08, 0.08, k)
    elif scheme == 1:
        hues = h0 + 0.5 * rng.integers(0, 2, k) + rng.uniform(-0.05, 0.05, k)
    else:
        hues = rng.random(k)
    sat = rng.uniform(0.25, 1.0, k)
    val = rng.uniform(0.2, 1.0, k)
    val[rng.integers(k)] = rng.uniform(0.75, 1.0)  # keep one light and one dark colour for contrast
    val[rng.integers(k)] = rng.uniform(0.1, 0.4)
    hsv = np.stack([(hues % 1.0) * 179, sat * 255, val * 255], axis=1).astype(np.uint8)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]


def _lut(rng: np.random.Generator, palette: np.ndarray) -> np.ndarray:
    """(256,3) uint8 colour map through the palette (smooth or posterised)."""
    k = len(palette)
    x = np.arange(256) / 255.0
    if rng.random() < 0.4:  # posterised bands
        edges = np.sort(rng.random(k - 1))
        return palette[np.searchsorted(edges, x)]
    pos = np.concatenate([[0.0], np.sort(rng.random(k - 2)), [1.0]]) if k > 2 else np.array([0.0, 1.0])
    return np.stack([np.interp(x, pos, palette[:, c]) for c in range(3)], axis=1).astype(np.uint8)


def _fbm(rng: np.random.Generator, size: int, *, base: int | None = None, octaves: int = 4) -> np.ndarray:
    """(size,size) float32 fractal value noise in [0,1]."""
    base = int(rng.integers(2, 9)) if base is None else base
    acc = np.zeros((size, size), np.float32)
    amp, tot = 1.0, 0.0
    for o in range(octaves):
        s = min(base * 2**o, size)
        acc += amp * cv2.resize(
            rng.random((s, s), dtype=np.float32), (size, size), interpolation=cv2.INTER_CUBIC
        )
        tot += amp
        amp *= float(rng.uniform(0.35, 0.6))
    acc /= tot
    lo, hi = float(acc.min()), float(acc.max())
    return (acc - lo) / max(hi - lo, 1e-6)


def _base_field(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size,size) float32 scalar field in [0,1]: noise, stripes, checker, rings, plaid or gradient."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    kind = rng.integers(6)
    th = rng.uniform(0, np.pi)
    xr = x * np.cos(th) + y * np.sin(th)
    yr = -x * np.sin(th) + y * np.cos(th)
    if kind == 0:
        return _fbm(rng, size)
    warp = _fbm(rng, size, base=3, octaves=2) * rng.uniform(0, 0.15)
    if kind == 1:  # stripes
        f = rng.uniform(2, 14)
        return 0.5 + 0.5 * np.sin(2 * np.pi * f * (xr + warp))
    if kind == 2:  # checker
        c = rng.uniform(3, 12)
        return (
            ((np.floor((xr + warp) * c) + np.floor(yr * c)) % 2) * 0.8 + 0.1 * _fbm(rng, size, octaves=2)
        ).astype(np.float32)
    if kind == 3:  # rings around a random centre
        cx, cy = rng.random(2)
        r = np.hypot(x - cx, y - cy)
        return 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(3, 10) * (r + warp))
    if kind == 4:  # plaid
        f1, f2 = rng.uniform(2, 8, 2)
        return (0.25 * (2 + np.sin(2 * np.pi * f1 * xr) + np.sin(2 * np.pi * f2 * yr))).astype(np.float32)
    return np.clip(xr / max(float(xr.max()), 1e-6) + warp, 0, 1)  # gradient


_FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
    cv2.FONT_HERSHEY_PLAIN,
)
_CHARS = string.ascii_uppercase + string.ascii_lowercase + string.digits + "#%&@"


def _colour(palette: np.ndarray, rng: np.random.Generator) -> tuple[int, int, int]:
    c = palette[rng.integers(len(palette))].astype(int)
    if rng.random() < 0.3:
        c = 255 - c
    return tuple(int(v) for v in c)


def _overlays(img: np.ndarray, rng: np.random.Generator, palette: np.ndarray) -> None:
    """Draw blobs, text, lines and labels in place: the unique features that make poses observable."""
    size = img.shape[0]
    for _ in range(int(rng.integers(2, 12))):  # blobs
        c = (int(rng.integers(size)), int(rng.integers(size)))
        ax = (int(rng.integers(size // 40, size // 6)), int(rng.integers(size // 40, size // 6)))
        th = -1 if rng.random() < 0.7 else int(rng.integers(2, 8))
        cv2.ellipse(img, c, ax, float(rng.uniform(0, 180)), 0, 360, _colour(palette, rng), th, cv2.LINE_AA)
    for _ in range(int(rng.integers(0, 5))):  # polygons and lines
        pts = rng.integers(0, size, (int(rng.integers(2, 6)), 1, 2)).astype(np.int32)
        if rng.random() < 0.5:
            cv2.fillPoly(img, [pts], _colour(palette, rng), cv2.LINE_AA)
        else:
            cv2.polylines(img, [pts], False, _colour(palette, rng), int(rng.integers(2, 10)), cv2.LINE_AA)
    if rng.random() < 0.5:  # a label patch
        x0, y0 = (int(v) for v in rng.integers(0, size * 3 // 4, 2))
        w, h = int(rng.integers(size // 6, size // 2)), int(rng.integers(size // 10, size // 3))
        cv2.rectangle(img, (x0, y0), (x0 + w, y0 + h), _colour(palette, rng), -1)
        cv2.rectangle(img, (x0, y0), (x0 + w, y0 + h), _colour(palette, rng), int(rng.integers(1, 5)))
    for _ in range(int(rng.integers(1, 7))):  # text
        txt = "".join(rng.choice(list(_CHARS), int(rng.integers(2, 9))))
        scale = float(rng.uniform(0.6, 3.5)) * size / 512
        org = (int(rng.integers(-size // 8, size * 3 // 4)), int(rng.integers(size // 10, size)))
        cv2.putText(
            img,
            txt,
            org,
            _FONTS[rng.integers(len(_FONTS))],
            scale,
            _colour(palette, rng),
            max(1, int(rng.integers(1, 5) * size / 512)),
            cv2.LINE_AA,
        )


def random_texture(
    rng: np.random.Generator, size: int = TEXTURE_SIZE, *, ring_only: bool = False, overlays: bool = True
) -> np.ndarray:
    """(size,size,3) uint8 RGB random texture. ``ring_only``: colour varies along rows only (for the
    rotationally symmetric objects, whose u coordinate is the angle)."""
    palette = _palette(rng)
    lut = _lut(rng, palette)
    if ring_only:
        col = (
            _fbm(rng, size)[:, :1]
            if rng.random() < 0.5
            else (
                0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 10) * np.linspace(0, 1, size, dtype=np.float32))
            )[:, None]
        )
        return np.ascontiguousarray(np.broadcast_to(lut[(col * 255).astype(np.uint8)], (size, size, 3)))
    img = lut[(_base_field(rng, size) * 255).astype(np.uint8)]
    img = np.ascontiguousarray(img)
    if overlays:
        _overlays(img, rng, palette)
    if rng.random() < 0.3:  # fine grain, like print or material
        grain = cv2.resize(
            rng.normal(0, rng.uniform(3, 12), (size // 2, size // 2)).astype(np.float32),
            (size, size),
            interpolation=cv2.INTER_NEAREST,
        )
        img = np.clip(img + grain[..., None], 0, 255).astype(np.uint8)
    return img


# --------------------------------------------------------------------------------------------------
# meshes with UVs. Builders return (V (n,3), F (m,3), UV (n,2) with v up, weld (n,) group ids for normals)


class _Builder:
    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, part: tuple, T: np.ndarray | None = None) -> None:
        V, F, UV, W = part
        if T is not None:
            V = V @ T[:3, :3].T + T[:3, 3]
        V, F = _orient_outward(V, F)
        self.parts.append((V, F, UV, W))

    def build(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        Vs, Fs, UVs, Ns = [], [], [], []
        off = 0
        for V, F, UV, W in self.parts:
            Vs.append(V)
            Fs.append(F + off)
            UVs.append(UV)
            Ns.append(_vertex_normals(V, F, W))
            off += len(V)
        return (
            np.concatenate(Vs),
            np.concatenate(Fs).astype(np.int32),
            np.concatenate(UVs).astype(np.float32),
            np.concatenate(Ns).astype(np.float32),
        )


def _orient_outward(V: np.ndarray, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    tri = V[F]
    area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    F = F[area > 1e-14]
    tri = V[F]
    vol = np.einsum(
        "ij,ij->i", tri[:, 0] - V.mean(0), np.cross(tri[:, 1] - V.mean(0), tri[:, 2] - V.mean(0))
    ).sum()
    return V, (F if vol >= 0 else F[:, ::-1].copy())


def _vertex_normals(V: np.ndarray, F: np.ndarray, weld: np.ndarray) -> np.ndarray:
    """Area-weighted normals accumulated over weld groups (seams and poles share one normal)."""
    fn = np.cross(V[F[:, 1]] - V[F[:, 0]], V[F[:, 2]] - V[F[:, 0]])
    acc = np.zeros((int(weld.max()) + 1, 3))
    for k in range(3):
        np.add.at(acc, weld[F[:, k]], fn)
    n = acc[weld]
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def _rect_uv(u: np.ndarray, v: np.ndarray, rect: tuple[float, float, float, float]) -> np.ndarray:
    """Map (u,v) in [0,1]^2 into an image-space rect (x0, y0, x1, y1) fractions; returns OBJ uv (v up)."""
    x0, y0, x1, y1 = rect
    return np.stack([x0 + u * (x1 - x0), 1.0 - (y0 + v * (y1 - y0))], axis=-1)


def _random_rect(
    rng: np.random.Generator, lo: float = 0.3, hi: float = 0.7
) -> tuple[float, float, float, float]:
    w, h = rng.uniform(lo, hi, 2)
    x0, y0 = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
    return (x0, y0, x0 + w, y0 + h)


def _box(ext: np.ndarray, rect: tuple[float, float, float, float]) -> tuple:
    """Axis-aligned box centred at the origin; each face gets its own cell of a 3x2 grid in rect."""
    hx, hy, hz = np.asarray(ext, float) / 2
    # per face: normal axis, sign, two tangent axes
    faces = [(0, 1, 1, 2), (0, -1, 2, 1), (1, 1, 2, 0), (1, -1, 0, 2), (2, 1, 0, 1), (2, -1, 1, 0)]
    h = np.array([hx, hy, hz])
    V, UV, F = [], [], []
    x0, y0, x1, y1 = rect
    for i, (ax, sg, t1, t2) in enumerate(faces):
        cu, cv_ = i % 3, i // 3
        cell = (
            x0 + (x1 - x0) * cu / 3,
            y0 + (y1 - y0) * cv_ / 2,
            x0 + (x1 - x0) * (cu + 1) / 3,
            y0 + (y1 - y0) * (cv_ + 1) / 2,
        )
        q = np.zeros((4, 3))
        q[:, ax] = sg * h[ax]
        q[:, t1] = np.array([-1, 1, 1, -1]) * h[t1]
        q[:, t2] = np.array([-1, -1, 1, 1]) * h[t2]
        V.append(q)
        UV.append(_rect_uv(np.array([0, 1, 1, 0.0]), np.array([1, 1, 0, 0.0]), cell))
        b = 4 * i
        F += [[b, b + 1, b + 2], [b, b + 2, b + 3]]
    V = np.concatenate(V)
    return V, np.array(F), np.concatenate(UV), np.arange(len(V))


def _lathe(
    segments: list[np.ndarray], rect: tuple, *, n_seg: int = 40, sx: float = 1.0, sy: float = 1.0
) -> tuple:
    """Surface of revolution about z. ``segments``: list of (m,2) polylines of (r, z); a new segment starts
    a sharp edge. u = angle, v = arc length along the whole profile."""
    lengths = [np.linalg.norm(np.diff(s, axis=0), axis=1) for s in segments]
    total = sum(float(seg_len.sum()) for seg_len in lengths)
    th = np.linspace(0, 2 * np.pi, n_seg + 1)
    V, F, UV, W = [], [], [], []
    off, arc, wid = 0, 0.0, 0
    for seg, ln in zip(segments, lengths):
        m = len(seg)
        s = arc + np.concatenate([[0.0], np.cumsum(ln)])
        arc = s[-1]
        r, z = seg[:, 0][:, None], seg[:, 1][:, None]
        V.append(
            np.stack(
                [sx * r * np.cos(th), sy * r * np.sin(th), np.broadcast_to(z, (m, n_seg + 1))], -1
            ).reshape(-1, 3)
        )
        uu, vv = np.meshgrid(th / (2 * np.pi), s / total)
        UV.append(_rect_uv(uu.ravel(), vv.ravel(), rect))
        w = (
            np.arange(m)[:, None] * n_seg + np.arange(n_seg + 1)[None] % n_seg
        )  # seam column welds to column 0
        w = np.where(seg[:, 0][:, None] < 1e-9, np.arange(m)[:, None] * n_seg, w)  # poles weld to one normal
        W.append(wid + w.ravel())
        wid += m * n_seg
        j, k = np.meshgrid(np.arange(m - 1), np.arange(n_seg), indexing="ij")
        a = off + j * (n_seg + 1) + k
        b, c, d = a + 1, a + n_seg + 2, a + n_seg + 1
        F.append(
            np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
        )
        off += m * (n_seg + 1)
    return np.concatenate(V), np.concatenate(F), np.concatenate(UV), np.concatenate(W)


def _arc(n: int, a0: float, a1: float, r: float, cz: float, cr: float = 0.0) -> np.ndarray:
    t = np.linspace(a0, a1, n)
    return np.stack([cr + r * np.cos(t), cz + r * np.sin(t)], 1)


def _tube_arc(R: float, rt: float, a: float, rect: tuple, *, n: int = 24, m: int = 12) -> tuple:
    """A handle: tube of radius rt along an arc of radius R in the x-z plane, angles [-a, a] about +x."""
    phi = np.linspace(-a, a, n)
    psi = np.linspace(0, 2 * np.pi, m + 1)
    P, S = np.meshgrid(phi, psi, indexing="ij")
    cr = R + rt * np.cos(S)
    V = np.stack([cr * np.cos(P), rt * np.sin(S), cr * np.sin(P)], -1).reshape(-1, 3)
    UV = _rect_uv((S / (2 * np.pi)).ravel(), ((P + a) / (2 * a)).ravel(), rect)
    W = (np.arange(n)[:, None] * m + np.arange(m + 1)[None] % m).ravel()
    i, k = np.meshgrid(np.arange(n - 1), np.arange(m), indexing="ij")
    A = i * (m + 1) + k
    B, C, D = A + 1, A + m + 2, A + m + 1
    F = np.concatenate([np.stack([A, D, C], -1).reshape(-1, 3), np.stack([A, C, B], -1).reshape(-1, 3)])
    return V, F, UV, W


def _T(t=(0, 0, 0), R: np.ndarray | None = None) -> np.ndarray:
    T = np.eye(4)
    if R is not None:
        T[:3, :3] = R
    T[:3, 3] = t
    return T


def _rot(axis: str, deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return {
        "x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


def _cyl(r: float, h: float) -> list[np.ndarray]:
    return [np.array([[0, 0], [r, 0]]), np.array([[r, 0], [r, h]]), np.array([[r, h], [0, h]])]


def _profile(shape: str, rng: np.random.Generator) -> list[np.ndarray]:
    """(r, z) profile segments of the bodies of revolution, size ~1."""
    u = rng.uniform
    if shape == "cylinder":
        return _cyl(0.5, u(0.3, 2.5))
    if shape == "frustum":
        r0, r1, h = 0.5, u(0.0, 0.4), u(0.4, 1.8)
        segs = [np.array([[0, 0], [r0, 0]]), np.array([[r0, 0], [r1, h]])]
        return segs + ([np.array([[r1, h], [0, h]])] if r1 > 0 else [])
    if shape == "capsule":
        r, h = 0.3, u(0.2, 1.5)
        return [
            np.concatenate(
                [_arc(10, -np.pi / 2, 0, r, 0), np.array([[r, h]]), _arc(10, 0, np.pi / 2, r, h)[1:]]
            )
        ]
    if shape in ("ellipsoid", "spheroid"):
        return [_arc(20, -np.pi / 2, np.pi / 2, 0.5, 0)]
    if shape == "bottle":
        r, h, rn, hn = 0.3, u(0.8, 1.6), u(0.08, 0.18), u(0.15, 0.4)
        sh = _arc(8, 0, np.pi / 2, r - rn, h, rn)
        return [
            np.array([[0, 0], [r, 0]]),
            np.concatenate([[[r, 0]], sh, [[rn, h + r - rn + hn]]]),
            np.array([[rn, h + r - rn + hn], [0, h + r - rn + hn]]),
        ]
    if shape in ("mug", "cup"):
        r, h, t = 0.5, u(0.6, 1.4), u(0.04, 0.1)
        return [
            np.array([[0, 0], [r, 0]]),
            np.array([[r, 0], [r, h]]),
            np.array([[r, h], [r - t, h]]),
            np.array([[r - t, h], [r - t, t]]),
            np.array([[r - t, t], [0, t]]),
        ]
    if shape == "bowl":
        r, h, t = 0.5, u(0.25, 0.6), 0.05
        outer = np.stack(
            [
                r * np.sin(np.linspace(0.15, np.pi / 2, 12)),
                h * (1 - np.cos(np.linspace(0.15, np.pi / 2, 12))),
            ],
            1,
        )
        outer = np.concatenate([[[0, outer[0, 1]]], outer])
        inner = outer[::-1].copy()
        inner[:, 0] = np.maximum(inner[:, 0] - t, 0)
        inner[:, 1] += t
        return [outer, np.array([outer[-1], inner[0]]), inner]
    raise ValueError(shape)


def _build_shape(shape: str, rng: np.random.Generator, symmetric: bool) -> tuple:
    """Mesh parts of one shape, size ~1 (rescaled later). Returns builder output + geometric symmetry."""
    B = _Builder()
    rect = (lambda: (0.0, 0.0, 1.0, 1.0)) if symmetric else (lambda: _random_rect(rng))
    geo = "none"
    if shape in ("box", "plain_box"):
        ext = rng.uniform(0.25, 1.0, 3)
        ext[rng.integers(3)] = 1.0
        B.add(_box(ext, (0, 0, 1, 1) if shape == "box" else (0.4, 0.4, 0.6, 0.6)))
        geo = "discrete"
    elif shape in ("cylinder", "frustum", "capsule", "bottle", "bowl", "spheroid"):
        B.add(_lathe(_profile(shape, rng), rect()))
        geo = "continuous"
    elif shape == "ellipsoid":
        B.add(_lathe(_profile(shape, rng), rect(), sx=rng.uniform(0.4, 1.0), sy=rng.uniform(0.4, 1.0)))
        geo = "discrete"
    elif shape == "mug":
        prof = _profile("mug", rng)
        h = float(prof[1][1, 1])
        B.add(_lathe(prof, rect()))
        R = rng.uniform(0.22, 0.34) * max(h, 0.8)
        B.add(
            _tube_arc(R, rng.uniform(0.035, 0.06), np.radians(95), rect()),
            _T((0.5 + 0.05 * R, 0, h * rng.uniform(0.4, 0.6))),
        )
    elif shape == "box_handle":
        ext = np.array([1.0, rng.uniform(0.3, 0.7), rng.uniform(0.4, 0.9)])
        B.add(_box(ext, rect()))
        R = rng.uniform(0.15, 0.3)
        pos = (rng.uniform(-0.25, 0.25), 0, ext[2] / 2 - 0.02)
        B.add(_tube_arc(R, rng.uniform(0.025, 0.05), np.radians(95), rect()), _T(pos, _rot("y", -90)))
    elif shape == "l_shape":
        a = np.array([1.0, rng.uniform(0.2, 0.5), rng.uniform(0.15, 0.4)])
        b = np.array([a[1], rng.uniform(0.4, 0.9), a[2]])
        B.add(_box(a, rect()))
        B.add(_box(b, rect()), _T((0.5 - a[1] / 2, (a[1] + b[1]) / 2 - 0.01, 0)))
    elif shape == "hammer":
        L, rh = 1.0, rng.uniform(0.04, 0.09)
        B.add(_lathe(_cyl(rh, L), rect(), n_seg=20), _T((0, 0, -L / 2)))
        head = np.array([rng.uniform(0.3, 0.6), rng.uniform(0.1, 0.2), rng.uniform(0.1, 0.2)])
        B.add(_box(head, rect()), _T((head[0] * rng.uniform(0.1, 0.4), 0, L / 2)))
    elif shape == "toy":
        ext = rng.uniform(0.4, 1.0, 3)
        B.add(_box(ext, rect()))
        r = rng.uniform(0.12, 0.25)
        B.add(
            _lathe([_arc(14, -np.pi / 2, np.pi / 2, r, 0)], rect(), n_seg=24),
            _T((ext[0] * rng.uniform(-0.35, 0.35), ext[1] * rng.uniform(-0.35, 0.35), ext[2] / 2)),
        )
        if rng.random() < 0.7:
            c = rng.uniform(0.06, 0.14)
            B.add(
                _lathe(_cyl(c, rng.uniform(0.1, 0.4)), rect(), n_seg=16),
                _T(
                    (ext[0] / 2 - 0.02, ext[1] * rng.uniform(-0.3, 0.3), ext[2] * rng.uniform(-0.3, 0.3)),
                    _rot("y", 90),
                ),
            )
    elif shape == "flashlight":
        r0, r1, h = 0.3, rng.uniform(0.15, 0.3), 1.0
        B.add(
            _lathe(
                [
                    np.array([[0, 0], [r0, 0]]),
                    np.array([[r0, 0], [r0, 0.25], [r1, 0.4], [r1, h]]),
                    np.array([[r1, h], [0, h]]),
                ],
                rect(),
                n_seg=28,
            )
        )
        arm = np.array([rng.uniform(0.1, 0.2), rng.uniform(0.1, 0.2), rng.uniform(0.3, 0.5)])
        B.add(_box(arm, rect()), _T((r1 + arm[0] / 2 - 0.03, 0, 0.4 + arm[2] / 2 + rng.uniform(0, 0.2))))
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return B.build() + (geo,)


def _symmetries(shape: str) -> tuple[list[np.ndarray], list[dict]]:
    """BOP symmetries of a symmetric shape: a plain box (distinct extents) has the three 180° turns;
    the textured bodies of revolution are continuous about z."""
    if shape == "plain_box":
        return [_T(R=np.diag(d)) for d in ([1, -1, -1], [-1, 1, -1], [-1, -1, 1])], []
    return [], [{"axis": [0.0, 0.0, 1.0], "offset": [0.0, 0.0, 0.0]}]


def make_object(obj_id: int, *, symmetric: bool | None = None) -> ObjectSpec:
    """The object with this id (deterministic). ``symmetric``: None = decided by the id (about
    SYMMETRIC_FRACTION of procedural ids), True/False forces it (a different object, ``key`` says so)."""
    obj_id = int(obj_id)
    split = split_of(obj_id)
    if obj_id in REAL_TEST_IDS:
        return load_real_object(REAL_TEST_IDS[obj_id])
    rng, sym, shape = _shape_draw(obj_id, symmetric)
    V, F, UV, N, geo = _build_shape(shape, rng, sym)
    if shape == "plain_box":
        tex = np.empty((64, 64, 3), np.uint8)
        tex[:] = _palette(rng, 2)[0]
    else:
        tex = random_texture(rng, TEXTURE_SIZE, ring_only=sym)
    # centre on the bbox, rescale to a log-uniform diameter
    V = V - 0.5 * (V.min(0) + V.max(0))
    d_target = float(np.exp(rng.uniform(*np.log(DIAMETER_RANGE_M))))
    d = _diameter(V)
    V = V * (d_target / d)
    disc, cont = _symmetries(shape) if sym else ([], [])
    if sym and cont:  # a body of revolution: keep its axis through the origin (bbox centre is on it)
        V[:, :2] -= 0.5 * (V[:, :2].min(0) + V[:, :2].max(0))
    spec = ObjectSpec(
        obj_id=obj_id,
        name=shape,
        vertices=V.astype(np.float64),
        faces=F,
        uvs=UV,
        normals=N,
        texture=tex,
        symmetric=sym,
        symmetries_discrete=disc,
        symmetries_continuous=cont,
        split=split,
        source="procedural",
        shape_symmetry=geo,
    )
    spec.__dict__["diameter"] = d_target
    return spec


# --------------------------------------------------------------------------------------------------
# real textured assets from pybullet_data (test only)


def _pybullet_data_dir() -> Path | None:
    try:
        import pybullet_data
    except ImportError:
        return None
    return Path(pybullet_data.getDataPath())


_REAL_ASSETS = {  # name: (relative obj path, scale to metres, symmetric, texture override)
    "duck": ("duck.obj", 0.05, False),
    "mug": ("urdf/mug.obj", 1.0, False),
    "jenga": ("jenga/jenga.obj", (0.15, 0.05, 0.03), True),
    "soccerball": ("soccerball.obj", 0.22, True),
}


def real_test_object_ids() -> list[int]:
    """Ids of the real textured assets available in this environment (pybullet_data installed)."""
    root = _pybullet_data_dir()
    if root is None:
        return []
    return [i for i, n in sorted(REAL_TEST_IDS.items()) if (root / _REAL_ASSETS[n][0]).is_file()]


@functools.lru_cache(maxsize=8)
def _load_real_arrays(name: str) -> tuple:
    import trimesh

    root = _pybullet_data_dir()
    if root is None:
        raise FileNotFoundError("pybullet_data is not installed")
    rel, scale, _ = _REAL_ASSETS[name]
    m = trimesh.load(str(root / rel), process=False, force="mesh")
    V = np.asarray(m.vertices, np.float64) * np.asarray(scale, np.float64)
    F = np.asarray(m.faces, np.int64)
    uv = getattr(m.visual, "uv", None)
    image = getattr(getattr(m.visual, "material", None), "image", None)
    if uv is None or image is None:  # untextured (the mug): cylindrical UVs + a procedural texture
        c = 0.5 * (V.min(0) + V.max(0))
        N0 = np.asarray(trimesh.Trimesh(V, F, process=False).vertex_normals)
        V, F = V[F].reshape(-1, 3), np.arange(3 * len(F)).reshape(-1, 3)  # unweld so seam faces get own UVs
        N0 = N0[np.asarray(m.faces).ravel()]
        ang = np.arctan2(V[:, 1] - c[1], V[:, 0] - c[0]) / (2 * np.pi) + 0.5
        au = ang.reshape(-1, 3)
        wrap = (au.max(1) - au.min(1)) > 0.5
        au[wrap] = np.where(au[wrap] < 0.5, au[wrap] + 1, au[wrap])
        uv = np.stack([au.ravel() * 0.999, (V[:, 2] - V[:, 2].min()) / np.ptp(V[:, 2])], 1)
        tex = random_texture(np.random.default_rng([_SALT, 7]), TEXTURE_SIZE)
        normals = N0
    else:
        tex = np.asarray(image.convert("RGB"))
        normals = np.asarray(m.vertex_normals)
    V = V - 0.5 * (V.min(0) + V.max(0))
    return V, F.astype(np.int32), np.asarray(uv, np.float32) % 1.0000001, normals.astype(np.float32), tex


def load_real_object(name: str) -> ObjectSpec:
    """One of the real pybullet_data assets (REAL_TEST_IDS), as a test object."""
    obj_id = next(i for i, n in REAL_TEST_IDS.items() if n == name)
    V, F, UV, N, tex = _load_real_arrays(name)
    sym = _REAL_ASSETS[name][2]
    disc: list[np.ndarray] = []
    cont: list[dict] = []
    if name == "jenga":
        disc = [_T(R=np.diag(d)) for d in ([1, -1, -1], [-1, 1, -1], [-1, -1, 1])]
    elif name == "soccerball":  # approximately: a patterned sphere; flagged so ADD-S is used
        cont = [{"axis": list(a), "offset": [0.0, 0.0, 0.0]} for a in np.eye(3)]
    return ObjectSpec(
        obj_id=obj_id,
        name=name,
        vertices=V.copy(),
        faces=F.copy(),
        uvs=UV.copy(),
        normals=N.copy(),
        texture=tex.copy(),
        symmetric=sym,
        symmetries_discrete=disc,
        symmetries_continuous=cont,
        split="test",
        source="pybullet_data",
        shape_symmetry={"duck": "none", "mug": "none", "jenga": "discrete", "soccerball": "continuous"}[name],
    )
