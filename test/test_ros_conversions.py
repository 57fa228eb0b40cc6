"""Message <-> array conversions round-trip and fail with their own error type (no graph needed)."""
import numpy as np
import pytest
from geometry_msgs.msg import Pose
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import CameraInfo, Image

from one2any_ros.core.errors import InputError
from one2any_ros.ros import conversions as conv
from one2any_ros.ros.conversions import ConversionError

RNG = np.random.default_rng(0)
ARRAYS = {
    "rgb8": RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8),
    "bgr8": RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8),
    "mono8": RNG.integers(0, 256, (5, 7), dtype=np.uint8),
    "16UC1": RNG.integers(0, 65535, (5, 7), dtype=np.uint16),
    "32FC1": RNG.normal(1.0, 0.3, (5, 7)).astype(np.float32),
}


@pytest.mark.parametrize("encoding", list(ARRAYS))
def test_image_round_trip(encoding):
    arr = ARRAYS[encoding]
    msg = conv.array_to_image(arr, encoding, stamp=conv.ns_to_stamp(1_500_000_000_123), frame_id="cam")
    assert (msg.height, msg.width, msg.encoding, msg.header.frame_id) == (5, 7, encoding, "cam")
    back = conv.image_to_array(msg)
    assert back.dtype == arr.dtype and back.flags.writeable
    np.testing.assert_array_equal(back, arr)
    assert conv.stamp_to_ns(msg.header.stamp) == 1_500_000_000_123


def _padded(arr, encoding, pad, big_endian=False):
    """An Image with ``pad`` extra bytes per row and the given byte order (as some drivers send)."""
    dtype = arr.dtype.newbyteorder(">" if big_endian else "<")
    rows = np.ascontiguousarray(arr, dtype=dtype).reshape(arr.shape[0], -1).view(np.uint8)
    data = np.concatenate([rows, np.full((arr.shape[0], pad), 0xAB, np.uint8)], axis=1)
    return Image(height=arr.shape[0], width=arr.shape[1], encoding=encoding, is_bigendian=int(big_endian),
                 step=data.shape[1], data=data.tobytes())


@pytest.mark.parametrize("encoding", ["rgb8", "16UC1", "32FC1"])
@pytest.mark.parametrize("big_endian", [False, True])
def test_row_padding_and_byte_order(encoding, big_endian):
    arr = ARRAYS[encoding]
    np.testing.assert_array_equal(conv.image_to_array(_padded(arr, encoding, 6, big_endian)), arr)


def test_bgr_is_returned_as_rgb():
    bgr = ARRAYS["bgr8"]
    rgb = conv.rgb_from_image(conv.array_to_image(bgr, "bgr8"))
    np.testing.assert_array_equal(rgb, bgr[..., ::-1])
    np.testing.assert_array_equal(conv.rgb_from_image(conv.array_to_image(bgr, "rgb8")), bgr)


def test_depth_and_mask_helpers():
    d16, enc = conv.depth_from_image(conv.array_to_image(ARRAYS["16UC1"], "16UC1"))
    assert enc == "16UC1" and d16.dtype == np.uint16
    d32, enc = conv.depth_from_image(conv.array_to_image(ARRAYS["32FC1"], "32FC1"))
    assert enc == "32FC1" and d32.dtype == np.float32
    m = conv.mask_from_image(conv.array_to_image(ARRAYS["mono8"], "mono8"))
    np.testing.assert_array_equal(m, ARRAYS["mono8"])
    labels = np.array([[0, 1, 300, 65535]], np.uint16)  # a mono16 label image keeps every label
    m16 = conv.mask_from_image(conv.array_to_image(labels, "mono16"))
    assert m16.dtype == np.uint16
    np.testing.assert_array_equal(m16, labels)


@pytest.mark.parametrize("make, fn, reason", [
    (lambda: conv.array_to_image(ARRAYS["mono8"], "mono8"), conv.rgb_from_image, "bad_rgb_encoding"),
    (lambda: conv.array_to_image(ARRAYS["rgb8"], "rgb8"), conv.depth_from_image, "bad_depth_encoding"),
    (lambda: conv.array_to_image(ARRAYS["32FC1"], "32FC1"), conv.mask_from_image, "bad_mask_encoding"),
    (lambda: Image(height=2, width=2, encoding="rgba8", step=8, data=bytes(16)), conv.image_to_array, "bad_encoding"),
    (lambda: Image(height=4, width=4, encoding="mono8", step=4, data=bytes(10)), conv.image_to_array, "truncated_image"),
    (lambda: Image(height=4, width=4, encoding="16UC1", step=4, data=bytes(32)), conv.image_to_array, "bad_step"),
    (lambda: Image(height=0, width=4, encoding="mono8", step=4, data=b""), conv.image_to_array, "empty_image"),
])
def test_bad_images_raise_conversion_errors(make, fn, reason):
    with pytest.raises(ConversionError) as e:
        fn(make())
    assert e.value.reason == reason
    assert isinstance(e.value, InputError)  # the node handles it like any other bad input


def test_array_to_image_rejects_mismatched_arrays():
    with pytest.raises(ConversionError):
        conv.array_to_image(ARRAYS["16UC1"], "32FC1")
    with pytest.raises(ConversionError):
        conv.array_to_image(ARRAYS["mono8"], "rgb8")


def test_camera_info_round_trip_and_errors():
    K = np.array([[615.2, 0.0, 321.7], [0.0, 614.9, 238.1], [0.0, 0.0, 1.0]])
    info = conv.K_to_camera_info(K, 640, 480, frame_id="cam")
    assert (info.width, info.height) == (640, 480)
    np.testing.assert_array_equal(conv.camera_info_to_K(info), K)
    np.testing.assert_array_equal(np.reshape(info.p, (3, 4))[:, :3], K)
    with pytest.raises(ConversionError) as e:
        conv.camera_info_to_K(CameraInfo())  # an uncalibrated camera publishes an all-zero K
    assert e.value.reason == "bad_intrinsics"


def _random_T(rng):
    T = np.eye(4)
    T[:3, :3] = Rotation.random(random_state=rng).as_matrix()
    T[:3, 3] = rng.normal(0, 1, 3)
    return T


def test_pose_and_transform_round_trips():
    rng = np.random.default_rng(1)
    for _ in range(50):
        T = _random_T(rng)
        np.testing.assert_allclose(conv.pose_to_matrix(conv.matrix_to_pose(T)), T, atol=1e-12)
        np.testing.assert_allclose(conv.transform_to_matrix(conv.matrix_to_transform(T)), T, atol=1e-12)
        assert conv.matrix_to_pose(T).orientation.w >= 0.0


def test_quaternion_convention_is_xyzw():
    # 90 degrees about z: (x, y, z, w) = (0, 0, sin 45, cos 45)
    q = conv.matrix_to_quaternion_xyzw(Rotation.from_euler("z", 90, degrees=True).as_matrix())
    np.testing.assert_allclose(q, [0, 0, np.sqrt(0.5), np.sqrt(0.5)], atol=1e-12)
    p = Pose()
    p.orientation.z, p.orientation.w = 2.0, 2.0  # not normalised: accepted and normalised
    R_z90 = Rotation.from_euler("z", 90, degrees=True).as_matrix()
    np.testing.assert_allclose(conv.pose_to_matrix(p)[:3, :3], R_z90, atol=1e-12)


def test_quaternion_helpers_agree_with_scipy():
    """Random rotations: (x, y, z, w) -> matrix as scipy reads it (any scale), matrix -> the same quaternion
    up to sign with w >= 0 (tolerances, not exact floats)."""
    rng = np.random.default_rng(7)
    for _ in range(200):
        q = rng.normal(size=4)
        R = Rotation.from_quat(q).as_matrix()  # scipy normalises too
        np.testing.assert_allclose(conv.quaternion_xyzw_to_matrix(q * rng.uniform(0.1, 10.0)), R, atol=1e-12)
        back = conv.matrix_to_quaternion_xyzw(R)
        q_unit = q / np.linalg.norm(q)
        assert back[3] >= 0.0 and abs(np.linalg.norm(back) - 1.0) < 1e-12
        np.testing.assert_allclose(back, q_unit if q_unit[3] >= 0 else -q_unit, atol=1e-9)
        np.testing.assert_allclose(conv.quaternion_xyzw_to_matrix(back), R, atol=1e-12)


@pytest.mark.parametrize("q", [(0.0, 0.0, 0.0, 0.0), (np.nan, 0.0, 0.0, 1.0)])
def test_bad_quaternions_raise(q):
    p = Pose()
    p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = q
    with pytest.raises(ConversionError) as e:
        conv.pose_to_matrix(p)
    assert e.value.reason == "bad_quaternion"


def test_stamp_round_trip():
    for ns in (0, 1, 999_999_999, 1_000_000_000, 1_732_000_000_123_456_789):
        assert conv.stamp_to_ns(conv.ns_to_stamp(ns)) == ns
