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
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from one2any_ros.data.meshes import build_shape, pose_matrix, shape_symmetries
from one2any_ros.data.textures import TEXTURE_SIZE, random_palette, random_texture

TRAIN_RANGE = (0, 1_000_000)
VAL_RANGE = (1_000_000, 2_000_000)
TEST_RANGE = (2_000_000, 3_000_000)
SPLIT_RANGES = {"train": TRAIN_RANGE, "val": VAL_RANGE, "test": TEST_RANGE}
REAL_TEST_IDS = {2_999_000: "duck", 2_999_001: "mug", 2_999_002: "jenga", 2_999_003: "soccerball"}
PROCEDURAL_TEST_RANGE = (TEST_RANGE[0], min(REAL_TEST_IDS))  # procedural test ids stop below the real ones
SYMMETRIC_FRACTION = 0.1
DIAMETER_RANGE_M = (0.05, 0.30)
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


def family_of(symmetric: bool, shape_symmetric: bool) -> str:
    """The one rule of the families (``FAMILIES``): ``symmetric`` (shape and texture), ``texture_only`` (a
    symmetric shape told apart only by its texture: scored by ADD, so a flip is a miss) or ``shape_asymmetric``."""
    if symmetric:
        return "symmetric"
    return "texture_only" if shape_symmetric else "shape_asymmetric"


def object_family(obj_id: int) -> str:
    """``family_of`` a procedural object id, without building it."""
    _, sym, shape = _shape_draw(obj_id)
    return family_of(sym, shape in TEXTURE_ONLY_SHAPES)


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


def make_object(obj_id: int, *, symmetric: bool | None = None) -> ObjectSpec:
    """The object with this id (deterministic). ``symmetric``: None = decided by the id (about
    SYMMETRIC_FRACTION of procedural ids), True/False forces it (a different object, ``key`` says so)."""
    obj_id = int(obj_id)
    split = split_of(obj_id)
    if obj_id in REAL_TEST_IDS:
        return load_real_object(REAL_TEST_IDS[obj_id])
    rng, sym, shape = _shape_draw(obj_id, symmetric)
    V, F, UV, N, geo = build_shape(shape, rng, sym)
    if shape == "plain_box":
        tex = np.empty((64, 64, 3), np.uint8)
        tex[:] = random_palette(rng, 2)[0]
    else:
        tex = random_texture(rng, TEXTURE_SIZE, ring_only=sym)
    # centre on the bbox, rescale to a log-uniform diameter
    V = V - 0.5 * (V.min(0) + V.max(0))
    d_target = float(np.exp(rng.uniform(*np.log(DIAMETER_RANGE_M))))
    d = _diameter(V)
    V = V * (d_target / d)
    disc, cont = shape_symmetries(shape) if sym else ([], [])
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
        disc = [pose_matrix(R=np.diag(d)) for d in ([1, -1, -1], [-1, 1, -1], [-1, -1, 1])]
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
