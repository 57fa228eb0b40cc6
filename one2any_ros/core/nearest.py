"""Nearest neighbours: a compiled KD-tree (``KDTree``), and a table lookup for coarse questions (``VoxelNearest``).

``KDTree`` is pykdtree's (OpenMP, exact) behind the part of ``scipy.spatial.cKDTree``'s interface the ICP and the
estimator use (``data``, ``query(x, k=1, eps=, workers=, distance_upper_bound=)``); SciPy's cKDTree stands in where
pykdtree is not installed (a ROS install without it): the same answers, slower. The multi-start and tracking ICP ask
their questions in batches of thousands of 6-D points (position and colour), where pykdtree is the faster of the two
(measured: docs/tracking.md, "Step two").

The voxel table: a voxel grid over the query cloud whose every cell holds its nearest point.

The multi-start ICP of the global search asks ~10^5 nearest-neighbour questions per frame, a third of them in its
coarsest stage (inlier band 0.2 x the diameter, all 100 starts), where an answer a few per cent of the diameter off
changes nothing (the finer stages need the coloured KD-tree: measured, docs/benchmarks.md). A KD-tree answers each in O(log N) with Python-visible overhead per call; this grid answers in O(1) with
a few vectorised numpy gathers, after one Euclidean distance transform per frame (scipy.ndimage, exact) that tells
every empty cell its nearest occupied cell. Each occupied cell keeps one point (the last written), so an answer is
the nearest point up to about one cell size. Hand-written glue around scipy: no library here offers a
"nearest point within a voxel grid" query.

``VoxelNearest`` duck-types the part of ``scipy.spatial.cKDTree`` that ``geometry.icp_batched`` uses (``data``,
``query(x, k=1, eps=, workers=, distance_upper_bound=)``), so the same ICP runs on either; columns past the third
(coloured ICP's features) are ignored: the grid matches by position only.
"""
from __future__ import annotations

import time

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from one2any_ros.core import query_threads

try:
    from pykdtree.kdtree import KDTree as _PyKDTree
except ImportError:  # optional: python3-pykdtree on a ROS install; cKDTree gives the same answers
    _PyKDTree = None

class KDTree:
    """Exact nearest neighbours of (N,D) ``points`` with cKDTree's ``query`` signature (k=1 answers as (M,) arrays;
    a query with no neighbour within ``distance_upper_bound`` gets distance inf and index N, as cKDTree's)."""

    def __init__(self, points: np.ndarray) -> None:
        self.data = np.ascontiguousarray(points, dtype=np.float64)
        if not len(self.data):
            raise ValueError("KDTree needs at least one point")
        self._tree = _PyKDTree(self.data) if _PyKDTree is not None else cKDTree(self.data)

    def query(self, x: np.ndarray, k: int = 1, eps: float = 0.0, workers: int = 1,
              distance_upper_bound: float = np.inf) -> tuple[np.ndarray, np.ndarray]:
        """(distances, indices) of the nearest ``k`` points; ``workers`` is cKDTree's. pykdtree's OpenMP threads:
        one below ``PARALLEL_MIN_QUERIES`` queries, else one or this process's share of the cores, whichever has
        lately been faster (core/query_threads.py)."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        if _PyKDTree is None:
            return self._tree.query(x, k=k, eps=eps, workers=workers, distance_upper_bound=distance_upper_bound)
        bound = float(distance_upper_bound) if np.isfinite(distance_upper_bound) else None
        if query_threads.set_omp_threads is None:  # libgomp not found: OpenMP's default, every core
            d, i = self._tree.query(x, k=k, eps=eps, distance_upper_bound=bound)
            return d, i.astype(np.intp)
        big = len(x) >= query_threads.PARALLEL_MIN_QUERIES
        threads = query_threads.choice.pick(query_threads.share()) if big else 1
        measured = big and not query_threads.busy_beside()  # our own second thread is not the machine's load
        query_threads.set_omp_threads(threads)
        start = time.perf_counter()
        d, i = self._tree.query(x, k=k, eps=eps, distance_upper_bound=bound)
        if measured:
            query_threads.choice.record(self, len(x), threads, time.perf_counter() - start)
        return d, i.astype(np.intp)


class VoxelNearest:
    """Approximate nearest point of ``points`` (N,3) for any query within ``margin`` of their bounding box."""

    MAX_CELLS = 4_000_000  # ~150 MB of tables; a cloud that needs more is not an object of this size (a bad mask,
    # intrinsics off by orders of magnitude): callers use a KD-tree then (``fits``)

    def __init__(self, points: np.ndarray, cell: float, margin: float) -> None:
        pts = np.asarray(points, np.float64)
        if len(pts) == 0 or not cell > 0:
            raise ValueError("VoxelNearest needs points and a positive cell size")
        self.data = pts
        self.cell = float(cell)
        self.lo = pts.min(axis=0) - margin
        self.shape = self.grid_shape(pts, cell, margin)
        if int(np.prod(self.shape.astype(np.float64))) > self.MAX_CELLS:
            raise ValueError(f"a {'x'.join(map(str, self.shape))} grid is over MAX_CELLS: use a KD-tree")
        idx = self._cells(pts)
        occupied = np.zeros(self.shape, bool)
        occupied[tuple(idx.T)] = True
        owner = np.full(self.shape, -1, np.int32)
        owner[tuple(idx.T)] = np.arange(len(pts), dtype=np.int32)
        near = ndimage.distance_transform_edt(~occupied, return_distances=False, return_indices=True)
        self._nearest = owner[tuple(near)].ravel()  # flat cell index -> a point of the nearest occupied cell
        self._strides = np.array([self.shape[1] * self.shape[2], self.shape[2], 1], np.intp)

    @staticmethod
    def grid_shape(points: np.ndarray, cell: float, margin: float) -> np.ndarray:
        """(3,) cells along x, y, z of the table for ``points`` (N,3) m, ``cell`` and ``margin`` m."""
        pts = np.asarray(points, np.float64)
        return np.ceil((pts.max(axis=0) - pts.min(axis=0) + 2 * margin) / cell).astype(np.intp) + 1

    @classmethod
    def fits(cls, points: np.ndarray, cell: float, margin: float) -> bool:
        """Whether the table for these points stays within MAX_CELLS."""
        shape = cls.grid_shape(points, cell, margin).astype(np.float64)
        return bool(np.all(np.isfinite(shape)) and np.prod(shape) <= cls.MAX_CELLS)

    def _cells(self, x: np.ndarray) -> np.ndarray:
        return np.floor((x - self.lo) / self.cell).astype(np.intp)

    def query(self, x: np.ndarray, k: int = 1, eps: float = 0.0, workers: int = 1,
              distance_upper_bound: float = np.inf) -> tuple[np.ndarray, np.ndarray]:
        """(distances (K,), indices (K,)) like cKDTree.query with k=1: distance inf and index len(data) where the
        nearest point is farther than ``distance_upper_bound`` or the query lies outside the grid."""
        xyz = np.asarray(x)[:, :3]
        # column by column: numpy's (N, 3) broadcasts and reductions over a last axis of 3 cost ~2.5x as much
        cx, cy, cz = (np.floor((xyz[:, a] - self.lo[a]) / self.cell).astype(np.intp) for a in range(3))
        inside = (cx >= 0) & (cx < self.shape[0]) & (cy >= 0) & (cy < self.shape[1]) & (cz >= 0) & (cz < self.shape[2])
        j = self._nearest[np.where(inside, cx * self._strides[0] + cy * self._strides[1] + cz, 0)]
        diff = xyz - self.data[j]
        d = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        far = ~inside | (d > distance_upper_bound)
        d[far] = np.inf
        j[far] = len(self.data)
        return d, j
