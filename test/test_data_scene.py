"""The scene both renderers share (data/scene.py), without pybullet or a GL context: a stub rasteriser that
draws nothing sees the scene a real one would, and the frame is finished (plane, noise, keys) by the shared
code. Both renderers rasterise only: the scene, the frame and the background are the base class's."""

import numpy as np
import pytest

from one2any_ros.data import objects as O
from one2any_ros.data.render import Renderer
from one2any_ros.data.render_gl import GlRenderer
from one2any_ros.data.scene import Raster, SceneDraw, SceneRenderer, distractor_shapes

W, H = 160, 120
K = np.array([[150.0, 0, 79.5], [0, 150.0, 59.5], [0, 0, 1]])


class _Nothing(SceneRenderer):
    """Draws nothing; remembers what it was asked to draw."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.drawn: list[SceneDraw] = []

    def _rasterise(self, scene: SceneDraw) -> Raster:
        self.drawn.append(scene)
        empty = np.zeros((scene.height, scene.width), bool)
        return Raster(rgb=np.zeros((scene.height, scene.width, 3), np.uint8),
                      depth=np.zeros((scene.height, scene.width), np.float32), hit=empty, mask=empty.copy(),
                      mask_full=empty.copy() if scene.full_mask else None)


def _pose(z=0.6):
    T = np.eye(4)
    T[:3, 3] = [0.0, 0.0, z]
    return T


def test_renderers_only_rasterise():
    for cls in (Renderer, GlRenderer):
        assert issubclass(cls, SceneRenderer)
        own = set(vars(cls))
        assert "_rasterise" in own
        assert not own & {"render", "sample_background", "_plane_image", "_rays", "_occluder_poses"}


def test_the_frame_around_a_rasteriser():
    obj = O.make_object(5)
    r = _Nothing(seed=2)
    out = r.render(obj, _pose(), K, W, H, occluders=2, full_mask=True, rng=np.random.default_rng(0))
    assert set(out) == {"rgb", "depth", "depth_clean", "mask", "mask_full", "visib_fract", "K", "T_cam_obj"}
    assert out["rgb"].dtype == np.uint8 and out["rgb"].shape == (H, W, 3)
    assert out["depth"].dtype == np.float32 and out["depth_clean"].dtype == np.float32
    assert not out["mask"].any() and out["visib_fract"] == 0.0
    # nothing drawn: the analytic background plane fills the frame where it is in range
    assert (out["depth_clean"] > 0).mean() > 0.3
    assert np.all(out["depth_clean"] <= r.max_range)
    (scene,) = r.drawn
    assert len(scene.occluders) == 2 and scene.full_mask and scene.width == W
    assert {"direction", "color", "ambient", "diffuse", "specular"} <= set(scene.light)
    # an occluder stands between the camera and the object
    assert all(0 < T[2, 3] < 0.6 for _, T, _ in scene.occluders)
    bare = r.render(obj, _pose(), K, W, H, background=None, depth_noise=False, rng=np.random.default_rng(0))
    assert not bare["rgb"].any() and not bare["depth"].any() and bare["visib_fract"] == 0.0
    with pytest.raises(ValueError, match="unknown background"):
        r.render(obj, _pose(), K, W, H, background="sky")


def test_same_seed_same_scene_and_frame():
    """The scene is drawn from the rng alone, whatever rasterises it: two renderers, equal draws."""
    obj = O.make_object(6)
    a, b = _Nothing(seed=4), _Nothing(seed=4)
    fa = a.render(obj, _pose(0.7), K, W, H, occluders=1, rng=np.random.default_rng(3))
    fb = b.render(obj, _pose(0.7), K, W, H, occluders=1, rng=np.random.default_rng(3))
    for k in ("rgb", "depth", "depth_clean"):
        np.testing.assert_array_equal(fa[k], fb[k])
    sa, sb = a.drawn[0], b.drawn[0]
    assert len(sa.distractors) == len(sb.distractors) and len(sa.occluders) == 1
    for (ia, Ta, ta), (ib, Tb, tb) in zip(sa.distractors + sa.occluders, sb.distractors + sb.occluders):
        assert (ia, ta) == (ib, tb)
        np.testing.assert_allclose(Ta, Tb, atol=1e-12)
    np.testing.assert_allclose(sa.light["direction"], sb.light["direction"], atol=1e-12)


def test_pools_are_fixed():
    a, b = distractor_shapes(), distractor_shapes()
    assert [k for k, _ in a] == ["box", "box", "sphere"] * 2 + ["box", "box"]
    for (_, ha), (_, hb) in zip(a, b):
        np.testing.assert_allclose(ha, hb, atol=1e-12)
    assert all(np.ptp(he) < 1e-12 for k, he in a if k == "sphere")


def test_a_sequence_keeps_one_light():
    """Every object and frame of a multi-object sequence is lit by one lamp (a light drawn per object and frame had
    changed an object's colours between frames: no camera sees that, and the appearance check paid for it)."""
    from one2any_ros.data.multi_scene import render_multi_object_frames

    objs = [O.make_object(i) for i in O.split_ids("val", 2, seed=1)]
    poses = [[_pose(0.6) @ _shift(-0.08), _pose(0.62) @ _shift(0.08)]] * 3
    frames = render_multi_object_frames(objs, poses, K, W, H, seed=5)
    assert frames[0]["labels"].any()
    for f in frames[1:]:
        np.testing.assert_array_equal(f["rgb"], frames[0]["rgb"])  # no noise: the same poses, the same picture
    other = render_multi_object_frames(objs, poses[:1], K, W, H, seed=6)  # another sequence, another lamp
    assert np.abs(other[0]["rgb"].astype(int) - frames[0]["rgb"].astype(int)).max() > 10


def _shift(x):
    T = np.eye(4)
    T[0, 3] = x
    return T
