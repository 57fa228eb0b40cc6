"""Training-free global search: multi-start ICP from a uniform SO(3) grid, placed at the centroids.

Why this search: on unseen objects it beat FPFH + RANSAC + ICP (the numbers: docs/architecture.md, Learning,
"The classical global search"). Every start's ICP result is a hypothesis: the verifier, not ICP fitness, decides.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from one2any_ros.core.geometry import icp_batched, subsample, super_fibonacci_rotations
from one2any_ros.core.reference import Reference
from one2any_ros.core.backends.base import Backend, Proposal, QueryContext, SearchSettings, centroid_start


@lru_cache(maxsize=8)
def _grid(n: int) -> np.ndarray:
    return super_fibonacci_rotations(n)


class ClassicBackend(Backend):
    name = "classic"

    def propose(self, ref: Reference, query: QueryContext, settings: SearchSettings, diameter: float) -> Proposal:
        i = subsample(ref.points_C, settings.icp_points)
        T = centroid_start(ref, query, _grid(settings.num_start_rotations), settings.start_depth_offset)
        thresholds = tuple(t * diameter for t in settings.icp_thresholds)
        # the coarse stages match by table lookup (nearest.VoxelNearest: position only, ~a cell off), the rest by
        # the exact KD-tree over position and colour. icp_batched prunes before the second threshold of its call, so
        # with one looked-up stage (the default) all starts also run the 0.1 d stage and icp_keep go on to 0.05 d:
        # that is the measured configuration (pruning straight after the lookup stage lost 0.03-0.08: base.py)
        n_lookup = min(settings.lookup_stages, len(thresholds)) if settings.lookup_cell > 0 else 0
        prune = settings.icp_keep
        if n_lookup:
            grid = query.voxel_nearest(settings.lookup_cell * diameter, max(thresholds[:n_lookup]))
            T = icp_batched(ref.points_C[i], grid, T, thresholds=thresholds[:n_lookup],
                            iterations=settings.icp_iterations, prune_to=prune).T
            if n_lookup > 1:
                prune = None
        if n_lookup < len(thresholds):
            lam = settings.colour_weight * diameter
            T = icp_batched(ref.points_C[i], query.colour_tree(lam) if lam > 0 else query.tree, T,
                            thresholds=thresholds[n_lookup:], iterations=settings.icp_iterations,
                            src_feat=lam * ref.colour_C[i] if lam > 0 else None, prune_to=prune, eps=settings.icp_eps).T
        return Proposal(T_query_C=T, sources=["grid"] * len(T))
