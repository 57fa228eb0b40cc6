"""How many OpenMP threads a KD-tree query runs on: this process's share of the cores (``limit_threads``), and within
it one thread or all of them, whichever has lately been faster (``ThreadChoice``).

OpenMP's threads pay only on free cores. Measured here, 4,000 six-dimensional queries against 3,000 points (one
tracking ICP step): 0.87 ms on 2 threads and 1.46 ms on 1 when nothing else runs; 8-16 ms on 2 threads and 1.0 ms on 1
while two other processes keep the 2 cores busy - a parallel region waits for the thread the scheduler gave to
someone else, ~17 times per tracked object-frame. A workcell's computer runs the camera driver, the planner and a
viewer beside this node, so the choice is measured, not assumed: now and then a query runs on the other setting,
back to back with a query of the same size on the same tree, and the log of their time ratio is averaged. Threads
never change an answer (the tree is exact), only when it comes.
"""
from __future__ import annotations

import math
import os

try:
    import pykdtree
except ImportError:  # optional: cKDTree stands in (core/nearest.py), its workers are Python threads
    pykdtree = None

# KD-tree queries of at least this many points may use threads (pykdtree's OpenMP, cKDTree's workers; exact, so the
# result is the same); below it the threads' start-up costs more than the search (docs/architecture.md, Choices
# measured in the code).
PARALLEL_MIN_QUERIES = 1024

_share: int | None = None  # limit_threads: the most OpenMP threads of this process's queries (None: every core)


def limit_threads(n: int | None) -> None:
    """Run this process's KD-tree queries on at most ``n`` threads (None: every core). A process that estimates objects
    while others do (the node's worker beside its helper processes) takes its share of the cores (OpenMP's threads
    spin while they wait: two processes each spinning every core's thread oversubscribe them; docs/tracking.md,
    "Step two").

    Args:
        n: the most threads a query may use, at least 1 (smaller values are raised to 1); None = every core.
    """
    global _share
    _share = None if n is None else max(1, int(n))


_CORES = max(1, os.cpu_count() or 1)  # read once: os.cpu_count() costs ~20 us, about 2 % of a tracking query


def share() -> int:
    """The most threads this process's queries may use (``limit_threads``, else every core)."""
    return _share if _share is not None else _CORES


_beside = 0  # background calls of this process now running (core/background.py)


def own_work_started() -> None:
    """This process now also computes on a second thread (the network beside the grid: core/background.py). Until
    ``own_work_ended``, the times of its queries say nothing about other processes' load, so ``ThreadChoice`` does
    not learn from them (it would mistake our own network for a busy machine and keep the tracked frames after a
    global search on one thread). The queries keep the choice's threads: on one thread beside the network the grid
    took 114-119 ms instead of 77-90 (docs/tracking.md, "The network beside the ICP")."""
    global _beside
    _beside += 1


def own_work_ended() -> None:
    """The second thread's call of ``own_work_started`` has ended."""
    global _beside
    _beside = max(0, _beside - 1)


def busy_beside() -> bool:
    """Whether a background call of this process is running (``own_work_started``)."""
    return _beside > 0


def _omp_set_num_threads():
    """libgomp's omp_set_num_threads as pykdtree loaded it (its wheel bundles its own copy), or None. Hand-written
    (ctypes): pykdtree has no thread argument, and an OpenMP thread count is per calling thread, so it is set on the
    thread that queries, before each query (a C call of about a microsecond)."""
    import ctypes
    import ctypes.util
    from pathlib import Path

    if pykdtree is None:
        return None
    root = Path(pykdtree.__file__).resolve().parent
    for lib in [*sorted((root.parent / "pykdtree.libs").glob("libgomp*.so*")), ctypes.util.find_library("gomp")]:
        if lib:
            try:
                return ctypes.CDLL(str(lib)).omp_set_num_threads
            except (OSError, AttributeError):
                continue
    return None


set_omp_threads = _omp_set_num_threads()


class ThreadChoice:
    """One thread or ``many`` for a query: the faster lately, trying the other every ``explore_every`` queries (every
    ``settled_every`` once one is faster by ``settled``x or more). Hand-written: no library here picks a thread count
    by measurement (libgomp's OMP_DYNAMIC reads the 15-minute load average, which counts this process's own threads).

    The measure is the log of t(many) / t(one) over pairs of back-to-back queries of the same size on the same tree
    (consecutive ICP steps ask nearly the same questions), averaged with weight ``rate``; below 0, ``many`` wins.
    """

    def __init__(self, *, explore_every: int = 32, settled_every: int = 256, settled: float = 3.0,
                 rate: float = 0.3) -> None:
        self.explore_every, self.settled_every = explore_every, settled_every
        self.settled_log, self.rate = math.log(settled), rate
        self.log_ratio = -0.5  # before any pair: OpenMP's own default, every thread of the share
        self.calls = 0
        self._last: tuple[object, int, int, float] | None = None  # (tree key, queries, threads, seconds)

    def pick(self, many: int) -> int:
        """Threads for the next query (1 or ``many``)."""
        if many <= 1:
            return 1
        self.calls += 1
        every = self.settled_every if abs(self.log_ratio) >= self.settled_log else self.explore_every
        best = many if self.log_ratio < 0 else 1
        return (1 if best == many else many) if self.calls % every == 0 else best

    def record(self, key: object, queries: int, threads: int, seconds: float) -> None:
        """A query took ``seconds`` on ``threads``; paired with the one before when they match but for the threads."""
        last, self._last = self._last, (key, queries, threads, seconds)
        if last is None or last[0] is not key or last[1] != queries or last[2] == threads:
            return
        many_s, one_s = (seconds, last[3]) if threads > last[2] else (last[3], seconds)
        r = math.log(max(many_s, 1e-9) / max(one_s, 1e-9))
        self.log_ratio += self.rate * (r - self.log_ratio)


class FixedThreads(ThreadChoice):
    """Always ``many`` (OpenMP's way, every thread of the share) or always one: ``ONE2ANY_QUERY_THREADS`` = ``share``
    or ``one``, for a paired benchmark or a machine whose owner knows its load."""

    def __init__(self, one: bool) -> None:
        super().__init__()
        self.one = one

    def pick(self, many: int) -> int:
        return 1 if self.one or many <= 1 else many


def _choice_from_env() -> ThreadChoice:
    """``ONE2ANY_QUERY_THREADS``: ``auto`` (default, measured), ``share`` (always the share) or ``one``."""
    mode = os.environ.get("ONE2ANY_QUERY_THREADS", "auto").strip().lower()
    if mode not in ("auto", "share", "one"):
        raise ValueError(f"ONE2ANY_QUERY_THREADS must be auto, share or one, not {mode!r}")
    return ThreadChoice() if mode == "auto" else FixedThreads(one=mode == "one")


choice = _choice_from_env()  # one per process: the cores' contention is the machine's, not a tree's
