"""Ablation: one ICP from the centroid-aligned start with the reference's orientation (no search).

It shows what the global search and the learned hypotheses add: it succeeds only for small rotations.
"""
from __future__ import annotations

import numpy as np

from one2any_ros.core.geometry import icp_batched, subsample
from one2any_ros.core.reference import Reference
from one2any_ros.core.backends.base import Backend, Proposal, QueryContext, SearchSettings, centroid_start


class IcpBackend(Backend):
    name = "icp"

    def propose(self, ref: Reference, query: QueryContext, settings: SearchSettings, diameter: float) -> Proposal:
        src = ref.points_C[subsample(ref.points_C, settings.icp_points)]
        T0 = centroid_start(ref, query, np.eye(3)[None])
        res = icp_batched(src, query.tree, T0, thresholds=tuple(t * diameter for t in settings.icp_thresholds),
                          iterations=settings.icp_iterations)
        return Proposal(T_query_C=res.T, sources=["centroid"])
