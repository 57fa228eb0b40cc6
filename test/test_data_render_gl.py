"""The OpenGL renderer (render_gl.GlRenderer): the same output contract as the pybullet renderer, metric depth
equal to the mesh geometry, pixel centres at integer coordinates, the same images as the pybullet renderer
for the same scene, and the pair sampler's renderer choice. Tests that need a GL context skip (with the
reason) where none can be created; pybullet is needed only by the comparisons."""

import subprocess
import sys

import numpy as np
import pytest

from one2any_ros.data import meshes
from one2any_ros.data import objects as O
from one2any_ros.data import render_gl
from one2any_ros.data.render import random_rotation, sample_pose
from one2any_ros.data.render_gl import GlRenderer, GlUnavailable, gl_projection, make_renderer

W, H = 320, 240
K = np.array([[300.0, 0, 159.5], [0, 300.0, 119.5], [0, 0, 1]])


@pytest.fixture(scope="module")
def gl():
    try:
        r = GlRenderer(seed=0)
    except GlUnavailable as e:
        pytest.skip(f"no OpenGL context here: {e}")
    yield r
    r.close()


@pytest.fixture(scope="module")
def pb():
    pytest.importorskip("pybullet")
    from one2any_ros.data.render import Renderer

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


def _pose(R, t):
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    return T


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


# -- without a GL context ----------------------------------------------------------------------------


def test_importing_needs_neither_moderngl_nor_pybullet():
    code = ("import sys, one2any_ros.data.render_gl, one2any_ros.data.render; "
            "assert 'moderngl' not in sys.modules and 'pybullet' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_projection_puts_pixel_centres_at_integers():
    Ks = np.array([[400.0, 3.0, 70.25], [0, 380.0, 50.5], [0, 0, 1]])
    w, h, near, far = 150, 100, 0.1, 5.0
    P = gl_projection(Ks, w, h, near, far)
    pts = np.array([[0.01, -0.02, 0.5], [0.1, 0.05, 1.7], [0, 0, near], [0, 0, far]])
    clip = np.c_[pts, np.ones(len(pts))] @ P.T
    ndc = clip[:, :3] / clip[:, 3:]
    win = (ndc[:, :2] + 1) / 2 * [w, h]  # GL window coordinates; pixel i spans [i, i+1), its centre i + 0.5
    uv = pts[:, :2] / pts[:, 2:] @ Ks[:2, :2].T + Ks[:2, 2]
    np.testing.assert_allclose(win - 0.5, uv, atol=1e-9)
    np.testing.assert_allclose(ndc[2:, 2], [-1.0, 1.0], atol=1e-12)


def test_unavailable_backends_raise_gl_unavailable():
    with pytest.raises(GlUnavailable):
        render_gl.create_context("no-such-backend")
    with pytest.raises(ValueError):
        make_renderer("vulkan")


def test_a_forked_child_of_a_gl_process_gets_a_clear_error(monkeypatch):
    """Making a context in a child forked from a process that made one hangs (Mesa EGL): refuse instead."""
    monkeypatch.setattr(render_gl, "_CONTEXT_PID", -1)  # as if a parent process had made a context
    with pytest.raises(GlUnavailable, match="forkserver"):
        render_gl.create_context()


def test_auto_falls_back_to_pybullet(monkeypatch):
    pytest.importorskip("pybullet")
    from one2any_ros.data.render import Renderer

    def fail(backend=None):
        raise GlUnavailable("test: no context")

    monkeypatch.setattr(render_gl, "create_context", fail)
    r = make_renderer("auto", seed=0)
    try:
        assert isinstance(r, Renderer)
    finally:
        r.close()
    with pytest.raises(GlUnavailable):
        make_renderer("gl")


def test_pair_config_renderer_field():
    from one2any_ros.training.pairs import PairConfig

    assert PairConfig().renderer == "pybullet"  # the default is unchanged
    assert PairConfig.from_dict({"renderer": "gl"}).to_dict()["renderer"] == "gl"
    with pytest.raises(ValueError, match="renderer"):
        PairConfig(renderer="opengl")


# -- with a GL context -------------------------------------------------------------------------------


def test_output_contract(gl, images_close):
    obj = O.make_object(21)
    rng = np.random.default_rng(3)
    T = sample_pose(rng, K=K, width=W, height=H, radius=obj.diameter / 2, distance_range=(0.4, 0.8))
    out = gl.render(obj, T, K, W, H, background="random", occluders=1, full_mask=True, rng=rng)
    assert out["rgb"].shape == (H, W, 3) and out["rgb"].dtype == np.uint8
    for k in ("depth", "depth_clean"):
        assert out[k].shape == (H, W) and out[k].dtype == np.float32 and out[k].min() >= 0
    for k in ("mask", "mask_full"):
        assert out[k].shape == (H, W) and out[k].dtype == bool
    assert not np.any(out["mask"] & ~out["mask_full"]) and 0.0 <= out["visib_fract"] <= 1.0
    assert np.all(out["depth_clean"][out["mask"]] > 0)
    assert not np.array_equal(out["depth"], out["depth_clean"])  # noise on by default
    np.testing.assert_array_equal(out["K"], K)
    np.testing.assert_array_equal(out["T_cam_obj"], T)
    # nothing but the object: depth exactly where the mask is, black elsewhere
    bare = gl.render(obj, T, K, W, H, background=None, depth_noise=False, rng=rng)
    np.testing.assert_array_equal(bare["depth"] > 0, bare["mask"])
    assert bare["visib_fract"] == 1.0 and np.all(bare["rgb"][~bare["mask"]] == 0)
    img = np.full((H, W, 3), 77, np.uint8)
    pasted = gl.render(obj, T, K, W, H, background=img, depth_noise=False, rng=rng)
    np.testing.assert_array_equal(pasted["mask"], bare["mask"])
    assert np.all(pasted["rgb"][~pasted["mask"]] == 77) and np.all(pasted["depth"][~pasted["mask"]] == 0)
    # the same rng, the same images (depth noise on: mm levels, so a level apart at most where an edge moves)
    a = gl.render(obj, T, K, W, H, rng=np.random.default_rng(9))
    b = gl.render(obj, T, K, W, H, rng=np.random.default_rng(9))
    images_close(a, b, keys=("mask", "depth", "rgb"))


def test_two_renderers_in_one_process(gl, images_close):
    """Each renderer makes its own context current: another one made (or closed) meanwhile changes nothing."""
    obj = O.make_object(3)
    T = _pose(np.eye(3), [0, 0, 0.5])
    a = gl.render(obj, T, K, W, H, background=None, depth_noise=False, rng=np.random.default_rng(0))
    other = GlRenderer(seed=1)
    b = other.render(obj, T, K, W, H, background=None, depth_noise=False, rng=np.random.default_rng(0))
    other.close()
    other.close()  # idempotent
    c = gl.render(obj, T, K, W, H, background=None, depth_noise=False, rng=np.random.default_rng(0))
    images_close(a, b, keys=("mask", "depth", "rgb"))
    images_close(a, c, keys=("mask", "depth", "rgb"))
    with pytest.raises(RuntimeError):
        other.render(obj, T, K, W, H)


@pytest.mark.parametrize("oid", ["box", 3])
def test_depth_matches_geometry(gl, oid):
    obj = _box_object() if oid == "box" else O.make_object(oid)
    rng = np.random.default_rng(1)
    T = _pose(random_rotation(rng), [0.03, -0.02, 0.55])
    out = gl.render(obj, T, K, W, H, background="random", depth_noise=False, rng=rng)
    m, d = out["mask"], out["depth"]
    assert m.sum() > 300 and np.all(d[m] > 0)
    v, u = np.nonzero(m)
    dirs = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones(len(u))], 1)
    Vc = obj.vertices @ T[:3, :3].T + T[:3, 3]
    tz = _raycast(Vc, obj.faces, dirs)
    hit = np.isfinite(tz)
    assert hit.mean() > 0.98
    err = np.abs(d[v, u][hit] - tz[hit])
    assert np.median(err) < 0.0002 and np.percentile(err, 99) < 0.002


def test_pixel_centres_at_integers(gl):
    """An axis-aligned box facing the camera covers exactly the pixels whose centres are inside it."""
    obj = _box_object((0.1, 0.06, 0.01))
    z = 0.5
    for off in (0.1, 0.4, 0.7):
        uL, vT = 100.0 + off, 70.0 + off
        t = [(uL - K[0, 2]) * (z - 0.005) / K[0, 0] + 0.05, (vT - K[1, 2]) * (z - 0.005) / K[1, 1] + 0.03, z]
        out = gl.render(obj, _pose(np.eye(3), t), K, W, H, background=None, depth_noise=False)
        cols = np.nonzero(out["mask"].any(0))[0]
        rows = np.nonzero(out["mask"].any(1))[0]
        assert cols[0] == int(np.ceil(uL)) and rows[0] == int(np.ceil(vT))
        uR = uL + 0.1 / (z - 0.005) * K[0, 0]
        assert cols[-1] == int(np.floor(uR))


def test_texture_orientation_follows_obj_uvs(gl):
    """A quad whose texture is dark at the top and bright at the bottom (OBJ v-up UVs) shows it that way."""
    V = np.array([[-0.05, -0.05, 0], [0.05, -0.05, 0], [0.05, 0.05, 0], [-0.05, 0.05, 0]], float)  # y down
    F = np.array([[0, 2, 1], [0, 3, 2]], np.int32)  # CCW seen from the camera (-z side)
    uv = np.array([[0, 1], [1, 1], [1, 0], [0, 0]], np.float32)  # image top (y = -0.05) at v = 1
    tex = np.zeros((64, 64, 3), np.uint8)
    tex[32:] = 255
    N = np.tile([0, 0, -1.0], (4, 1)).astype(np.float32)
    obj = O.ObjectSpec(obj_id=7, name="quad", vertices=V, faces=F, uvs=uv, normals=N, texture=tex)
    light = {"direction": [0, 0, -1.0], "color": [1, 1, 1], "ambient": 0.5, "diffuse": 0.5, "specular": 0.0}
    T = _pose(np.eye(3), [0, 0, 0.5])
    out = gl.render(obj, T, K, W, H, background=None, light=light, depth_noise=False)
    rows = np.nonzero(out["mask"].any(1))[0]
    top, bottom = out["rgb"][rows[2], 160], out["rgb"][rows[-3], 160]
    assert top.max() < 10 and bottom.min() > 245


def test_matches_pybullet_renderer(gl, pb):
    """The same object, pose, background, occluders and light: the same masks and depth (and colours)."""
    for oid, k in ((3, 0), (8, 1), (123, 2), ("box", 3)):
        obj = _box_object() if oid == "box" else O.make_object(oid)
        rng = np.random.default_rng([7, k])
        T = sample_pose(rng, K=K, width=W, height=H, radius=obj.diameter / 2, distance_range=(0.4, 0.9))
        kw = dict(background="random", occluders=k % 2, full_mask=True, depth_noise=False)
        a = pb.render(obj, T, K, W, H, rng=np.random.default_rng(k), **kw)
        b = gl.render(obj, T, K, W, H, rng=np.random.default_rng(k), **kw)
        for key in ("mask", "mask_full"):
            ma, mb = a[key], b[key]
            assert (ma & mb).sum() / max((ma | mb).sum(), 1) > 0.97, (oid, key)
        common = a["mask"] & b["mask"]
        assert np.abs(a["depth"][common] - b["depth"][common]).mean() < 0.002
        assert b["visib_fract"] == pytest.approx(a["visib_fract"], abs=0.02)
        valid_a, valid_b = a["depth"] > 0, b["depth"] > 0
        assert (valid_a == valid_b).mean() > 0.99
        both = valid_a & valid_b
        assert np.median(np.abs(a["depth"][both] - b["depth"][both])) < 1e-4  # the same plane and distractors
        # same shading model and nearest-texel sampling: colours agree to a few grey levels on the object
        full = a["mask_full"] & b["mask_full"] & common
        assert np.abs(a["rgb"][full].astype(int) - b["rgb"][full].astype(int)).mean() < 3.0


def test_pair_sampler_with_gl(gl):
    from one2any_ros.training.pairs import PairConfig, PairSampler

    cfg = PairConfig(input_size=32, output_stride=2, pixel_diameter=(60.0, 200.0), object_pool=2,
                     pairs_per_object=50, max_variants=4, renderer="gl")
    sampler = PairSampler(cfg, seed=5)
    try:
        pairs = [sampler.sample() for _ in range(3)]
        assert isinstance(sampler.renderer, GlRenderer)
    finally:
        sampler.close()
    for p in pairs:
        assert p["ref"].shape == (7, 32, 32) and p["query"].shape == (8, 32, 32)
        assert p["gt"].shape == (4, 3, 16, 16)
        assert p["gt_valid"].sum() > 10
    auto = PairSampler(PairConfig(input_size=32, renderer="auto"), seed=0)
    try:
        assert isinstance(auto.renderer, GlRenderer)
    finally:
        auto.close()
