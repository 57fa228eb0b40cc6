"""The ICP step's compiled loops (core/icp_kernels.py) fit what the NumPy step fits: the same transforms and the same
"moved" bound to ~1e-15 m per step, and the same ICP end to end; Horn's rotation is Umeyama's proper rotation, also
where the best orthogonal fit is a reflection."""
import numpy as np
import pytest
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from one2any_ros.core import geometry, icp_kernels
from one2any_ros.core.geometry import icp_batched, make_transform, super_fibonacci_rotations, transform_points
from one2any_ros.core.nearest import KDTree

pytestmark = pytest.mark.skipif(not icp_kernels.AVAILABLE, reason="numba is not installed: the NumPy step runs")


def _starts(rng, B, spread=0.02):
    T = np.tile(np.eye(4), (B, 1, 1))
    T[:, :3, :3] = super_fibonacci_rotations(max(B, 2))[:B]
    T[:, :3, 3] = np.array([0.0, 0.0, 0.6]) + rng.normal(0, spread, (B, 3))
    return T


def _query(rng, coloured: bool, B: int, M: int):
    dst = rng.normal(0, 0.05, (2000, 3)) + [0.0, 0.0, 0.6]
    if not coloured:
        return geometry._IcpQuery(KDTree(dst), None, B, workers=1, eps=0.0)
    return geometry._IcpQuery(KDTree(np.c_[dst, rng.uniform(0, 0.02, (2000, 3))]), rng.uniform(0, 0.02, (M, 3)), B,
                              workers=1, eps=0.0)


@pytest.mark.parametrize("coloured", [False, True], ids=["xyz", "xyz+colour"])
@pytest.mark.parametrize("seed", range(4))
def test_the_compiled_step_fits_what_the_numpy_step_fits(seed, coloured, monkeypatch):
    """(Not with a handful of points: where the neighbours collapse onto a line the best rotation is not unique, and
    each fit may take another one; the ICP's steps need 5 % of the source, at least 3.)"""
    rng = np.random.default_rng(seed)
    for B, M, spread, thr in ((1, 12, 0.01, 0.05), (7, 40, 0.02, 0.01), (50, 150, 0.03, 0.05), (6, 800, 0.01, 0.002)):
        src = rng.normal(0, 0.05, (M, 3)) * rng.uniform(0.05, 1.0, 3)  # flat and thin sources too
        q = _query(rng, coloured, B, M)
        T = _starts(rng, B, spread)
        reach = float(np.sqrt((src ** 2).sum(axis=1).max()))
        T_nb, moved_nb = geometry._icp_step(T, src, q, thr, 3, reach)
        with monkeypatch.context() as m:
            m.setattr(icp_kernels, "AVAILABLE", False)  # NumPy throughout, its Umeyama too
            T_np, moved_np = geometry._icp_step(T, src, q, thr, 3, reach)
        np.testing.assert_allclose(T_nb, T_np, rtol=0, atol=1e-9)
        np.testing.assert_allclose(moved_nb, moved_np, rtol=0, atol=1e-9)
        assert np.all(moved_np[moved_np == 0] == moved_nb[moved_np == 0])  # starts with too few inliers stay put


def test_a_start_without_enough_inliers_stays_where_it_is():
    rng = np.random.default_rng(3)
    src = rng.normal(0, 0.05, (30, 3))
    q = _query(rng, False, 2, 30)
    T = _starts(rng, 2)
    T[1, :3, 3] = [5.0, 5.0, 5.0]  # nowhere near the target: no neighbour within the band
    T_nb, moved = geometry._icp_step(T, src, q, 0.05, 3, 0.2)
    assert moved[1] == 0.0 and np.array_equal(T_nb[1], T[1])
    assert moved[0] > 0.0


def test_transform_batch_is_transform_points():
    rng = np.random.default_rng(0)
    T, src = _starts(rng, 9), rng.normal(0, 0.1, (77, 3))
    np.testing.assert_allclose(icp_kernels.transform_batch(T, src), transform_points(T, src), rtol=0, atol=1e-15)


@pytest.mark.parametrize("seed", range(20))
def test_horns_rotation_is_umeyamas_proper_rotation(seed, monkeypatch):
    """Correspondences of a mirrored, noisy cloud make the best orthogonal fit a reflection: Umeyama turns its weakest
    direction back, Horn's quaternion is a rotation by construction; they agree (weighted too)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.05, (60, 3)) * [1.0, 0.6, 0.2]
    R = Rotation.random(random_state=seed).as_matrix()
    y = x @ R.T + rng.normal(0, 0.002, x.shape) + [0.0, 0.0, 0.5]
    if seed % 2:
        y[:, 2] *= -1.0  # a mirror image: no rotation fits it well
    w = rng.uniform(0.0, 1.0, (1, len(x)))
    T = np.eye(4)[None]
    dT, _ = icp_kernels.fit_steps(T, x[None], y, np.zeros(len(x)), np.arange(len(x)), 3, 0.1)
    fits = icp_kernels.weighted_fits(x[None], y[None], w)
    monkeypatch.setattr(icp_kernels, "AVAILABLE", False)  # geometry's NumPy Umeyama
    np.testing.assert_allclose(dT[0], geometry.umeyama_batched(x[None], y[None])[0], rtol=0, atol=1e-9)
    np.testing.assert_allclose(fits[0], geometry.umeyama_batched(x[None], y[None], w)[0], rtol=0, atol=1e-9)
    assert np.linalg.det(dT[0, :3, :3]) == pytest.approx(1.0)


def test_the_compiled_fits_and_residuals_are_geometrys(monkeypatch):
    """umeyama_batched (RANSAC's minimal samples, its refits) and RANSAC's residuals, compiled and in NumPy; a batch
    element with no weight is the identity in both; RANSAC finds the same inliers."""
    rng = np.random.default_rng(7)
    src = rng.normal(0, 0.05, (40, 200, 3))
    dst = src @ Rotation.random(random_state=1).as_matrix().T + [0.02, -0.01, 0.6] + rng.normal(0, 0.001, src.shape)
    w = rng.uniform(0, 1, (40, 200))
    w[3] = 0.0
    T = geometry.make_transform(Rotation.random(5, random_state=2).as_matrix(), rng.normal(0, 0.1, (5, 3)))
    fits, res = geometry.umeyama_batched(src, dst, w), geometry._residuals(T, src[0], dst[0])
    ransac = geometry.ransac_rigid(src[0], dst[0], threshold=0.004)
    monkeypatch.setattr(icp_kernels, "AVAILABLE", False)
    np.testing.assert_allclose(fits, geometry.umeyama_batched(src, dst, w), rtol=0, atol=1e-9)
    assert np.array_equal(fits[3], np.eye(4))
    np.testing.assert_allclose(res, geometry._residuals(T, src[0], dst[0]), rtol=0, atol=1e-7)
    plain = geometry.ransac_rigid(src[0], dst[0], threshold=0.004)
    assert np.array_equal(ransac.inliers, plain.inliers)
    np.testing.assert_allclose(ransac.T, plain.T, rtol=0, atol=1e-9)


def test_icp_ends_where_the_numpy_icp_ends(monkeypatch):
    rng = np.random.default_rng(5)
    dst = rng.normal(0, 0.05, (1500, 3)) * [1.0, 0.7, 0.3] + [0.0, 0.0, 0.6]
    T_true = make_transform(Rotation.from_rotvec([0.2, -0.1, 0.3]).as_matrix(), [0.01, -0.02, 0.03])
    src = transform_points(np.linalg.inv(T_true), dst[::5])
    starts = np.stack([make_transform(Rotation.from_rotvec(r).as_matrix() @ T_true[:3, :3], T_true[:3, 3])
                       for r in ([0, 0, 0], [0.2, 0, 0], [0, -0.25, 0.1])])
    compiled = icp_batched(src, cKDTree(dst), starts, thresholds=(0.04, 0.02, 0.01), iterations=8)
    monkeypatch.setattr(icp_kernels, "AVAILABLE", False)
    plain = icp_batched(src, cKDTree(dst), starts, thresholds=(0.04, 0.02, 0.01), iterations=8)
    np.testing.assert_allclose(compiled.T, plain.T, rtol=0, atol=1e-8)
    np.testing.assert_allclose(compiled.T[0], T_true, atol=1e-6)


def test_without_a_place_for_numbas_cache_the_kernels_still_compile(monkeypatch):
    """A read-only install with no user cache directory: numba cannot cache, so it refuses ``cache=True``; the kernels
    are compiled per process instead of failing the import (and with it the whole package)."""
    import importlib

    from numba.core import caching

    monkeypatch.setattr(caching.CacheImpl, "_locator_classes", [])
    fresh = importlib.reload(icp_kernels)
    try:
        T, src = np.eye(4)[None].copy(), np.eye(3)
        np.testing.assert_allclose(fresh.transform_batch(T, src)[0], src)
    finally:
        monkeypatch.undo()
        importlib.reload(icp_kernels)  # the cached kernels again, for the tests after this one
