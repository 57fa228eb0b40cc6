"""PLY meshes and point clouds through trimesh: a binary little-endian or ascii writer, an ascii / binary
reader, with the vertex attributes BOP models carry (normals, colours, texture uv, the TextureFile comment).
Arrays are in the file's unit (BOP: millimetres); ``data/bop.py`` converts."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

_UV_NAMES = (("texture_u", "texture_v"), ("u", "v"), ("s", "t"))  # the spellings trimesh reads


def save_ply(
    path: str | os.PathLike,
    pts: np.ndarray,
    *,
    faces: np.ndarray | None = None,
    normals: np.ndarray | None = None,
    colors: np.ndarray | None = None,
    uvs: np.ndarray | None = None,
    texture_file: str | None = None,
    encoding: str = "binary",
) -> None:
    """Write a PLY (``encoding`` "binary" little-endian, or "ascii"). ``pts`` (N,3) in the file's unit
    (BOP: mm), stored as float32; ``colors`` (N,3) uint8 (written as RGBA, alpha 255); ``uvs`` (N,2) as
    BOP's texture_u/texture_v; ``faces`` (F,3) int; ``texture_file`` as BOP's ``comment TextureFile``."""
    import trimesh

    mesh = trimesh.Trimesh(
        vertices=np.asarray(pts, np.float32),
        faces=None if faces is None else np.asarray(faces, np.int64),
        vertex_normals=None if normals is None else np.asarray(normals, np.float32),
        vertex_colors=None if colors is None else np.asarray(colors, np.uint8),
        process=False,
        validate=False,
    )
    if uvs is not None:  # vertex attributes, so that vertex colours stay (a texture visual would drop them)
        uvs = np.asarray(uvs, np.float32)
        mesh.vertex_attributes["texture_u"] = uvs[:, 0]
        mesh.vertex_attributes["texture_v"] = uvs[:, 1]
    data = mesh.export(file_type="ply", encoding=encoding, vertex_normal=normals is not None)
    if texture_file:  # trimesh writes no TextureFile comment: put it after the format line
        magic, fmt, rest = data.split(b"\n", 2)
        data = b"\n".join([magic, fmt, f"comment TextureFile {texture_file}".encode("ascii"), rest])
    Path(path).write_bytes(data)


def _texture_file(f) -> str | None:
    """The ``comment TextureFile NAME`` of a PLY header (trimesh parses it but does not return it)."""
    for raw in f:
        tok = raw.decode("ascii", "replace").split()
        if tok[:1] == ["end_header"]:
            return None
        if len(tok) >= 3 and tok[0] == "comment" and tok[1].lower() == "texturefile":
            return tok[2]
    return None


def load_ply(path: str | os.PathLike) -> dict:
    """Read a PLY (ascii or binary). Returns {'pts' (N,3) float64 in the file's unit, and when present
    'normals' (N,3), 'colors' (N,3) uint8, 'texture_uv' (N,2) (per-vertex texture_u/v, u/v or s/t),
    'faces' (F,3) int64 (polygons triangulated), 'texture_file' str}. Vertex order is the file's."""
    from trimesh.exchange.ply import load_ply as trimesh_load_ply
    from trimesh.geometry import triangulate_quads

    with open(path, "rb") as f:
        if f.readline().strip() != b"ply":
            raise ValueError(f"{path} is not a PLY file")
        texture_file = _texture_file(f)
        f.seek(0)
        # fix_texture=False keeps the file's vertices (no splitting at UV seams); no texture image loaded
        kw = trimesh_load_ply(f, fix_texture=False, skip_materials=True)
    if "vertices" not in kw:
        raise ValueError(f"{path}: PLY has no vertices")
    vertex = kw["metadata"]["_ply_raw"]["vertex"]  # trimesh's parse: every vertex property by name
    out: dict[str, object] = {"pts": np.asarray(kw["vertices"], np.float64)}
    if kw.get("vertex_normals") is not None:
        out["normals"] = np.asarray(kw["vertex_normals"], np.float64)
    if kw.get("vertex_colors") is not None:
        out["colors"] = np.asarray(kw["vertex_colors"])[:, :3].astype(np.uint8)
    for u, v in _UV_NAMES:
        if u in vertex["properties"] and v in vertex["properties"]:
            uv = [np.asarray(vertex["data"][k], np.float64).reshape(-1) for k in (u, v)]  # ascii: (N,1)
            out["texture_uv"] = np.stack(uv, 1)
            break
    if kw.get("faces") is not None and len(kw["faces"]):
        out["faces"] = triangulate_quads(kw["faces"], dtype=np.int64)  # a file of quads stays (F,4) in kw
    if texture_file:
        out["texture_file"] = texture_file
    return out
