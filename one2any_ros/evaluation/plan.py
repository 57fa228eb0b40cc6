"""The one-reference evaluation's plan (docs/architecture.md, "The one-reference evaluation protocol"): per scene and
object, one instance per image (the first entry of that ``obj_id`` in ``scene_gt.json``), the reference (the first
image whose instance has ``visib_fract`` >= 0.5, given its ground-truth pose), the queries (every other image of the
object), and the object models the metrics need.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from one2any_ros.core import metrics
from one2any_ros.data.objects import family_of


REFERENCE_MIN_VISIB = 0.5


MODEL_POINTS = 2000  # model points per object for ADD / ADD-S


@dataclass
class ObjectPlan:
    """One (scene, object): its reference instance and its query instances, as (im_id, gt_index)."""

    scene: Any  # bop.BopScene
    obj_id: int
    reference: tuple[int, int]
    reference_visib: float | None
    queries: list[tuple[int, int]] = field(default_factory=list)


def first_instances(scene) -> dict[int, list[tuple[int, int]]]:
    """obj_id -> [(im_id, gt_index)] over the scene's images in im_id order, the first instance per image."""
    out: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for im_id in scene.im_ids:
        seen: set[int] = set()
        for idx, g in enumerate(scene.gt.get(im_id, [])):
            oid = int(g["obj_id"])
            if oid not in seen:
                seen.add(oid)
                out[oid].append((im_id, idx))
    return dict(out)


def _visib(scene, im_id: int, idx: int) -> float | None:
    """The instance's visib_fract, or None when unknown (no scene_gt_info.json, or no entry)."""
    if scene.gt_info is None:
        return None
    entries = scene.gt_info.get(im_id) or []
    if idx >= len(entries) or "visib_fract" not in entries[idx]:
        return None
    return float(entries[idx]["visib_fract"])


def select_reference(scene, instances: Sequence[tuple[int, int]], *, min_visib: float = REFERENCE_MIN_VISIB
                     ) -> tuple[int, int] | None:
    """The reference among one object's instances (im_id order): the first with visib_fract >= min_visib;
    the first one when the scene has no scene_gt_info.json (an instance without an entry counts as
    visible). None when no instance qualifies."""
    for im_id, idx in instances:
        v = _visib(scene, im_id, idx)
        if v is None or v >= min_visib:
            return im_id, idx
    return None


def plan_scene(scene, *, obj_ids: Iterable[int] | None = None, min_query_visib: float = 0.0
               ) -> tuple[list[ObjectPlan], list[dict]]:
    """The ObjectPlans of one scene, and the objects skipped for want of a reference view."""
    wanted = None if obj_ids is None else {int(o) for o in obj_ids}
    plans, skipped = [], []
    for oid, inst in sorted(first_instances(scene).items()):
        if wanted is not None and oid not in wanted:
            continue
        ref = select_reference(scene, inst)
        if ref is None:
            skipped.append({"scene_id": int(scene.scene_id), "obj_id": oid, "n_images": len(inst),
                            "reason": f"no image with visib_fract >= {REFERENCE_MIN_VISIB}"})
            continue
        queries = [q for q in inst if q != ref and _visible_enough(_visib(scene, *q), min_query_visib)]
        plans.append(ObjectPlan(scene=scene, obj_id=oid, reference=ref, reference_visib=_visib(scene, *ref), queries=queries))
    return plans, skipped


def _visible_enough(visib: float | None, min_visib: float) -> bool:
    return min_visib <= 0 or visib is None or visib >= min_visib


def subsample_plans(plans: list[ObjectPlan], max_queries: int | None) -> list[ObjectPlan]:
    """Keep ``max_queries`` queries spread evenly over the whole ordered list (every scene and object keeps
    its share, so the rotation bins stay representative). Plans left with no query are dropped."""
    total = sum(len(p.queries) for p in plans)
    if max_queries is None or max_queries >= total:
        return plans
    keep = set(np.unique(np.round(np.linspace(0, total - 1, max(int(max_queries), 0))).astype(int)).tolist())
    out, k = [], 0
    for p in plans:
        qs = []
        for q in p.queries:
            if k in keep:
                qs.append(q)
            k += 1
        if qs:
            out.append(ObjectPlan(p.scene, p.obj_id, p.reference, p.reference_visib, qs))
    return out


@dataclass
class EvalModel:
    """An object's model as the metrics need it (BOP models_info + sampled model points)."""

    pts: np.ndarray  # (N,3) m, object frame
    diameter_m: float
    symmetric: bool
    syms: np.ndarray | None  # (K,4,4) m symmetry transforms, None when asymmetric
    family: str | None = None  # models_info's optional "family" (our renders write it; BOP datasets have none)


def load_eval_model(bop, root: Path, obj_id: int, models_info: Mapping[int, dict]) -> EvalModel:
    """Load object ``obj_id``'s points, diameter and symmetries; public for tools that score poses
    the way ``evaluate_dataset`` does (tools/diagnose_pool.py)."""
    if obj_id not in models_info:
        raise ValueError(f"object {obj_id} has no entry in {root}/models/models_info.json")
    info = models_info[obj_id]
    sym = bool(bop.is_symmetric(info))
    pts = np.asarray(bop.load_model_points(root, obj_id, max_points=MODEL_POINTS, prefer_eval=True), np.float64)
    family = info.get("family") or info_family(info, sym)
    return EvalModel(pts=pts, diameter_m=float(info["diameter"]) * 1e-3, symmetric=sym,
                     syms=metrics.symmetry_transforms(info) if sym else None,
                     family=str(family) if family is not None else None)


def info_family(info: Mapping, symmetric: bool) -> str | None:
    """The object's family (``data.objects.family_of``) from our models_info's ``shape_symmetry`` (symmetry of
    the geometry alone), when present; None for other BOP datasets."""
    shape = info.get("shape_symmetry")
    if shape is None:
        return None
    return family_of(symmetric, shape != "none")


def plan_dataset(root: Path, split: str, *, scene_ids: Iterable[int] | None = None, obj_ids: Iterable[int] | None = None,
                 min_query_visib: float = 0.0) -> tuple[list[ObjectPlan], list[dict], int]:
    """(the ObjectPlans of every wanted scene of the split, the objects skipped for want of a reference, the number
    of scenes planned)."""
    from one2any_ros.data import bop

    wanted_scenes = None if scene_ids is None else {int(s) for s in scene_ids}
    plans: list[ObjectPlan] = []
    skipped: list[dict] = []
    n_scenes = 0
    for sid in bop.list_scenes(root, split):
        if wanted_scenes is not None and int(sid) not in wanted_scenes:
            continue
        n_scenes += 1
        p, s = plan_scene(bop.load_scene(root, split, sid), obj_ids=obj_ids, min_query_visib=min_query_visib)
        plans += p
        skipped += s
    return plans, skipped, n_scenes

