"""Meshes with UVs of the procedural objects (data/objects.py): boxes, bodies of revolution, tubes and their
composites, each built by a deterministic generator; ``build_shape`` is the entry point, ``shape_symmetries`` the
BOP-form symmetries of the symmetric shapes."""

from __future__ import annotations

from typing import Callable

import numpy as np

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


def pose_matrix(t=(0, 0, 0), R: np.ndarray | None = None) -> np.ndarray:
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


def build_shape(shape: str, rng: np.random.Generator, symmetric: bool) -> tuple:
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
    elif shape in _ASYMMETRIC_PARTS:
        _ASYMMETRIC_PARTS[shape](B, rng, rect)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return B.build() + (geo,)


def _add_mug(B: _Builder, rng: np.random.Generator, rect: Callable[[], tuple]) -> None:
    prof = _profile("mug", rng)
    h = float(prof[1][1, 1])
    B.add(_lathe(prof, rect()))
    R = rng.uniform(0.22, 0.34) * max(h, 0.8)
    B.add(
        _tube_arc(R, rng.uniform(0.035, 0.06), np.radians(95), rect()),
        pose_matrix((0.5 + 0.05 * R, 0, h * rng.uniform(0.4, 0.6))),
    )


def _add_box_handle(B: _Builder, rng: np.random.Generator, rect: Callable[[], tuple]) -> None:
    ext = np.array([1.0, rng.uniform(0.3, 0.7), rng.uniform(0.4, 0.9)])
    B.add(_box(ext, rect()))
    R = rng.uniform(0.15, 0.3)
    pos = (rng.uniform(-0.25, 0.25), 0, ext[2] / 2 - 0.02)
    B.add(_tube_arc(R, rng.uniform(0.025, 0.05), np.radians(95), rect()), pose_matrix(pos, _rot("y", -90)))


def _add_l_shape(B: _Builder, rng: np.random.Generator, rect: Callable[[], tuple]) -> None:
    a = np.array([1.0, rng.uniform(0.2, 0.5), rng.uniform(0.15, 0.4)])
    b = np.array([a[1], rng.uniform(0.4, 0.9), a[2]])
    B.add(_box(a, rect()))
    B.add(_box(b, rect()), pose_matrix((0.5 - a[1] / 2, (a[1] + b[1]) / 2 - 0.01, 0)))


def _add_hammer(B: _Builder, rng: np.random.Generator, rect: Callable[[], tuple]) -> None:
    L, rh = 1.0, rng.uniform(0.04, 0.09)
    B.add(_lathe(_cyl(rh, L), rect(), n_seg=20), pose_matrix((0, 0, -L / 2)))
    head = np.array([rng.uniform(0.3, 0.6), rng.uniform(0.1, 0.2), rng.uniform(0.1, 0.2)])
    B.add(_box(head, rect()), pose_matrix((head[0] * rng.uniform(0.1, 0.4), 0, L / 2)))


def _add_toy(B: _Builder, rng: np.random.Generator, rect: Callable[[], tuple]) -> None:
    ext = rng.uniform(0.4, 1.0, 3)
    B.add(_box(ext, rect()))
    r = rng.uniform(0.12, 0.25)
    B.add(
        _lathe([_arc(14, -np.pi / 2, np.pi / 2, r, 0)], rect(), n_seg=24),
        pose_matrix((ext[0] * rng.uniform(-0.35, 0.35), ext[1] * rng.uniform(-0.35, 0.35), ext[2] / 2)),
    )
    if rng.random() < 0.7:
        c = rng.uniform(0.06, 0.14)
        B.add(
            _lathe(_cyl(c, rng.uniform(0.1, 0.4)), rect(), n_seg=16),
            pose_matrix(
                (ext[0] / 2 - 0.02, ext[1] * rng.uniform(-0.3, 0.3), ext[2] * rng.uniform(-0.3, 0.3)),
                _rot("y", 90),
            ),
        )


def _add_flashlight(B: _Builder, rng: np.random.Generator, rect: Callable[[], tuple]) -> None:
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
    B.add(_box(arm, rect()), pose_matrix((r1 + arm[0] / 2 - 0.03, 0, 0.4 + arm[2] / 2 + rng.uniform(0, 0.2))))


# the shapes without a symmetry: shape -> adds its parts to the builder (the same rng draws, in order)
_ASYMMETRIC_PARTS: dict[str, Callable[[_Builder, np.random.Generator, Callable[[], tuple]], None]] = {
    "mug": _add_mug, "box_handle": _add_box_handle, "l_shape": _add_l_shape, "hammer": _add_hammer,
    "toy": _add_toy, "flashlight": _add_flashlight,
}


def shape_symmetries(shape: str) -> tuple[list[np.ndarray], list[dict]]:
    """BOP symmetries of a symmetric shape: a plain box (distinct extents) has the three 180° turns;
    the textured bodies of revolution are continuous about z."""
    if shape == "plain_box":
        return [pose_matrix(R=np.diag(d)) for d in ([1, -1, -1], [-1, 1, -1], [-1, -1, 1])], []
    return [], [{"axis": [0.0, 0.0, 1.0], "offset": [0.0, 0.0, 0.0]}]


