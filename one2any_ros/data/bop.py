"""BOP format: reader and writer (https://github.com/thodan/bop_toolkit/blob/master/docs/bop_datasets_format.md).

Units: BOP files are in millimetres (models, cam_t_m2c, depth × depth_scale); this module's arrays are
metres (docs/architecture.md, Conventions) except where a name says ``_mm``. Rotations are row-wise
9 floats in the files and (3,3) arrays here; ``T_cam_obj`` is the 4x4 pose of the model in the camera
(metres).

Layout written and read:
    models/obj_XXXXXX.ply (mm, normals, vertex colours, texture uv) + obj_XXXXXX.png + models_info.json
    models_eval/obj_XXXXXX.ply (mm, densely resampled vertices: what metrics use)
    <split>/<scene:06d>/{rgb|gray}/<im:06d>.{png|jpg}, depth/<im:06d>.png (uint16, × depth_scale = mm),
        mask/ and mask_visib/<im:06d>_<gt:06d>.png, scene_camera.json, scene_gt.json, scene_gt_info.json
    camera.json (one camera for the dataset), results as the BOP CSV.
The PLY files themselves are read and written by ``data/ply.py``.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from one2any_ros.data.ply import load_ply, save_ply

_SCENE_DIR = re.compile(r"^\d{6}$")


# --------------------------------------------------------------------------------------------------
# models


def _model_path(root: Path, obj_id: int, sub: str) -> Path:
    return root / sub / f"obj_{obj_id:06d}.ply"


def load_models_info(root: str | os.PathLike) -> dict[int, dict]:
    """models/models_info.json (or models_eval/) with int obj ids; values as in the file (mm)."""
    root = Path(root)
    for sub in ("models", "models_eval"):
        p = root / sub / "models_info.json"
        if p.is_file():
            return {int(k): v for k, v in json.loads(p.read_text()).items()}
    raise FileNotFoundError(f"no models/models_info.json under {root}")


def is_symmetric(info: dict) -> bool:
    """True when the model info lists discrete or continuous symmetries (use ADD-S)."""
    return bool(info.get("symmetries_discrete")) or bool(info.get("symmetries_continuous"))


def load_model_points(
    root: str | os.PathLike, obj_id: int, *, max_points: int = 2000, prefer_eval: bool = True
) -> np.ndarray:
    """(N,3) model points in METRES, object frame, from models_eval/ when present (and ``prefer_eval``)
    else models/. More than ``max_points`` vertices: a deterministic subsample; a sparse mesh (fewer than
    500 vertices, e.g. an 8-corner box): topped up to min(max_points, 5000) with deterministic area-weighted
    surface samples."""
    root = Path(root)
    path = _model_path(root, obj_id, "models_eval")
    if not (prefer_eval and path.is_file()):
        path = _model_path(root, obj_id, "models")
    if not path.is_file():
        raise FileNotFoundError(f"no model for object {obj_id} under {root}/models(_eval)")
    ply = load_ply(path)
    pts = np.asarray(ply["pts"], np.float64)
    if len(pts) > max_points:
        idx = np.random.default_rng(0).choice(len(pts), max_points, replace=False)
        pts = pts[np.sort(idx)]
    elif len(pts) < min(500, max_points) and "faces" in ply:
        from one2any_ros.data.objects import sample_surface

        extra = sample_surface(pts, np.asarray(ply["faces"]), min(max_points, 5000) - len(pts), seed=0)
        pts = np.concatenate([pts, extra])
    return pts / 1000.0


def _models_info_entry(obj) -> dict:
    V = obj.vertices * 1000.0
    lo, hi = V.min(0), V.max(0)
    info = {
        "diameter": float(obj.diameter * 1000.0),
        "min_x": float(lo[0]),
        "min_y": float(lo[1]),
        "min_z": float(lo[2]),
        "size_x": float(hi[0] - lo[0]),
        "size_y": float(hi[1] - lo[1]),
        "size_z": float(hi[2] - lo[2]),
    }
    if obj.symmetries_discrete:
        syms = []
        for S in obj.symmetries_discrete:
            S = np.array(S, np.float64, copy=True)
            S[:3, 3] *= 1000.0
            syms.append([float(x) for x in S.ravel()])
        info["symmetries_discrete"] = syms
    if obj.symmetries_continuous:
        info["symmetries_continuous"] = [
            {"axis": [float(a) for a in s["axis"]], "offset": [float(o) * 1000.0 for o in s["offset"]]}
            for s in obj.symmetries_continuous
        ]
    # extra keys (ignored by BOP tools): where the object comes from
    info["one2any_id"] = int(obj.obj_id)
    info["name"] = str(obj.name)
    info["split"] = str(obj.split)
    info["shape_symmetry"] = str(obj.shape_symmetry)
    return info


def write_models(
    root: str | os.PathLike,
    objects: list,
    *,
    obj_ids: list[int] | None = None,
    eval_models: bool = True,
    eval_edge_frac: float = 0.04,
) -> dict[int, object]:
    """Write models/obj_XXXXXX.ply (mm, normals, vertex colours, texture uv) + .png textures +
    models_info.json (diameter mm, bbox, symmetries), and models_eval/ (vertices resampled so no edge is
    longer than ``eval_edge_frac`` × diameter). ``obj_ids``: BOP ids (default 1..N). Existing entries of
    models_info.json for other ids are kept. Returns {bop_id: object}."""
    root = Path(root)
    obj_ids = list(range(1, len(objects) + 1)) if obj_ids is None else [int(i) for i in obj_ids]
    if len(obj_ids) != len(objects):
        raise ValueError("obj_ids and objects differ in length")
    mdir = root / "models"
    mdir.mkdir(parents=True, exist_ok=True)
    info_path = mdir / "models_info.json"
    infos = {int(k): v for k, v in json.loads(info_path.read_text()).items()} if info_path.is_file() else {}
    for bop_id, obj in zip(obj_ids, objects):
        tex_name = f"obj_{bop_id:06d}.png"
        cv2.imwrite(str(mdir / tex_name), obj.texture[:, :, ::-1])
        save_ply(
            _model_path(root, bop_id, "models"),
            obj.vertices * 1000.0,
            faces=obj.faces,
            normals=obj.normals,
            colors=obj.vertex_colors(),
            uvs=obj.uvs,
            texture_file=tex_name,
        )
        infos[bop_id] = _models_info_entry(obj)
        if eval_models:
            edir = root / "models_eval"
            edir.mkdir(parents=True, exist_ok=True)
            V, F = _resample(obj.vertices, obj.faces, eval_edge_frac * obj.diameter)
            save_ply(_model_path(root, bop_id, "models_eval"), V * 1000.0, faces=F)
    text = json.dumps({str(k): infos[k] for k in sorted(infos)}, indent=2)
    info_path.write_text(text)
    if eval_models:
        (root / "models_eval" / "models_info.json").write_text(text)
    return dict(zip(obj_ids, objects))


def _resample(V: np.ndarray, F: np.ndarray, max_edge: float) -> tuple[np.ndarray, np.ndarray]:
    """Subdivide until no edge exceeds max_edge, merging duplicated (seam) vertices."""
    import trimesh

    Vu, inv = np.unique(np.round(V, 7), axis=0, return_inverse=True)
    Fu = inv.reshape(-1)[F]
    Fu = Fu[(Fu[:, 0] != Fu[:, 1]) & (Fu[:, 1] != Fu[:, 2]) & (Fu[:, 0] != Fu[:, 2])]
    try:
        V2, F2 = trimesh.remesh.subdivide_to_size(Vu, Fu, max_edge=max_edge, max_iter=12)
    except ValueError:  # max_iter reached on a pathological mesh: keep what we have
        V2, F2 = Vu, Fu
    return np.asarray(V2), np.asarray(F2)


# --------------------------------------------------------------------------------------------------
# scenes


@dataclass
class BopScene:
    scene_id: int
    path: Path
    camera: dict[int, dict]  # im_id -> scene_camera.json entry
    gt: dict[int, list[dict]]  # im_id -> scene_gt.json entries
    gt_info: dict[int, list[dict]] | None  # im_id -> scene_gt_info.json entries (None if the file is absent)
    im_ids: list[int]


def _load_json_int_keys(path: Path) -> dict[int, object]:
    return {int(k): v for k, v in json.loads(path.read_text()).items()}


def list_scenes(root: str | os.PathLike, split: str = "test") -> list[int]:
    """Sorted scene ids under root/split (folders of 6 digits holding scene_gt.json)."""
    d = Path(root) / split
    if not d.is_dir():
        return []
    return sorted(
        int(p.name) for p in d.iterdir() if _SCENE_DIR.match(p.name) and (p / "scene_gt.json").is_file()
    )


def load_scene(root: str | os.PathLike, split: str, scene_id: int) -> BopScene:
    path = Path(root) / split / f"{int(scene_id):06d}"
    if not (path / "scene_gt.json").is_file():
        raise FileNotFoundError(f"{path}/scene_gt.json not found")
    camera = _load_json_int_keys(path / "scene_camera.json")
    gt = _load_json_int_keys(path / "scene_gt.json")
    info_p = path / "scene_gt_info.json"
    gt_info = _load_json_int_keys(info_p) if info_p.is_file() else None
    return BopScene(
        scene_id=int(scene_id),
        path=path,
        camera=camera,
        gt=gt,
        gt_info=gt_info,  # type: ignore[arg-type]
        im_ids=sorted(gt),
    )


def _find_image(path: Path, im_id: int) -> Path:
    for sub in ("rgb", "gray"):
        for ext in (".png", ".jpg", ".jpeg", ".tif"):
            p = path / sub / f"{im_id:06d}{ext}"
            if p.is_file():
                return p
    raise FileNotFoundError(f"no rgb/ or gray/ image {im_id:06d} in {path}")


def pose_from_gt(entry: dict) -> np.ndarray:
    """(4,4) T_cam_obj in metres from a scene_gt.json entry."""
    T = np.eye(4)
    T[:3, :3] = np.asarray(entry["cam_R_m2c"], np.float64).reshape(3, 3)
    T[:3, 3] = np.asarray(entry["cam_t_m2c"], np.float64).reshape(3) / 1000.0
    return T


def load_image(scene: BopScene, im_id: int, gt_index: int = 0) -> dict:
    """One image and one instance: {'rgb' (H,W,3) uint8 RGB, 'depth' (H,W) float32 m (raw × depth_scale
    / 1000; 0 = invalid), 'mask' (H,W) bool (mask_visib), 'mask_full' (when mask/ exists), 'K' (3,3),
    'T_cam_obj' (4,4) m, 'obj_id', 'scene_id', 'im_id', 'gt_index', 'visib_fract' (when known)}."""
    im_id, gt_index = int(im_id), int(gt_index)
    cam = scene.camera[im_id]
    entry = scene.gt[im_id][gt_index]
    img = cv2.imread(str(_find_image(scene.path, im_id)), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise OSError(f"cannot read image {im_id} of scene {scene.path}")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    if img.ndim == 2:
        rgb = np.repeat(img[..., None], 3, axis=2)
    else:
        rgb = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    dpath = scene.path / "depth" / f"{im_id:06d}.png"
    raw = cv2.imread(str(dpath), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise OSError(f"cannot read depth {dpath}")
    depth = raw.astype(np.float32) * np.float32(float(cam.get("depth_scale", 1.0)) / 1000.0)
    mpath = scene.path / "mask_visib" / f"{im_id:06d}_{gt_index:06d}.png"
    m = cv2.imread(str(mpath), cv2.IMREAD_UNCHANGED)
    if m is None:
        raise OSError(f"cannot read mask {mpath}")
    out = {
        "rgb": rgb,
        "depth": depth,
        "mask": m > 0,
        "K": np.asarray(cam["cam_K"], np.float64).reshape(3, 3),
        "T_cam_obj": pose_from_gt(entry),
        "obj_id": int(entry["obj_id"]),
        "scene_id": scene.scene_id,
        "im_id": im_id,
        "gt_index": gt_index,
    }
    fpath = scene.path / "mask" / f"{im_id:06d}_{gt_index:06d}.png"
    if fpath.is_file():
        mf = cv2.imread(str(fpath), cv2.IMREAD_UNCHANGED)
        if mf is not None:
            out["mask_full"] = mf > 0
    if scene.gt_info is not None and im_id in scene.gt_info and gt_index < len(scene.gt_info[im_id]):
        out["visib_fract"] = float(scene.gt_info[im_id][gt_index].get("visib_fract", np.nan))
    return out


def _bbox(mask: np.ndarray) -> list[int]:
    v, u = np.nonzero(mask)
    if len(v) == 0:
        return [-1, -1, -1, -1]
    return [int(u.min()), int(v.min()), int(u.max() - u.min() + 1), int(v.max() - v.min() + 1)]


class BopSceneWriter:
    """Writes one scene: ``<root>/<split>/<scene:06d>/`` with rgb/, depth/, mask/, mask_visib/ and the
    scene_camera/gt/gt_info JSON files (written on ``close``; use as a context manager).

    ``depth_scale``: mm per raw unit of the uint16 depth PNGs (0.1 → 0.1 mm steps, up to 6.5 m).
    ``rgb_ext``: ".png" or ".jpg" (``jpg_quality``)."""

    def __init__(
        self,
        root: str | os.PathLike,
        scene_id: int,
        *,
        split: str = "test",
        rgb_ext: str = ".png",
        depth_scale: float = 0.1,
        jpg_quality: int = 95,
        png_compression: int = 3,
    ) -> None:
        if rgb_ext not in (".png", ".jpg"):
            raise ValueError("rgb_ext must be .png or .jpg")
        self.path = Path(root) / split / f"{int(scene_id):06d}"
        for sub in ("rgb", "depth", "mask", "mask_visib"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        self.scene_id = int(scene_id)
        self.rgb_ext = rgb_ext
        self.depth_scale = float(depth_scale)
        self.jpg_quality = int(jpg_quality)
        self.png_compression = int(png_compression)
        self.camera: dict[int, dict] = {}
        self.gt: dict[int, list[dict]] = {}
        self.gt_info: dict[int, list[dict]] = {}

    def add(
        self, im_id: int, rgb: np.ndarray, depth_m: np.ndarray, K: np.ndarray, instances: list[dict]
    ) -> None:
        """Add image ``im_id``. ``instances``: dicts with 'obj_id' (BOP id), 'T_cam_obj' (4,4) m,
        'mask_visib' (H,W) bool and optionally 'mask' (full silhouette; default = mask_visib)."""
        im_id = int(im_id)
        png = [cv2.IMWRITE_PNG_COMPRESSION, self.png_compression]
        name = f"{im_id:06d}"
        bgr = np.ascontiguousarray(np.asarray(rgb, np.uint8)[:, :, ::-1])
        if self.rgb_ext == ".jpg":
            cv2.imwrite(
                str(self.path / "rgb" / f"{name}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, self.jpg_quality]
            )
        else:
            cv2.imwrite(str(self.path / "rgb" / f"{name}.png"), bgr, png)
        depth_m = np.asarray(depth_m, np.float32)
        raw = np.round(np.nan_to_num(depth_m) * 1000.0 / self.depth_scale)
        if raw.max(initial=0) > 65535:
            raise ValueError(
                f"depth {depth_m.max():.2f} m does not fit uint16 at depth_scale {self.depth_scale}"
            )
        cv2.imwrite(str(self.path / "depth" / f"{name}.png"), np.clip(raw, 0, 65535).astype(np.uint16), png)
        self.camera[im_id] = {
            "cam_K": [float(x) for x in np.asarray(K, np.float64).ravel()],
            "depth_scale": self.depth_scale,
        }
        gts, infos = [], []
        valid_depth = depth_m > 0
        for k, inst in enumerate(instances):
            T = np.asarray(inst["T_cam_obj"], np.float64)
            mv = np.asarray(inst["mask_visib"], bool)
            mf = np.asarray(inst.get("mask", mv), bool)
            cv2.imwrite(str(self.path / "mask_visib" / f"{name}_{k:06d}.png"), mv.astype(np.uint8) * 255, png)
            cv2.imwrite(str(self.path / "mask" / f"{name}_{k:06d}.png"), mf.astype(np.uint8) * 255, png)
            gts.append(
                {
                    "cam_R_m2c": [float(x) for x in T[:3, :3].ravel()],
                    "cam_t_m2c": [float(x) for x in T[:3, 3] * 1000.0],
                    "obj_id": int(inst["obj_id"]),
                }
            )
            n_all, n_vis = int(mf.sum()), int(mv.sum())
            infos.append(
                {
                    "bbox_obj": _bbox(mf),
                    "bbox_visib": _bbox(mv),
                    "px_count_all": n_all,
                    "px_count_valid": int((mf & valid_depth).sum()),
                    "px_count_visib": n_vis,
                    "visib_fract": float(n_vis / n_all) if n_all else 0.0,
                }
            )
        self.gt[im_id] = gts
        self.gt_info[im_id] = infos

    def close(self) -> None:
        """Write the JSON files (keys sorted numerically)."""
        for fname, d in (
            ("scene_camera.json", self.camera),
            ("scene_gt.json", self.gt),
            ("scene_gt_info.json", self.gt_info),
        ):
            (self.path / fname).write_text(json.dumps({str(k): d[k] for k in sorted(d)}, indent=1))

    def __enter__(self) -> "BopSceneWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_camera_json(
    root: str | os.PathLike, K: np.ndarray, width: int, height: int, depth_scale: float
) -> None:
    """The dataset-level camera.json (BOP)."""
    K = np.asarray(K, np.float64)
    Path(root).mkdir(parents=True, exist_ok=True)
    (Path(root) / "camera.json").write_text(
        json.dumps(
            {
                "cx": float(K[0, 2]),
                "cy": float(K[1, 2]),
                "fx": float(K[0, 0]),
                "fy": float(K[1, 1]),
                "width": int(width),
                "height": int(height),
                "depth_scale": float(depth_scale),
            },
            indent=1,
        )
    )


# --------------------------------------------------------------------------------------------------
# results CSV

RESULTS_HEADER = ["scene_id", "im_id", "obj_id", "score", "R", "t", "time"]


def write_results_csv(path: str | os.PathLike, rows: list[dict]) -> None:
    """BOP results CSV. Each row: scene_id, im_id, obj_id, score, 'R' (3,3 or 9 values, row-wise),
    't' (3,) in MILLIMETRES, 'time' seconds (-1 if unknown). A row may give 'T_cam_obj' (4,4, metres)
    instead of R and t."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(RESULTS_HEADER)
        for r in rows:
            if "R" in r:
                R = np.asarray(r["R"], np.float64).reshape(9)
                t = np.asarray(r["t"], np.float64).reshape(3)
            else:
                T = np.asarray(r["T_cam_obj"], np.float64)
                R, t = T[:3, :3].reshape(9), T[:3, 3] * 1000.0
            w.writerow(
                [
                    int(r["scene_id"]),
                    int(r["im_id"]),
                    int(r["obj_id"]),
                    f"{float(r.get('score', 1.0)):.6f}",
                    " ".join(f"{x:.8f}" for x in R),
                    " ".join(f"{x:.6f}" for x in t),
                    f"{float(r.get('time', -1.0)):.6f}",
                ]
            )


def read_results_csv(path: str | os.PathLike) -> list[dict]:
    """Rows of a BOP results CSV: scene_id, im_id, obj_id (int), score, time (float), 'R' (3,3), 't' (3,)
    mm, and 'T_cam_obj' (4,4) metres."""
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            R = np.array([float(x) for x in r["R"].split()], np.float64).reshape(3, 3)
            t = np.array([float(x) for x in r["t"].split()], np.float64).reshape(3)
            T = np.eye(4)
            T[:3, :3], T[:3, 3] = R, t / 1000.0
            rows.append(
                {
                    "scene_id": int(r["scene_id"]),
                    "im_id": int(r["im_id"]),
                    "obj_id": int(r["obj_id"]),
                    "score": float(r["score"]),
                    "R": R,
                    "t": t,
                    "time": float(r.get("time", -1) or -1),
                    "T_cam_obj": T,
                }
            )
    return rows
