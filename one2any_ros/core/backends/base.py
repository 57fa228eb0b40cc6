"""The backend interface: a backend encodes the reference once and proposes pose hypotheses per query.

Scoring (verify.py) and refinement (estimator.py) are shared by all backends, so a backend never picks
the final pose itself. A learned backend may also return its dense ROC prediction, which the verifier
uses as an extra agreement term.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np
from one2any_ros.core.nearest import KDTree, VoxelNearest
from one2any_ros.core.reference import Reference
from one2any_ros.core.frame import View
from one2any_ros.core.verify import DepthTarget


@dataclass(frozen=True)
class SearchSettings:
    """Global-search, ICP and RANSAC settings; distances are fractions of the object diameter."""

    num_start_rotations: int = 100  # super-Fibonacci starts of the multi-start ICP
    icp_points: int = 150  # reference points moved by the multi-start ICP
    icp_thresholds: tuple[float, ...] = (0.2, 0.1, 0.05)
    icp_iterations: int = 5  # per threshold
    icp_keep: int = 50  # starts kept for the finest threshold. 30 lost right poses at wide baselines: paired on
    # validation suite v1 (1,008 queries; docs/validation.md, "More right poses in the pool") 50 gave 0.688 -> 0.695,
    # +0.008 [+0.001, +0.016], no bin or part lower beyond its interval, shape-asymmetric seed 202 +0.036, x1.07 time
    start_depth_offset: float = 0.5  # (tuned on validation objects: ADD(-S) 0.55 -> 0.61) visible-surface centroid correction of the starts, x scale (base.centroid_start)
    colour_weight: float = 0.2  # coloured-ICP feature scale, x diameter (0 = geometry only)
    lookup_cell: float = 0.03  # voxel-lookup nearest neighbours (nearest.VoxelNearest), cell x diameter, in the first
    lookup_stages: int = 1  # ... ICP thresholds of the multi-start search (0 = the KD-tree throughout)
    # Measured on validation objects (two seeds of 210 queries; docs/benchmarks.md, "The global search, faster"): the
    # lookup in the coarsest stage costs no accuracy; in the 0.1 d stage too it lost 0.05 (with a finer cell as well:
    # that stage needs the colour's pull); 30 kept starts instead of 50 cost nothing there (two seeds of 210; the suite
    # disagrees, above); 100 points instead of 150 lost
    # 0.07 with classic on one seed: not taken. Pruning to 30 (50) straight after the lookup stage, by its inliers:
    # grid 254 -> 161 (193) ms but ADD(-S) 0.786/0.757 -> 0.733/0.681 (0.752/0.729): not taken
    icp_eps: float = 0.0  # approximate neighbours in the multi-start ICP (geometry.icp_batched); measured on validation
    # objects: 0.5 -> global search 283 -> 226 ms but ADD(-S) 0.71 -> 0.69; 1.0 -> 199 ms, 0.68. Off: accuracy first
    ransac_iterations: int = 256
    ransac_threshold: float = 0.05
    ransac_hypotheses: int = 4  # hypotheses a learned backend adds (best RANSAC runs)
    # Measured, not taken: skipping the grid when the verifier already trusts a RANSAC hypothesis (confidence >= 0.6 /
    # 0.75 / 0.9) lost 0.06 / 0.02-0.03 / 0-0.01 validation ADD(-S) (two seeds) and saved little time at 0.9


@dataclass
class QueryContext:
    """Everything derived from the query frame once and shared by the backends and the verifier."""

    view: View
    points: np.ndarray  # (N,3) all valid masked points, query camera, metres
    pixels: np.ndarray  # (N,2) their (v, u)
    tree: KDTree  # over a subsample of ``points`` (ICP target)
    centroid: np.ndarray  # (3,) median of the points
    colour: np.ndarray  # (N,3) colour features of ``points`` (colour.colour_features)
    target: "DepthTarget"  # the query observation prepared for the verifier
    tree_index: np.ndarray  # (T,) which of ``points`` are in ``tree``
    _colour_trees: dict = field(default_factory=dict)
    _lookups: dict = field(default_factory=dict)
    appearance_images: dict = field(default_factory=dict)  # AppearanceSettings -> the query's appearance image
    scorer_queries: dict = field(default_factory=dict)  # (diameter, grid) -> a learned scorer's query half (the
    # global search asks the scorer twice per frame: its refined candidates, then the twins)

    def depth_mask(self) -> np.ndarray:
        """(H, W) bool: the pixels of ``points`` (``camera.object_depth_mask`` of the view, which they were
        back-projected from), rebuilt from ``pixels`` rather than computed again (the network's input needs it)."""
        out = np.zeros(self.view.mask.shape[:2], bool)
        out[self.pixels[:, 0], self.pixels[:, 1]] = True
        return out

    def colour_tree(self, scale: float) -> KDTree:
        """KD-tree over [xyz, scale * colour] for coloured ICP (built once per frame and scale)."""
        if scale not in self._colour_trees:
            i = self.tree_index
            self._colour_trees[scale] = KDTree(np.concatenate([self.points[i], scale * self.colour[i]], axis=1))
        return self._colour_trees[scale]

    def voxel_nearest(self, cell: float, margin: float) -> VoxelNearest | KDTree:
        """Table-lookup nearest neighbours over the tree's points (built once per frame, cell and margin); the
        KD-tree (same ``query``) when the table would be too large (a cloud far wider than the object)."""
        key = (cell, margin)
        if key not in self._lookups:
            pts = self.points[self.tree_index]
            self._lookups[key] = VoxelNearest(pts, cell, margin) if VoxelNearest.fits(pts, cell, margin) else self.tree
        return self._lookups[key]


@dataclass
class Proposal:
    T_query_C: np.ndarray  # (B,4,4) hypotheses: canonical frame C in the query camera
    sources: list[str]  # (B,) where each came from ("grid", "ransac", "track", ...)
    roc_pred: np.ndarray | None = None  # (N,3) ROC predicted at QueryContext.points (learned backends)
    roc_weight: np.ndarray | None = None  # (N,) its confidence, 0..1
    timings_ms: dict[str, float] = field(default_factory=dict)  # backend stages (e.g. "network")


class Backend(abc.ABC):
    name: str = "base"
    fallback_reason: str = ""  # set when the factory fell back to this backend (reported in diagnostics)
    # the confidence a global search's winner found without a mask must reach (EstimatorSettings.search_min_confidence
    # None): confidences are the backend's, so is the bar. 0.35, the tracked poses' bar, for the training-free ones:
    # 0.5 lost a bin beyond its interval with classic on both seeds of compare_tracking (docs/tracking.md)
    search_min_confidence: float = 0.35
    anchored_span_deg: float | None = None  # the view change from the reference (deg) within which
    # ``anchored_hypotheses`` are offered to tracking; None = any (a learned backend: the span it was trained on)
    recipe: tuple[str, str, str | None] | None = None  # (name, device, checkpoint) that make the same backend in
    # another process (create_backend sets it; the object helper processes need it: core/object_processes.py)

    def describe(self) -> dict:
        """What produced the poses (recorded in evaluation reports and benchmarks)."""
        return {"backend": self.name, **({"fallback_reason": self.fallback_reason} if self.fallback_reason else {})}

    def encode_reference(self, ref: Reference) -> None:
        """Cache whatever the backend needs per reference into ``ref.embedding`` (default: nothing)."""

    def candidate_term(self, ref: Reference, query: QueryContext, T_query_C: np.ndarray, score: np.ndarray) -> np.ndarray | None:
        """A learned term (K,) the backend lends the final ranking of the refined candidates (K,4,4), added to
        their verifier scores ``score`` (K,); None = nothing to add (the default, and ``classic``)."""
        return None

    def anchored_hypotheses(self, ref: Reference, query: QueryContext, settings: SearchSettings,
                            diameter: float) -> Proposal | None:
        """Hypotheses that need no search from a start (a learned backend's, from its ROC prediction): anchored to
        the reference, they let tracking catch up where its starts from the last pose lag. None (the default, and
        the training-free backends): the grid is the search, too slow to run on every tracked frame."""
        return None

    @abc.abstractmethod
    def propose(self, ref: Reference, query: QueryContext, settings: SearchSettings, diameter: float) -> Proposal:
        """Pose hypotheses of C in the query camera."""


def centroid_start(ref: Reference, query: QueryContext, rotations: np.ndarray, depth_offset: float = 0.0) -> np.ndarray:
    """Start transforms (B,4,4) for rotations (B,3,3) of C.

    C's origin is the median of the surface the reference camera saw, which lies in front of the object's
    centre by about ``depth_offset`` (x the scale s) along the reference camera's axis; the query's median
    lies in front of the centre along the query camera's axis likewise. So for a rotation R the origin of
    C starts at  q_median + depth_offset * s * (e_z - R e_z): exact centroid alignment for R = I, and
    a 180 deg flip starts one visible-surface depth further back instead of inside the query surface.

    Args:
        ref: the reference (its scale s, metres).
        query: the query (its (3,) float centroid, the median of its points in the camera, metres).
        rotations: (B, 3, 3) float rotations of C in the query camera.
        depth_offset: the correction, x s.

    Returns:
        (B, 4, 4) float64 transforms, C -> query camera, metres.
    """
    T = np.tile(np.eye(4), (len(rotations), 1, 1))
    T[:, :3, :3] = rotations
    ez = np.array([0.0, 0.0, 1.0])
    T[:, :3, 3] = query.centroid + depth_offset * ref.scale * (ez[None] - rotations[:, :, 2])
    return T
