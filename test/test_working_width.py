"""A camera wider than ``max_image_width`` (core/frame.at_working_width; docs/ros.md, Parameters): its frames are
decimated once by a whole stride, the intrinsics follow, and boxes in the camera's pixels are scaled to them."""
import numpy as np

from one2any_ros.core import camera
from one2any_ros.core.box_segment import Box
from one2any_ros.core.frame import at_working_width, decode_frame


def _frame(h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    depth = rng.uniform(0.5, 1.5, (h, w)).astype(np.float32)
    labels = rng.integers(0, 3, (h, w)).astype(np.uint8)
    K = np.array([[60.0, 0, 31.5], [0, 60.0, 23.5], [0, 0, 1]])
    return decode_frame(rgb, depth, labels, K)


def upsampled(a: np.ndarray, k: int) -> np.ndarray:
    """Each pixel as a k x k block (a camera k times finer that saw the same scene)."""
    return np.repeat(np.repeat(a, k, axis=0), k, axis=1)


def upsampled_K(K: np.ndarray, k: int) -> np.ndarray:
    """The intrinsics of ``upsampled``: pixel u's centre is at k u + (k - 1) / 2 there."""
    Ku = K.copy()
    Ku[:2, :2] *= k
    Ku[:2, 2] = k * K[:2, 2] + (k - 1) / 2
    return Ku


def test_a_frame_no_wider_than_the_limit_is_left_as_it_is():
    f = _frame()
    assert at_working_width(f, 64) is f and at_working_width(f, 0) is f and f.stride == 1


def test_a_camera_k_times_finer_gives_back_the_frame_it_was_made_of():
    f = _frame()
    for k in (2, 3):
        big = decode_frame(upsampled(f.rgb, k), upsampled(f.depth, k), upsampled(f.labels, k), upsampled_K(f.K, k))
        w = at_working_width(big, 64)
        assert w.stride == k and w.depth.shape == f.depth.shape
        np.testing.assert_array_equal(w.rgb, f.rgb)
        np.testing.assert_array_equal(w.depth, f.depth)
        np.testing.assert_array_equal(w.labels, f.labels)
        np.testing.assert_allclose(w.K, f.K, atol=1e-12)


def test_the_intrinsics_follow_the_blocks():
    """A point's projection through the decimated K lands on the block its full-resolution pixel falls in, also when
    the width is not a multiple of the stride (the last columns dropped)."""
    rng = np.random.default_rng(1)
    f = decode_frame(rng.integers(0, 256, (241, 331, 3), dtype=np.uint8), np.full((241, 331), 0.8, np.float32), None,
                     np.array([[300.0, 0, 165.2], [0, 301.0, 120.7], [0, 0, 1]]))
    w = at_working_width(f, 120)
    assert w.stride == 3 and w.depth.shape == (80, 110)
    P = rng.uniform([-0.2, -0.15, 0.5], [0.2, 0.15, 1.0], (200, 3))
    uv_full = camera.project(P, f.K)[0]
    uv = camera.project(P, w.K)[0]
    np.testing.assert_allclose(uv, (uv_full - 1.0) / 3, atol=1e-9)  # block centre u = 3 u' + 1


def test_a_box_scales_to_the_decimated_frame_and_keeps_what_makes_it_bad():
    assert Box(10, 20, 31, 15).scaled(2) == Box(5, 10, 16, 8)  # covers x 10..40 -> 5..20, y 20..34 -> 10..17
    assert Box(10, 20, 31, 15).scaled(1) == Box(10, 20, 31, 15)
    for unset_or_empty in (Box(0, 0, 0, 0), Box(7, 7, 5, 0), Box(7, 7, 0, 5)):
        assert unset_or_empty.scaled(3) == unset_or_empty
    for outside in (Box(-9, 5, 4, 4), Box(640, 5, 20, 20), Box(5, 480, 20, 20)):
        s = outside.scaled(2)
        assert s.x < 0 or s.x >= 320 or s.y >= 240
