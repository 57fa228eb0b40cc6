"""The single reference: canonical frame C, object frame O, scale, ROC map, cloud; save/load (views: core/frame.py).

Conventions (docs/architecture.md, Conventions; fixed: a trained checkpoint depends on them):
- C: origin at the median of the reference's masked 3D points, axes parallel to the reference camera's.
- s: robust object radius = 95th percentile of the masked points' distances to that median.
- ROC of a surface point = its coordinates in C divided by s.
- O: C by default; the caller may supply the object's pose in the reference camera (T_C_O = T_refcam_C^-1 T_refcam_O).
"""
from __future__ import annotations

import io
import json
import os
import zipfile
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from one2any_ros.core import camera
from one2any_ros.core.errors import InputError, NoReferenceError, ReferenceFileError
from one2any_ros.core.files import atomic_path
from one2any_ros.core.frame import View, make_view
from one2any_ros.core.geometry import is_rigid, orthonormalize
from one2any_ros.core.colour import colour_features

REFERENCE_FORMAT = "one2any_reference"
REFERENCE_FORMAT_VERSION = 2  # 2: only the view, T_C_O and the embedding (1 also kept T_refcam_C, points_C, T_cam_obj)
RADIUS_PERCENTILE = 95.0
MAX_CLOUD_POINTS = 4000  # the reference cloud kept for verification and ICP; subsampled once per reference


@dataclass
class Reference:
    """The encoded single reference view. ``embedding`` holds backend-specific cached arrays (e.g. ROPE
    tokens) computed once by the backend's ``encode_reference``."""

    view: View
    T_refcam_C: np.ndarray  # (4,4) canonical frame C in the reference camera (pure translation)
    T_C_O: np.ndarray  # (4,4) object frame O in C (identity by default)
    scale: float  # s, metres
    points_C: np.ndarray  # (N,3) float64 reference surface points in C, metres (subsampled)
    roc_map: np.ndarray  # (H,W,3) float32 ROC of every valid mask pixel (0 elsewhere)
    colour_C: np.ndarray  # (N,3) float32 lighting-tolerant colour features of points_C (colour.colour_features)
    embedding: dict[str, np.ndarray] = field(default_factory=dict)
    embedding_backend: str = ""

    @property
    def num_points(self) -> int:
        return int(np.count_nonzero(np.any(self.roc_map != 0, axis=2)))

    @property
    def diameter(self) -> float:
        return 2.0 * self.scale


def make_reference(view: View, *, rng_seed: int = 0) -> Reference:
    """Build C, s, the ROC map and the subsampled cloud from a validated view.

    Args:
        view: a validated ``frame.View`` (rgb, depth in metres, mask, K; ``T_cam_obj`` optional).
        rng_seed: seed of the cloud's subsample (at most ``MAX_CLOUD_POINTS`` points).

    Returns:
        Reference with T_refcam_C (4, 4) float64, scale in metres, points_C (N, 3) float64 metres, roc_map
        (H, W, 3) float32 and colour_C (N, 3) float32.

    Raises:
        InputError: fewer than ``camera.MIN_MASK_PIXELS`` valid 3D points ("too_little_depth"), or a radius
            under 0.1 mm or non-finite ("degenerate_reference").
    """
    pts, pix = camera.backproject(view.depth, view.K, camera.object_depth_mask(view.depth, view.K, view.mask))
    if len(pts) < camera.MIN_MASK_PIXELS:
        raise InputError(f"reference has only {len(pts)} valid 3D points", reason="too_little_depth")
    centroid = np.median(pts, axis=0)
    dist = np.linalg.norm(pts - centroid, axis=1)
    scale = float(np.percentile(dist, RADIUS_PERCENTILE))
    if not np.isfinite(scale) or scale < 1e-4:
        raise InputError(f"reference object is degenerate (radius {scale:.2e} m)", reason="degenerate_reference")
    T_refcam_C = np.eye(4)
    T_refcam_C[:3, 3] = centroid
    pts_C = pts - centroid
    roc_map = np.zeros(view.depth.shape + (3,), np.float32)
    roc_map[pix[:, 0], pix[:, 1]] = (pts_C / scale).astype(np.float32)
    idx = np.arange(len(pts_C))
    if len(pts_C) > MAX_CLOUD_POINTS:
        idx = np.sort(np.random.default_rng(rng_seed).choice(len(pts_C), MAX_CLOUD_POINTS, replace=False))
    cloud = pts_C[idx]
    colour = colour_features(view.rgb, view.mask)[pix[idx, 0], pix[idx, 1]]
    T_C_O = np.eye(4)
    if view.T_cam_obj is not None:
        T_C_O = np.linalg.inv(T_refcam_C) @ view.T_cam_obj
    return Reference(view=view, T_refcam_C=T_refcam_C, T_C_O=T_C_O, scale=scale, points_C=cloud, roc_map=roc_map,
                     colour_C=colour)


# --- save / load: a zip of .npy arrays + JSON metadata; never pickle -----------------------------------
# A file holds what loading cannot recompute: the view (rgb, depth, mask, K), the object frame T_C_O and the
# backend's cached embedding. C, s, the ROC map, the cloud and its colours are made again by make_reference,
# so they always follow this build's rules.

def save_reference(ref: Reference, path: str | os.PathLike) -> None:
    """Write atomically (``files.atomic_path``) so a crash mid-write never leaves a half file in place.

    Args:
        ref: the reference to save (its view, T_C_O and embedding).
        path: the zip file to write; replaced if it exists.
    """
    arrays = {"rgb": ref.view.rgb, "depth": ref.view.depth, "mask": ref.view.mask, "K": ref.view.K, "T_C_O": ref.T_C_O}
    for k, v in ref.embedding.items():
        arrays["emb__" + k] = v
    meta = {"format": REFERENCE_FORMAT, "version": REFERENCE_FORMAT_VERSION, "embedding_backend": ref.embedding_backend}
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("meta.json", json.dumps(meta))
        for k, v in arrays.items():
            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(v), allow_pickle=False)
            zf.writestr(k + ".npy", buf.getvalue())


def load_reference(path: str | os.PathLike) -> Reference:
    """Load a saved reference; raise ReferenceFileError naming the file and the problem.

    Args:
        path: a file written by ``save_reference``.

    Returns:
        Reference rebuilt by ``make_reference`` from the stored view, with the stored T_C_O (orthonormalised) and
        embedding.

    Raises:
        ReferenceFileError: the file is missing ("reference_missing"), corrupt, of another format or version
            ("reference_version"), or incomplete or invalid (a non-rigid T_C_O, a bad view).
    """
    path = Path(path)
    if not path.is_file():
        raise ReferenceFileError(f"reference file {path} does not exist", reason="reference_missing")
    try:
        with zipfile.ZipFile(path) as zf:
            meta = json.loads(zf.read("meta.json"))
            arrays = {n[:-4]: np.load(io.BytesIO(zf.read(n)), allow_pickle=False) for n in zf.namelist() if n.endswith(".npy")}
    except (zipfile.BadZipFile, zlib.error, KeyError, ValueError, OSError, EOFError, NotImplementedError, RuntimeError) as e:
        raise ReferenceFileError(f"reference file {path} is truncated or corrupt: {e}") from e
    _check_version(meta, path)
    try:
        view = make_view(arrays["rgb"], arrays["depth"], arrays["mask"], arrays["K"], min_depth=0.0, max_depth=np.inf)
        T_C_O = arrays["T_C_O"]
        if not is_rigid(T_C_O):
            raise InputError(f"T_C_O is not a rigid 4x4 transform (shape {T_C_O.shape}, dtype {T_C_O.dtype})")
        ref = make_reference(view)
    except (KeyError, ValueError, TypeError) as e:  # InputError is a ValueError
        raise ReferenceFileError(f"reference file {path} is incomplete or invalid: {e}") from e
    ref.T_C_O = orthonormalize(T_C_O.astype(np.float64))
    ref.view = replace(ref.view, T_cam_obj=ref.T_refcam_C @ ref.T_C_O)  # the object's pose in the reference camera
    ref.embedding = {k[5:]: v for k, v in arrays.items() if k.startswith("emb__")}
    ref.embedding_backend = str(meta.get("embedding_backend", ""))
    return ref


def _check_version(meta: object, path: Path) -> None:
    """ReferenceFileError(reason="reference_version") unless ``meta`` is this build's reference format and version;
    an older file names what to do (its arrays follow older rules, so it is not converted)."""
    if not isinstance(meta, dict) or meta.get("format") != REFERENCE_FORMAT:
        raise ReferenceFileError(f"reference file {path} is not a one2any reference", reason="reference_version")
    version = meta.get("version")
    if version == REFERENCE_FORMAT_VERSION:
        return
    if isinstance(version, int) and not isinstance(version, bool) and version < REFERENCE_FORMAT_VERSION:
        raise ReferenceFileError(f"reference file {path} was written by an older version ({version}); set the reference "
                                 f"again", reason="reference_version")
    raise ReferenceFileError(f"reference file {path} has version {version!r}; this build reads version "
                             f"{REFERENCE_FORMAT_VERSION}", reason="reference_version")


def require_reference(ref: Reference | None) -> Reference:
    """The reference, or the error that says none is set.

    Args:
        ref: the current reference, or None.

    Returns:
        ``ref`` itself.

    Raises:
        NoReferenceError: ``ref`` is None.
    """
    if ref is None:
        raise NoReferenceError("no reference is set: call set_reference first")
    return ref
