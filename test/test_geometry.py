"""Geometry recovers known transforms under noise and outliers."""
import numpy as np
import pytest
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from one2any_ros.core.geometry import (icp_batched, invert_transform, make_transform, ransac_rigid, ransac_rigid_thresholds,
                                  rotation_angle_deg,
                                  super_fibonacci_rotations, transform_points, umeyama, umeyama_batched)


def _random_T(rng, max_t=0.5):
    return make_transform(Rotation.random(random_state=rng.integers(1 << 31)).as_matrix(), rng.uniform(-max_t, max_t, 3))


def _pose_err(Ta, Tb):
    return float(rotation_angle_deg(Ta[:3, :3].T @ Tb[:3, :3])), float(np.linalg.norm(Ta[:3, 3] - Tb[:3, 3]))


def test_transform_inverse_roundtrip():
    rng = np.random.default_rng(0)
    T = _random_T(rng)
    np.testing.assert_allclose(T @ invert_transform(T), np.eye(4), atol=1e-12)
    p = rng.normal(size=(10, 3))
    np.testing.assert_allclose(transform_points(invert_transform(T), transform_points(T, p)), p, atol=1e-12)


def test_umeyama_exact_and_weighted():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(50, 3)) * 0.1
    T = _random_T(rng)
    dst = transform_points(T, src)
    np.testing.assert_allclose(umeyama(src, dst), T, atol=1e-9)
    # zero weights on corrupted points make them irrelevant
    dst2 = dst.copy()
    dst2[:10] += 1.0
    w = np.ones(50)
    w[:10] = 0
    np.testing.assert_allclose(umeyama(src, dst2, w), T, atol=1e-9)
    # batched: identity for zero-weight batches
    Tb = umeyama_batched(np.stack([src, src]), np.stack([dst, dst]), np.stack([np.ones(50), np.zeros(50)]))
    np.testing.assert_allclose(Tb[0], T, atol=1e-9)
    np.testing.assert_allclose(Tb[1], np.eye(4), atol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_ransac_noise_and_half_outliers(seed):
    rng = np.random.default_rng(seed)
    n = 400
    src = rng.uniform(-0.1, 0.1, (n, 3))  # a 20 cm object
    T = _random_T(rng)
    dst = transform_points(T, src) + rng.normal(0, 0.002, (n, 3))  # 2 mm noise
    out = rng.random(n) < 0.5
    dst[out] = rng.uniform(-0.3, 0.3, (out.sum(), 3)) + T[:3, 3]  # 50 % outliers
    res = ransac_rigid(src, dst, threshold=0.01, iterations=300, rng=rng)
    r, t = _pose_err(res.T, T)
    assert r < 1.0 and t < 0.003, (r, t)
    assert res.inliers[~out].mean() > 0.9 and res.inliers[out].mean() < 0.1


def test_ransac_at_several_thresholds_matches_one_run_per_threshold():
    """Sharing the minimal samples must give exactly what separate runs with the same samples give."""
    rng = np.random.default_rng(7)
    src = rng.uniform(-0.1, 0.1, (300, 3))
    T = _random_T(rng)
    dst = transform_points(T, src) + rng.normal(0, 0.003, (300, 3))
    dst[:120] = rng.uniform(-0.3, 0.3, (120, 3))
    thresholds = (0.005, 0.01, 0.03)
    multi = ransac_rigid_thresholds(src, dst, thresholds=thresholds, iterations=200, rng=np.random.default_rng(1))
    assert len(multi) == 3
    for thr, m in zip(thresholds, multi):
        one = ransac_rigid(src, dst, threshold=thr, iterations=200, rng=np.random.default_rng(1))
        np.testing.assert_allclose(m.T, one.T, rtol=0, atol=1e-12)
        assert m.num_inliers == one.num_inliers
    assert multi[0].num_inliers <= multi[1].num_inliers <= multi[2].num_inliers


def test_super_fibonacci_covers_so3():
    R = super_fibonacci_rotations(100)
    assert R.shape == (100, 3, 3)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-9)
    # every random rotation is within ~50 deg of some grid rotation (100 uniform points on SO(3))
    test = Rotation.random(500, random_state=3).as_matrix()
    ang = rotation_angle_deg(np.einsum("aji,bjk->abik", test, R))
    assert ang.min(axis=1).max() < 50.0


def _l_shaped_pair():
    """(rng, src, T, dst): an asymmetric L-shaped cloud and its copy moved by T with 1 mm noise."""
    rng = np.random.default_rng(4)
    a = rng.uniform([-0.1, -0.02, -0.02], [0.1, 0.02, 0.02], (600, 3))
    b = rng.uniform([-0.1, 0.02, -0.02], [-0.06, 0.12, 0.02], (300, 3))
    src = np.concatenate([a, b])
    T = _random_T(rng, 0.2)
    return rng, src, T, transform_points(T, src) + rng.normal(0, 0.001, src.shape)


def test_icp_batched_converges_from_nearby_starts():
    rng, src, T, dst = _l_shaped_pair()
    # starts 15 deg off in random directions
    starts = []
    for _ in range(8):
        dR = Rotation.from_rotvec(np.deg2rad(15) * _unit(rng)).as_matrix()
        starts.append(make_transform(dR @ T[:3, :3], T[:3, 3] + rng.normal(0, 0.01, 3)))
    res = icp_batched(src[::3], cKDTree(dst), np.stack(starts), thresholds=(0.04, 0.02, 0.01), iterations=10)
    for Tk in res.T:
        r, t = _pose_err(Tk, T)
        assert r < 1.5 and t < 0.003, (r, t)
    assert np.all(res.fitness > 0.9)


class CountingTree(cKDTree):
    """A cKDTree that counts the points it was asked about (``asked``: reset it before use)."""

    asked = 0

    def query(self, x, *args, **kw):
        CountingTree.asked += len(x)
        return super().query(x, *args, **kw)


def test_icp_batched_stops_converged_starts_with_the_same_result():
    """A start whose step left every correspondence as it was would repeat that step: it leaves the batch (fewer
    questions asked) and ends where every step taken would have left it."""
    rng, src, T, dst = _l_shaped_pair()
    starts = np.stack([make_transform(Rotation.from_rotvec(np.deg2rad(deg) * _unit(rng)).as_matrix() @ T[:3, :3],
                                      T[:3, 3]) for deg in (0, 3, 10, 20)])

    res, asked = [], []
    for converged in (0.0, 1e-6):
        CountingTree.asked = 0
        res.append(icp_batched(src[::3], CountingTree(dst), starts, thresholds=(0.04, 0.02, 0.01), iterations=20,
                               converged=converged))
        asked.append(CountingTree.asked)
    np.testing.assert_allclose(res[1].T, res[0].T, atol=1e-9)
    np.testing.assert_allclose(res[1].fitness, res[0].fitness)
    assert asked[1] < 0.6 * asked[0], asked


def test_icp_batched_scores_its_result_only_when_asked():
    """fitness and rmse cost one more query over every start and the estimator reads neither: they are computed on
    first use, once."""
    rng, src, T, dst = _l_shaped_pair()
    starts = np.stack([T, T])

    pts = src[::3]
    CountingTree.asked = 0
    res = icp_batched(pts, CountingTree(dst), starts, thresholds=(0.02,), iterations=1, converged=0.0)
    assert CountingTree.asked == 2 * len(pts)  # the one step
    assert np.all(res.fitness > 0.9) and np.all(res.rmse < 0.003)
    assert CountingTree.asked == 4 * len(pts)  # the step and one scoring query for both scores
    res.rmse
    assert CountingTree.asked == 4 * len(pts)


def test_ransac_residuals_by_one_product_are_the_moved_points_distances():
    """RANSAC's (I,N) residuals come from one matrix product (geometry._residuals); they must be the distances of
    the moved points, far below any inlier threshold off, at a camera-like half metre."""
    from one2any_ros.core.geometry import _residuals

    rng = np.random.default_rng(3)
    src = rng.normal(size=(400, 3)) * 0.05
    dst = src + np.array([0.1, -0.05, 0.6]) + rng.normal(0, 0.002, src.shape)
    Ts = umeyama_batched(src[rng.choice(400, size=(64, 3))], dst[rng.choice(400, size=(64, 3))])
    direct = np.linalg.norm(transform_points(Ts, src) - dst[None], axis=2)
    np.testing.assert_allclose(_residuals(Ts, src, dst), direct, rtol=0, atol=1e-9)


def _unit(rng):
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def test_pixel_lookup_rounds_to_pixel_centres_and_flags_what_misses_the_image():
    from one2any_ros.core.camera import pixel_lookup

    K = np.array([[100.0, 0, 2.0], [0, 100.0, 1.0], [0, 0, 1]])
    pts = np.array([[0.0, 0.0, 1.0], [0.014, 0.006, 1.0], [0.0, 0.0, -1.0], [1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    rows, cols, inside = pixel_lookup(pts[:, 0], pts[:, 1], pts[:, 2], K, (3, 5))
    # image centre; (3.4, 1.6) -> (3, 2); behind the camera; right of the image; at the camera centre (z = 0)
    assert inside.tolist() == [True, True, False, False, False]
    assert (rows[:2].tolist(), cols[:2].tolist()) == ([1, 2], [2, 3])
    assert (rows[2:] == 0).all() and (cols[2:] == 0).all()  # safe indices where nothing lands
