"""The backend interface: a backend encodes the reference once and proposes pose hypotheses per query.

Scoring (verify.py) and refinement (estimator.py) are shared by all backends, so a backend never picks
the final pose itself. A learned backend may also return its dense ROC prediction, which the verifier
uses as an extra agreement term.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from ..reference import Reference, View
from ..verify import DepthTarget


@dataclass(frozen=True)
class SearchSettings:
    """Global-search, ICP and RANSAC settings; distances are fractions of the object diameter."""

    num_start_rotations: int = 100  # super-Fibonacci starts of the multi-start ICP
    icp_points: int = 150  # reference points moved by the multi-start ICP
    icp_thresholds: tuple[float, ...] = (0.2, 0.1, 0.05)
    icp_iterations: int = 5  # per threshold
    icp_keep: int = 50  # starts kept after the coarsest threshold
    colour_weight: float = 0.2  # coloured-ICP feature scale, x diameter (0 = geometry only)
    ransac_iterations: int = 256
    ransac_threshold: float = 0.05
    ransac_hypotheses: int = 4  # hypotheses a learned backend adds (best RANSAC runs)


@dataclass
class QueryContext:
    """Everything derived from the query frame once and shared by the backends and the verifier."""

    view: View
    points: np.ndarray  # (N,3) all valid masked points, query camera, metres
    pixels: np.ndarray  # (N,2) their (v, u)
    tree: cKDTree  # over a subsample of ``points`` (ICP target)
    centroid: np.ndarray  # (3,) median of the points
    colour: np.ndarray  # (N,3) colour features of ``points`` (verify.colour_features)
    target: "DepthTarget"  # the query observation prepared for the verifier
    tree_index: np.ndarray  # (T,) which of ``points`` are in ``tree``
    _colour_trees: dict = field(default_factory=dict)

    def colour_tree(self, scale: float) -> cKDTree:
        """KD-tree over [xyz, scale * colour] for coloured ICP (built once per frame and scale)."""
        if scale not in self._colour_trees:
            i = self.tree_index
            self._colour_trees[scale] = cKDTree(np.concatenate([self.points[i], scale * self.colour[i]], axis=1))
        return self._colour_trees[scale]


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

    def encode_reference(self, ref: Reference) -> None:
        """Cache whatever the backend needs per reference into ``ref.embedding`` (default: nothing)."""

    @abc.abstractmethod
    def propose(self, ref: Reference, query: QueryContext, settings: SearchSettings, diameter: float) -> Proposal:
        """Pose hypotheses of C in the query camera."""


def centroid_start(ref: Reference, query: QueryContext, rotations: np.ndarray) -> np.ndarray:
    """Start transforms (B,4,4) for rotations (B,3,3) of C: the reference centroid (C's origin) is put on
    the query centroid. Both are medians of partial surfaces, so they differ by up to ~a radius; ICP closes it."""
    T = np.tile(np.eye(4), (len(rotations), 1, 1))
    T[:, :3, :3] = rotations
    T[:, :3, 3] = query.centroid
    return T
