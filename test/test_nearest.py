"""nearest: KDTree answers exactly as SciPy's cKDTree (with pykdtree or without); VoxelNearest like a KD-tree, up to
about one cell."""
import numpy as np
import pytest
from scipy.spatial import cKDTree

from one2any_ros.core.geometry import icp_batched
from one2any_ros.core import nearest, query_threads
from one2any_ros.core.nearest import KDTree, VoxelNearest


def _cloud(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(n, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    return p[p[:, 2] < 0] * 0.075 + [0.05, -0.02, 0.6]  # the visible half of a 15 cm sphere


def test_lookup_is_the_kd_tree_answer_within_a_cell():
    pts, cell = _cloud(), 0.004
    grid, tree = VoxelNearest(pts, cell, margin=0.03), cKDTree(pts)
    rng = np.random.default_rng(1)
    x = pts[rng.integers(0, len(pts), 3000)] + rng.normal(scale=0.01, size=(3000, 3))
    d, j = grid.query(x, distance_upper_bound=0.02)
    d_kd, _ = tree.query(x, distance_upper_bound=0.02)
    both = np.isfinite(d) & np.isfinite(d_kd)
    assert both.sum() > 0.9 * np.isfinite(d_kd).sum()
    assert np.all(d[both] >= d_kd[both] - 1e-12)  # never nearer than the true nearest
    assert np.all(d[both] <= d_kd[both] + 2 * np.sqrt(3) * cell)  # and at most ~a cell farther
    assert np.allclose(d[both], np.linalg.norm(x[both] - pts[j[both]], axis=1))


def test_far_and_outside_queries_have_no_neighbour_like_cKDTree():
    pts = _cloud()
    grid = VoxelNearest(pts, 0.004, margin=0.02)
    x = np.array([[5.0, 5.0, 5.0], [0.05, -0.02, 0.6 - 0.075 - 0.006]])  # far outside; 6 mm off the surface
    d, j = grid.query(np.concatenate([x, np.zeros((2, 3))], axis=1), distance_upper_bound=0.01)  # features ignored
    assert not np.isfinite(d[0]) and j[0] == len(pts)
    assert np.isfinite(d[1]) and d[1] <= 0.01


def test_icp_converges_on_the_lookup_as_on_the_tree():
    from scipy.spatial.transform import Rotation

    pts = _cloud(4000)
    src = pts[::8] - pts.mean(axis=0)
    T_true = np.eye(4)
    T_true[:3, :3] = Rotation.from_rotvec([0.1, -0.15, 0.05]).as_matrix()
    T_true[:3, 3] = pts.mean(axis=0)
    dst = src @ T_true[:3, :3].T + T_true[:3, 3]
    T0 = np.eye(4)[None].copy()
    T0[0, :3, 3] = dst.mean(axis=0) + [0.005, 0.0, 0.0]
    grid = VoxelNearest(dst, 0.003, margin=0.03)
    res_grid = icp_batched(src, grid, T0, thresholds=(0.03, 0.015), iterations=10)
    res_kd = icp_batched(src, cKDTree(dst), T0, thresholds=(0.03, 0.015), iterations=10)
    for res in (res_grid, res_kd):
        assert np.linalg.norm(res.T[0, :3, 3] - T_true[:3, 3]) < 0.005
        angle = Rotation.from_matrix(res.T[0, :3, :3] @ T_true[:3, :3].T).magnitude()
        assert np.degrees(angle) < 3.0


def test_a_cloud_far_wider_than_the_object_gets_the_kd_tree():
    """A table over kilometres (intrinsics off by orders of magnitude) would need terabytes: refused, and a query's
    lookup falls back to its KD-tree (same ``query``)."""
    from scipy.spatial import cKDTree

    from one2any_ros.core.backends.base import QueryContext

    pts = np.array([[0.0, 0.0, 1.0], [5000.0, 10.0, 1.0], [0.0, 3000.0, 2.0]])
    assert not VoxelNearest.fits(pts, 0.005, 0.02)
    with pytest.raises(ValueError, match="MAX_CELLS"):
        VoxelNearest(pts, 0.005, 0.02)
    assert VoxelNearest.fits(pts[:1], 0.005, 0.02)
    tree = cKDTree(pts)
    q = QueryContext(view=None, points=pts, pixels=np.zeros((3, 2), int), tree=tree, centroid=pts[0],
                     colour=np.zeros((3, 3)), tree_index=np.arange(3), target=None)
    assert q.voxel_nearest(0.005, 0.02) is tree


@pytest.mark.parametrize("compiled", [True, False], ids=["pykdtree", "cKDTree fallback"])
@pytest.mark.parametrize("dims", [3, 6])
def test_kd_tree_answers_as_cKDTree(monkeypatch, compiled, dims):
    if not compiled:
        monkeypatch.setattr(nearest, "_PyKDTree", None)
    elif nearest._PyKDTree is None:
        pytest.skip("pykdtree is not installed")
    rng = np.random.default_rng(2)
    pts = np.concatenate([_cloud(), rng.uniform(size=(len(_cloud()), dims - 3)) * 0.02], axis=1)[:, :dims]
    x = pts[rng.integers(0, len(pts), 4000)] + rng.normal(scale=0.01, size=(4000, dims))
    tree, ref = KDTree(pts), cKDTree(pts)
    for bound in (np.inf, 0.01):
        d, j = tree.query(x, k=1, workers=-1, distance_upper_bound=bound)
        d_ref, j_ref = ref.query(x, k=1, distance_upper_bound=bound)
        assert d.shape == j.shape == (len(x),) and j.dtype == np.intp
        assert np.array_equal(np.isinf(d), np.isinf(d_ref))
        assert np.all(j[np.isinf(d)] == len(pts))  # no neighbour: index N, as cKDTree says it
        assert np.allclose(d[np.isfinite(d)], d_ref[np.isfinite(d_ref)], rtol=0, atol=1e-12)
        assert np.mean(j == j_ref) > 0.999  # (ties may differ)
    assert tree.data.shape == pts.shape


def test_queries_can_be_held_to_a_share_of_the_cores():
    """The node's worker and its helper processes each take their share of the cores (limit_threads): pykdtree's
    OpenMP threads are set through the libgomp it loaded, so that copy must be found; answers do not change."""
    if nearest._PyKDTree is None:
        pytest.skip("pykdtree is not installed")
    assert query_threads.set_omp_threads is not None  # else every process spins every core's thread (94 -> 182 ms)
    pts = _cloud()
    x = pts + 0.003
    free = KDTree(pts).query(x)
    try:
        query_threads.limit_threads(1)
        held = KDTree(pts).query(x)
    finally:
        query_threads.limit_threads(None)
    np.testing.assert_array_equal(free[1], held[1])


def test_thread_choice_takes_one_thread_when_the_cores_are_busy():
    """Busy cores (another process on them): every pair of back-to-back queries says the threaded one took 10x as
    long; the choice turns to one thread and tries the other setting only now and then. Times are given, not read
    off a clock, so the test holds on any machine."""
    choice = query_threads.ThreadChoice(explore_every=8, settled_every=64)
    key = object()
    picks = []
    for _ in range(200):
        n = choice.pick(2)
        picks.append(n)
        choice.record(key, 4000, n, 0.010 if n == 2 else 0.001)
    assert choice.log_ratio > np.log(3.0)
    assert picks[-100:].count(1) >= 97  # settled: the other setting once every 64 queries


def test_thread_choice_keeps_the_threads_on_free_cores_and_follows_a_change():
    """Free cores: threads are faster (0.9 vs 1.5 ms) and stay chosen; when the cores turn busy the choice moves to one
    thread within a few explorations, and back when they are free again."""
    choice = query_threads.ThreadChoice(explore_every=8, settled_every=64)
    key = object()

    def run(n_queries: int, many_s: float, one_s: float) -> list[int]:
        picks = []
        for _ in range(n_queries):
            n = choice.pick(2)
            picks.append(n)
            choice.record(key, 4000, n, many_s if n == 2 else one_s)
        return picks

    assert run(100, 0.0009, 0.0015)[-50:].count(2) >= 40
    assert run(300, 0.012, 0.001)[-100:].count(1) >= 95
    assert run(600, 0.0009, 0.0015)[-100:].count(2) >= 80
    assert query_threads.ThreadChoice().pick(1) == 1  # a share of one core: nothing to choose


def test_thread_choice_pairs_only_like_queries():
    """Only two back-to-back queries of the same size on the same tree compare the settings: a big query after a
    small one on another tree says nothing about threads."""
    choice = query_threads.ThreadChoice()
    start = choice.log_ratio
    choice.record(object(), 4000, 2, 0.001)
    choice.record(object(), 4000, 1, 0.5)  # another tree
    choice.record("tree", 100, 2, 0.001)
    choice.record("tree", 4000, 1, 0.5)  # another size
    assert choice.log_ratio == start


def test_query_threads_can_be_fixed_from_the_environment(monkeypatch):
    """ONE2ANY_QUERY_THREADS fixes the choice (a paired benchmark, a machine whose owner knows its load); a typo is
    an error, not a silent default."""
    for mode, want in (("share", 2), ("one", 1)):
        monkeypatch.setenv("ONE2ANY_QUERY_THREADS", mode)
        choice = query_threads._choice_from_env()
        assert [choice.pick(2) for _ in range(300)] == [want] * 300
    monkeypatch.setenv("ONE2ANY_QUERY_THREADS", "auto")
    assert type(query_threads._choice_from_env()) is query_threads.ThreadChoice
    monkeypatch.setenv("ONE2ANY_QUERY_THREADS", "al")
    with pytest.raises(ValueError, match="ONE2ANY_QUERY_THREADS"):
        query_threads._choice_from_env()
