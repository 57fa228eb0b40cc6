"""The pybullet renderer: metric depth equals the mesh geometry, pixel-centre convention, masks agree with
depth, occluders, crops rendered with a shifted K, the noise model and the pose samplers."""

import numpy as np
import pytest

pytest.importorskip("pybullet")

from one2any_ros.data import meshes
from one2any_ros.data import objects as O  # noqa: E402
from one2any_ros.data.render import (  # noqa: E402
    DEFAULT_K,
    BackgroundSpec,
    Renderer,
    add_depth_noise,
    axis_angle_to_matrix,
    crop_intrinsics,
    depth_noise_sigma,
    rotation_angle,
    rotation_at_angle,
    random_rotation,
    sample_pose,
)

W, H = 320, 240
K = np.array([[300.0, 0, 159.5], [0, 300.0, 119.5], [0, 0, 1]])


@pytest.fixture(scope="module")
def renderer():
    r = Renderer(seed=0)
    yield r
    r.close()


def _box_object(ext=(0.12, 0.08, 0.05)):
    V, F, UV, W_ = meshes._box(np.array(ext), (0, 0, 1, 1))
    N = meshes._vertex_normals(V, F, W_).astype(np.float32)
    tex = O.random_texture(np.random.default_rng(0), 128)
    return O.ObjectSpec(
        obj_id=42, name="testbox", vertices=V, faces=F, uvs=UV.astype(np.float32), normals=N, texture=tex
    )


def _raycast(V, F, dirs):
    """Nearest hit parameter t along rays from the origin (dirs have z = 1, so t = depth); inf = miss."""
    v0, e1, e2 = V[F[:, 0]], V[F[:, 1]] - V[F[:, 0]], V[F[:, 2]] - V[F[:, 0]]
    d = dirs[:, None, :]
    p = np.cross(d, e2[None])
    det = (e1[None] * p).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / det
        s = -v0[None]
        u = (s * p).sum(-1) * inv
        q = np.cross(s, e1[None])
        v = (d * q).sum(-1) * inv
        t = (e2[None] * q).sum(-1) * inv
    ok = (np.abs(det) > 1e-12) & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0)
    return np.where(ok, t, np.inf).min(1)


def _pose(R, t):
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    return T


@pytest.mark.parametrize("oid", ["box", 3, 2_999_000])
def test_depth_matches_geometry(renderer, oid):
    if oid == 2_999_000 and not O.real_test_object_ids():
        pytest.skip("pybullet_data not installed")
    obj = _box_object() if oid == "box" else O.make_object(oid)
    rng = np.random.default_rng(1)
    T = _pose(random_rotation(rng), [0.03, -0.02, 0.55])
    out = renderer.render(obj, T, K, W, H, background="random", depth_noise=False, rng=rng)
    m, d = out["mask"], out["depth"]
    assert m.sum() > 300 and np.all(d[m] > 0)
    v, u = np.nonzero(m)
    dirs = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones(len(u))], 1)
    Vc = obj.vertices @ T[:3, :3].T + T[:3, 3]
    tz = _raycast(Vc, obj.faces, dirs)
    hit = np.isfinite(tz)
    assert hit.mean() > 0.98  # the mask covers the mesh's silhouette (a few boundary pixels may graze it)
    err = np.abs(d[v, u][hit] - tz[hit])
    assert np.median(err) < 0.0005 and np.percentile(err, 99) < 0.003
    # back-projected masked points lie on the surface (distance to the nearest dense surface sample)
    pts = dirs[hit] * d[v, u][hit, None]
    surf = obj.sample_surface(20000, seed=0) @ T[:3, :3].T + T[:3, 3]
    sub = pts[:: max(1, len(pts) // 300)]
    dist = np.sqrt(((sub[:, None] - surf[None]) ** 2).sum(-1)).min(1)
    assert np.median(dist) < 0.003


def test_pixel_centres_at_integers(renderer):
    """An axis-aligned box facing the camera covers exactly the pixels whose centres are inside it."""
    obj = _box_object((0.1, 0.06, 0.01))
    z = 0.5
    for off in (0.1, 0.4, 0.7):
        uL, vT = 100.0 + off, 70.0 + off
        t = [(uL - K[0, 2]) * (z - 0.005) / K[0, 0] + 0.05, (vT - K[1, 2]) * (z - 0.005) / K[1, 1] + 0.03, z]
        out = renderer.render(obj, _pose(np.eye(3), t), K, W, H, background=None, depth_noise=False)
        cols = np.nonzero(out["mask"].any(0))[0]
        rows = np.nonzero(out["mask"].any(1))[0]
        assert cols[0] == int(np.ceil(uL)) and rows[0] == int(np.ceil(vT))
        uR = uL + 0.1 / (z - 0.005) * K[0, 0]
        assert cols[-1] == int(np.floor(uR))


def test_mask_and_depth_are_consistent(renderer, images_close):
    obj = O.make_object(21)
    rng = np.random.default_rng(3)
    T = sample_pose(rng, K=K, width=W, height=H, radius=obj.diameter / 2, distance_range=(0.4, 0.8))
    bare = renderer.render(obj, T, K, W, H, background=None, depth_noise=False, rng=rng)
    np.testing.assert_array_equal(bare["depth"] > 0, bare["mask"])  # nothing else in the scene
    assert bare["visib_fract"] == 1.0 and np.array_equal(bare["mask_full"], bare["mask"])
    assert np.all(bare["rgb"][~bare["mask"]] == 0)
    full = renderer.render(obj, T, K, W, H, background="random", depth_noise=False, rng=rng)
    images_close(full, bare, keys=("mask",))  # the background never hides the object (edge pixels aside)
    both = full["mask"] & bare["mask"]
    np.testing.assert_allclose(full["depth"][both], bare["depth"][both], atol=1e-5)
    assert (full["depth"][~full["mask"]] > 0).mean() > 0.5  # a table/wall is seen behind the object
    # around the silhouette the scene is behind the object
    import cv2

    ring = cv2.dilate(full["mask"].astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) & ~full["mask"]
    dz = full["depth"][ring]
    assert np.all(dz[dz > 0] >= bare["depth"][bare["mask"]].min() - 1e-4)
    img = np.full((H, W, 3), 77, np.uint8)
    pasted = renderer.render(obj, T, K, W, H, background=img, depth_noise=False, rng=rng)
    assert np.all(pasted["rgb"][~pasted["mask"]] == 77) and np.all(pasted["depth"][~pasted["mask"]] == 0)


def test_occluders_hide_part_of_the_object(renderer):
    obj = O.make_object(8)
    rng = np.random.default_rng(4)
    seen = []
    for _ in range(6):
        T = sample_pose(rng, K=K, width=W, height=H, radius=obj.diameter / 2, distance_range=(0.5, 0.8))
        out = renderer.render(obj, T, K, W, H, occluders=2, full_mask=True, depth_noise=False, rng=rng)
        assert not np.any(out["mask"] & ~out["mask_full"])  # visible ⊆ full silhouette
        assert out["visib_fract"] == pytest.approx(out["mask"].sum() / max(out["mask_full"].sum(), 1))
        seen.append(out["visib_fract"])
    assert min(seen) < 0.99


def test_crop_rendered_with_shifted_k_matches_the_full_image(renderer):
    import cv2

    obj = O.make_object(30)
    rng = np.random.default_rng(5)
    T = sample_pose(rng, K=DEFAULT_K, radius=obj.diameter / 2, distance_range=(0.4, 0.6))
    full = renderer.render(obj, T, DEFAULT_K, 640, 480, background=None, depth_noise=False)
    v, u = np.nonzero(full["mask"])
    side = int(1.3 * max(np.ptp(u), np.ptp(v)))
    u0, v0 = int(u.mean() - side / 2), int(v.mean() - side / 2)
    Kc = crop_intrinsics(DEFAULT_K, u0, v0, side, 64)
    crop = renderer.render(obj, T, Kc, 64, 64, background=None, depth_noise=False)
    pad = np.zeros((480 + 2 * side, 640 + 2 * side), np.float32)
    pad[side : side + 480, side : side + 640] = full["mask"]
    ref = (
        cv2.resize(
            pad[v0 + side : v0 + 2 * side, u0 + side : u0 + 2 * side], (64, 64), interpolation=cv2.INTER_AREA
        )
        > 0.5
    )
    iou = (ref & crop["mask"]).sum() / (ref | crop["mask"]).sum()
    assert iou > 0.9


def test_depth_noise_model():
    rng = np.random.default_rng(0)
    d = np.full((120, 160), 1.0, np.float32)
    d[:, :20] = 0
    noisy = add_depth_noise(d, rng, K=np.array([[150.0, 0, 79.5], [0, 150, 59.5], [0, 0, 1]]), level=1.0)
    ok = noisy > 0
    assert 0.7 < ok[:, 20:].mean() <= 1.0 and not ok[:, :20].any()
    np.testing.assert_allclose(np.round(noisy[ok] * 1000), noisy[ok] * 1000, atol=1e-3)  # mm quantisation
    sd = np.std(noisy[ok] - 1.0)
    assert 0.3 * depth_noise_sigma(1.0) < sd < 3 * depth_noise_sigma(1.0)
    assert depth_noise_sigma(2.0) > 3 * depth_noise_sigma(1.0)  # grows ~z²


def test_rotation_helpers_and_pose_sampler():
    rng = np.random.default_rng(9)
    for ang in (0.0, 0.3, 1.5, 3.0):
        R = random_rotation(rng)
        R2 = rotation_at_angle(R, ang, rng)
        assert rotation_angle(R, R2) == pytest.approx(ang, abs=1e-9)
        np.testing.assert_allclose(R2 @ R2.T, np.eye(3), atol=1e-12)
    for _ in range(50):
        T = sample_pose(rng, K=K, width=W, height=H, distance_range=(0.4, 1.2), radius=0.05)
        assert 0.4 <= T[2, 3] <= 1.2
        u = K[0, 0] * T[0, 3] / T[2, 3] + K[0, 2]
        v = K[1, 1] * T[1, 3] / T[2, 3] + K[1, 2]
        assert 0 <= u < W and 0 <= v < H


def test_axis_angle_and_the_quaternion_pybullet_reads():
    """axis_angle_to_matrix turns by the angle about the (unnormalised) axis; the (x, y, z, w) quaternion
    the renderer hands pybullet is read back by pybullet as the same matrix (its order is xyzw too)."""
    import pybullet
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(11)
    for _ in range(20):
        axis, ang = rng.normal(size=3) * rng.uniform(0.1, 5.0), float(rng.uniform(-np.pi, np.pi))
        R = axis_angle_to_matrix(axis, ang)
        np.testing.assert_allclose(R @ axis, axis, atol=1e-12)
        assert rotation_angle(np.eye(3), R) == pytest.approx(abs(ang), abs=1e-9)
        R = random_rotation(rng)
        assert np.linalg.det(R) == pytest.approx(1.0, abs=1e-12)
        q = Rotation.from_matrix(R).as_quat()
        np.testing.assert_allclose(np.reshape(pybullet.getMatrixFromQuaternion(q.tolist()), (3, 3)), R,
                                   atol=1e-12)
    np.testing.assert_allclose(axis_angle_to_matrix([0.0, 0.0, 0.0], 1.0), np.eye(3), atol=1e-12)


def test_renderer_caches_and_evicts(renderer, images_close):
    r = Renderer(seed=1, max_cached_objects=2)
    try:
        rng = np.random.default_rng(0)
        objs = [O.make_object(i) for i in (40, 41, 42)]
        T = _pose(np.eye(3), [0, 0, 0.6])
        a = r.render(objs[0], T, K, W, H, background=None, depth_noise=False, rng=rng)
        for o in objs[1:]:
            r.render(o, T, K, W, H, background=None, depth_noise=False, rng=rng)
        assert len(r._objects) == 2
        b = r.render(
            objs[0], T, K, W, H, background=None, depth_noise=False, rng=rng
        )  # reloaded after eviction
        images_close(a, b)
    finally:
        r.close()


def test_fixed_background_is_reproducible(renderer, images_close):
    obj = O.make_object(12)
    T = _pose(np.eye(3), [0, 0, 0.6])
    bg = BackgroundSpec(
        normal=np.array([0, -0.5, -1.0]) / np.sqrt(1.25),
        offset=-0.75,
        center=np.array([0, 0, 0.75]),
        texture=2,
    )
    a = renderer.render(
        obj,
        T,
        K,
        W,
        H,
        background=bg,
        light={
            "ambient": 0.6,
            "diffuse": 0.4,
            "specular": 0.0,
            "direction": [0, -0.5, -1.0],
            "color": [1, 1, 1],
        },
        depth_noise=False,
        rng=np.random.default_rng(0),
    )
    b = renderer.render(
        obj,
        T,
        K,
        W,
        H,
        background=bg,
        light={
            "ambient": 0.6,
            "diffuse": 0.4,
            "specular": 0.0,
            "direction": [0, -0.5, -1.0],
            "color": [1, 1, 1],
        },
        depth_noise=False,
        rng=np.random.default_rng(0),
    )
    images_close(a, b, keys=("mask", "depth", "rgb"))
    # plane depth off the object: ray-plane intersection n·(z ray) = offset
    v, u = 5, 5
    ray = np.array([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], 1.0])
    assert a["depth"][v, u] == pytest.approx(bg.offset / (bg.normal @ ray), abs=1e-4)
