"""The node's parameters (contract: docs/ros.md): one table, declared with descriptors, read into a frozen dataclass.

Every parameter has a ParameterDescriptor (description, range, read_only for model paths). The node
reads them once into :class:`NodeSettings`; its parameter callback builds a new NodeSettings from the
changed values (:func:`updated_settings`) and swaps it whole, so a frame always sees one consistent set.
Estimator tunables map one-to-one onto ``EstimatorSettings.with_updates`` keys (dotted names such as
``search.num_start_rotations`` are ``search:`` blocks in the yaml).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

from one2any_ros.core.backends import BACKENDS
from one2any_ros.core.estimator_settings import EstimatorSettings
from one2any_ros.core.frame import DEFAULT_OBJECT
from one2any_ros.core.multi_object import MASK_MODES

DEVICES = ("auto", "cpu", "cuda")


MIN_IMAGE_WIDTH = 160  # the narrowest working width max_image_width may ask for (0 = full resolution)


@dataclass(frozen=True)
class NodeSettings:
    backend: str = "auto"
    device: str = "auto"
    checkpoint: str = ""
    object_frame: str = "object"
    object_frame_prefix: str = ""
    max_objects: int = 8
    object_processes: int = -1
    helper_timeout_ms: int = 2000
    publish_tf: bool = True
    reference_path: str = ""
    sync_slop: float = 0.05
    min_depth: float = 0.1
    max_depth: float = 4.0
    max_image_width: int = 640
    max_frame_age_ms: int = 500
    mask_mode: str = "when_needed"
    mask_wait_ms: int = 100
    instance_labels: bool = False
    debug: bool = False
    estimator: EstimatorSettings = field(default_factory=EstimatorSettings)

    def child_frame(self, object_id: str) -> str:
        """The TF child frame of ``object_id``: ``object_frame`` for the default object, else prefix + its id."""
        return self.object_frame if object_id == DEFAULT_OBJECT else self.object_frame_prefix + object_id


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    description: str
    range: tuple[float, float] | None = None
    read_only: bool = False
    choices: tuple[str, ...] = ()
    estimator_key: str | None = None  # EstimatorSettings.with_updates key; None = a NodeSettings field


def _est(key: str) -> Any:
    obj = EstimatorSettings()
    for part in key.split("."):
        obj = getattr(obj, part)
    return list(obj) if isinstance(obj, tuple) else obj


def _e(key: str, description: str, rng=None) -> Param:
    return Param(key, _est(key), description, rng, estimator_key=key)


def _block(block: str, about: str, rows: tuple[tuple, ...]) -> tuple[Param, ...]:
    """Estimator parameters of one settings block: rows (key in the block, description after ``about``[, range])."""
    return tuple(_e(f"{block}.{key}", about + text, *rng) for key, text, *rng in rows)


PARAMS: tuple[Param, ...] = (
    Param("backend", "auto", "pose backend: auto (one2any when a checkpoint loads, else classic), one2any, "
          "classic or icp; changeable at runtime", choices=BACKENDS),
    Param("device", "auto", "inference device of the learned backend: auto, cpu or cuda", read_only=True, choices=DEVICES),
    Param("checkpoint", "", "model checkpoint (.safetensors); empty = the bundled one", read_only=True),
    Param("object_frame", "object", "TF child frame of the default object \"\" (parent: the image's camera frame)"),
    Param("object_frame_prefix", "", "TF child frame of a named object: this prefix + its object_id"),
    Param("max_objects", 8, "most references (objects) the node holds at once", (1, 64), read_only=True),
    Param("object_processes", -1, "helper processes that estimate some objects of a frame while the node's worker "
          "estimates the rest (threads gain nothing: the GIL); -1 = one per core beyond the first, 0 = none",
          (-1, 64), read_only=True),
    Param("helper_timeout_ms", 2000, "ms: a helper process that answers a frame this long after the node's worker "
          "finished its own objects (and at least twice the worker's time), or any other request this late, is "
          "killed and started again; its objects are estimated by the worker meanwhile (helper_timeout)",
          (100, 600_000), read_only=True),
    Param("publish_tf", True, "broadcast camera -> object_frame on /tf"),
    Param("reference_path", "", "where the references are saved when set and loaded on start: the default object "
          "here, a named one beside it (<stem>.<object_id>.zip, listed in <name>.index.json); empty = "
          "$ROS_HOME/one2any/<node's full name>.reference.zip", read_only=True),
    Param("sync_slop", 0.05, "s: rgb, depth, mask and camera_info stamps of one frame lie within this", (0.0, 10.0)),
    Param("min_depth", 0.1, "m: nearer depth is invalid", (0.0, 100.0)),
    Param("max_depth", 4.0, "m: farther depth is invalid", (0.0, 100.0)),
    Param("max_image_width", 640, "px: a wider frame is decimated by the smallest whole stride that makes it at most "
          "this wide before anything is estimated on it (poses are metric and keep their accuracy; the cost per object "
          "follows its pixels); 0 = full resolution", (0, 100_000)),
    Param("max_frame_age_ms", 500, "ms: frames whose stamp is older than this (node clock) are skipped; 0 = off",
          (0, 3_600_000)),
    Param("mask_mode", "when_needed", "when_needed: frames are rgb + depth + camera_info, a mask or a box is used "
          "when one comes (to register an object and to find it again after a loss) and tracked objects need none; "
          "every_frame: a frame is complete only with its mask", read_only=True, choices=MASK_MODES),
    Param("mask_wait_ms", 100, "ms: how long a frame waits for its mask or boxes (stamp within sync_slop), while "
          "masks or boxes have arrived in the last second; with no segmenter running no frame waits", (0, 10_000)),
    Param("instance_labels", False, "mask values are per-frame instance ids (YOLO-seg, SAM2): mask_label picks the "
          "instance in the reference frame only; afterwards each tracked object takes the instance that best overlaps "
          "its predicted silhouette"),
    Param("debug", False, "publish the pose overlay on ~/debug_image"),
    _e("min_inliers", "reference points within inlier_threshold of the query surface needed for a pose",
       (0, 1_000_000)),
    _e("min_confidence", "verifier confidence (0..1) needed for a pose", (0.0, 1.0)),
    _e("track_min_confidence", "below this the tracked pose is not trusted and the global search runs", (0.0, 1.0)),
    _e("track_points", "reference points of the tracking refinement", (3, 100_000)),
    _e("track_iterations", "ICP iterations per threshold of the tracking refinement", (1, 1000)),
    _e("track_min_appearance", "a tracked pose whose appearance score (texture correlation, shrunk ZNCC) is below this "
       "is not trusted: global search (0 = off)", (0.0, 1.0)),
    _e("track_turn_deg", "tracking starts: the last pose and turned by +- this about the reference's principal axes "
       "(0 = the last pose alone)", (0.0, 90.0)),
    _e("track_velocity", "tracking also starts from the last pose moved by the last frame's motion (an object turning "
       "fast runs ahead of the turns)"),
    _e("track_network_every", "on every this-many-th tracked frame, tracking also starts from the learned backend's "
       "own hypotheses (anchored to the reference, not the last pose; 0 = never); one wins only where its texture "
       "fits at least as well as the best tracked pose", (0, 1000)),
    _e("track_spin_deg", "tracking's winner turned about the reference's axis of revolution within +- this, verifier "
       "and appearance keeping the best turn: geometry cannot see it (0 = off)", (0.0, 90.0)),
    _e("track_slide", "... and slid along that axis by up to this x diameter (0 = no slides)", (0.0, 1.0)),
    _e("track_sphere_max_residual", "a textured reference whose visible surface is a piece of a sphere (its normal lines "
       "within this x its radius of one point: a bowl's outside): tracking's winner is also turned about that point, "
       "appearance choosing (0 = off)", (0.0, 1.0)),
    _e("track_margin", "without a mask, an object's pixels are those within this (x diameter) of its reference cloud "
       "at the last pose: the motion allowed between frames", (0.01, 2.0)),
    _e("search_radii", "a lost object is searched for within this many object radii of where it was last seen",
       (0.5, 50.0)),
    _e("inlier_threshold", "inlier band, x object diameter", (1e-4, 1.0)),
    _e("refine_top_k", "hypotheses refined by guarded ICP", (1, 1000)),
    _e("refine_iterations", "ICP iterations per refinement threshold", (1, 1000)),
    _e("refine_thresholds", "ICP inlier distances of the refinement, x object diameter (coarse to fine)"),
    _e("refine_colour_weight", "coloured-ICP feature scale of the refinement, x object diameter (0 = geometry only)",
       (0.0, 10.0)),
    _e("appearance_weight", "texture correlation (ZNCC) weight among final candidates geometry cannot tell apart "
       "(0 = off)", (0.0, 100.0)),
    _e("appearance_margin", "... those within this verifier score of the best", (0.0, 10.0)),
    _e("confidence_margin", "confidence falls when a rival pose scores within this of the winner (0 = off)",
       (0.0, 10.0)),
    _e("confidence_appearance", "the published confidence falls with the texture's agreement below this x the most "
       "the reference can score (0 = the verifier's alone)", (0.0, 10.0)),
    _e("twin_top_k", "geometric twins (flips, turns) of the best refined candidates added (0 = off)", (0, 20)),
    _e("twin_keep", "... only this many twins, the best by verifier and appearance after a coarse table-lookup ICP, "
       "are refined (0 = all: ~0.5-1 s)", (0, 1000)),
    _e("twin_rank_points", "... that ranking scores appearance on about this many of the reference's appearance "
       "points (every k-th; 0 = all)", (0, 1_000_000)),
    _e("twin_min_confidence", "... a twin joins only with this x the best candidate's verifier confidence",
       (0.0, 1.0)),
    _e("twin_min_appearance_gain", "... and wins only when its appearance score (-1..1) beats the search's own best "
       "candidate's by this; else it stays that candidate's rival (-2 = off)", (-2.0, 2.0)),
    _e("sweep_top_k", "spin sweep: best hypotheses turned about the reference's principal axes (0 = off)", (0, 100)),
    *_block("search", "global search: ", (
        ("num_start_rotations", "start rotations of the multi-start ICP", (1, 100_000)),
        ("icp_points", "reference points moved by the multi-start ICP", (3, 100_000)),
        ("icp_thresholds", "ICP inlier distances, x object diameter (coarse to fine)"),
        ("icp_iterations", "ICP iterations per threshold", (1, 1000)),
        ("icp_keep", "starts kept after the coarsest ICP threshold", (1, 100_000)),
        ("lookup_cell", "voxel-lookup nearest neighbours, cell x object diameter", (1e-3, 1.0)),
        ("lookup_stages", "ICP stages matched by voxel lookup (0 = KD-tree throughout)", (0, 10)),
        ("colour_weight", "coloured-ICP feature scale, x object diameter (0 = geometry only)", (0.0, 10.0)),
        ("start_depth_offset", "visible-surface centroid correction of the starts, x scale", (0.0, 5.0)),
    )),
    _e("search.ransac_iterations", "RANSAC iterations on correspondences", (1, 1_000_000)),
    _e("search.ransac_threshold", "RANSAC inlier distance, x object diameter", (1e-4, 1.0)),
    _e("search.ransac_hypotheses", "best RANSAC runs a learned backend adds as hypotheses", (0, 1000)),
    _e("verifier.tau", "verifier depth agreement band, x object diameter", (1e-4, 1.0)),
    *_block("verifier", "verifier weight of ", (
        ("violation", "free-space violations", (0.0, 100.0)),
        ("agree", "depth agreement alone", (0.0, 100.0)),
        ("colour", "agreement in depth and colour", (0.0, 100.0)),
    )),
    _e("verifier.colour_tau", "verifier colour agreement band (chromaticity + brightness units)", (1e-4, 10.0)),
    _e("verifier.roc", "verifier weight of the learned ROC agreement", (0.0, 100.0)),
)
BY_NAME = {p.name: p for p in PARAMS}
_NODE_FIELDS = {f.name for f in fields(NodeSettings)} - {"estimator"}


def default_reference_path(full_name: str) -> Path:
    """reference_path = "": $ROS_HOME/one2any/<full name, '/' -> '.'>.reference.zip (ROS names have no '.',
    so two nodes never share a file)."""
    home = Path(os.environ.get("ROS_HOME") or Path.home() / ".ros")
    return home / "one2any" / (full_name.strip("/").replace("/", ".") + ".reference.zip")


def descriptor(p: Param) -> ParameterDescriptor:
    d = ParameterDescriptor(name=p.name, read_only=p.read_only)
    d.description = p.description + (f" ({'|'.join(p.choices)})" if p.choices else "")
    if isinstance(p.default, bool):
        d.type = ParameterType.PARAMETER_BOOL
    elif isinstance(p.default, int):
        d.type = ParameterType.PARAMETER_INTEGER
        if p.range:
            d.integer_range = [IntegerRange(from_value=int(p.range[0]), to_value=int(p.range[1]), step=1)]
    elif isinstance(p.default, float):
        d.type = ParameterType.PARAMETER_DOUBLE
        if p.range:
            d.floating_point_range = [FloatingPointRange(from_value=float(p.range[0]), to_value=float(p.range[1]),
                                                         step=0.0)]
    elif isinstance(p.default, list):
        d.type = ParameterType.PARAMETER_DOUBLE_ARRAY
    else:
        d.type = ParameterType.PARAMETER_STRING
    return d


def declare(node) -> NodeSettings:
    """Declare every parameter on ``node`` and return the settings they hold (validated)."""
    values = {}
    for p in PARAMS:
        values[p.name] = node.declare_parameter(p.name, p.default, descriptor(p)).value
    return updated_settings(NodeSettings(), values)


def updated_settings(base: NodeSettings, changes: dict[str, Any]) -> NodeSettings:
    """A new NodeSettings with ``changes`` ({parameter name: value}; unknown names ignored) applied.
    Raises ValueError naming the problem for a value the descriptors cannot express (choices, order)."""
    node_kw, est_kw = {}, {}
    for name, value in changes.items():
        p = BY_NAME.get(name)
        if p is None:
            continue  # use_sim_time and other rclpy-owned parameters
        if p.choices and value not in p.choices:
            raise ValueError(f"{name} must be one of {', '.join(p.choices)}, got '{value}'")
        if isinstance(p.default, list):
            value = tuple(float(v) for v in value)
            if not value or any(not 0.0 < v <= 1.0 for v in value):
                raise ValueError(f"{name} must be a non-empty list of fractions in (0, 1], got {list(value)}")
        elif isinstance(p.default, float):
            value = float(value)
        if p.estimator_key:
            est_kw[p.estimator_key] = value
        elif name in _NODE_FIELDS:
            node_kw[name] = value
    new = replace(base, estimator=base.estimator.with_updates(**est_kw), **node_kw)
    if not new.min_depth < new.max_depth:
        raise ValueError(f"min_depth ({new.min_depth}) must be smaller than max_depth ({new.max_depth})")
    if 0 < new.max_image_width < MIN_IMAGE_WIDTH:
        raise ValueError(f"max_image_width ({new.max_image_width}) must be 0 (full resolution) or at least "
                         f"{MIN_IMAGE_WIDTH} px: objects narrower than a few dozen pixels give no pose")
    return new
