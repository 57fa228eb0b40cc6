"""Every bad input gets a typed error that names the problem."""
import numpy as np
import pytest

from one2any_ros.core.errors import InputError, NoReferenceError, ReferenceFileError
from one2any_ros.core.estimator import PoseEstimator
from one2any_ros.core.reference import load_reference, make_reference, save_reference
from one2any_ros.core.frame import make_view

K = np.array([[500.0, 0, 63.5], [0, 500.0, 47.5], [0, 0, 1]])


def _arrays(h=96, w=128):
    depth = np.full((h, w), 800, np.uint16)  # 0.8 m in mm
    mask = np.zeros((h, w), np.uint8)
    mask[30:60, 40:80] = 255
    depth[30:60, 40:80] = 700 + np.arange(40, dtype=np.uint16)[None, :]  # a slanted patch
    rgb = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    return rgb, depth, mask


def test_valid_view_decodes_mm_and_m():
    rgb, depth, mask = _arrays()
    v = make_view(rgb, depth, mask, K)
    assert v.depth.dtype == np.float32 and abs(v.depth[0, 0] - 0.8) < 1e-6
    v2 = make_view(rgb, depth.astype(np.float32) / 1000, mask, K, depth_encoding="32FC1")
    np.testing.assert_allclose(v.depth, v2.depth, atol=1e-6)


@pytest.mark.parametrize("case,reason", [
    ("empty_mask", "empty_mask"), ("tiny_mask", "tiny_mask"), ("size_mismatch", "size_mismatch"),
    ("zero_depth", "no_depth_in_mask"), ("nan_depth", "no_depth_in_mask"), ("bad_dtype", "bad_depth_encoding"),
    ("wrong_encoding", "bad_depth_encoding"), ("no_K", "missing_camera_info"), ("singular_K", "bad_intrinsics"),
    ("nan_K", "bad_intrinsics"), ("huge_K", "bad_intrinsics"), ("rgb_size", "size_mismatch"),
    ("depth_3d", "bad_depth_shape"),
])
def test_bad_inputs_raise_typed_errors(case, reason):
    rgb, depth, mask = _arrays()
    kw = dict(rgb=rgb, depth=depth, mask=mask, K=K)
    if case == "empty_mask":
        kw["mask"] = np.zeros_like(mask)
    elif case == "tiny_mask":
        m = np.zeros_like(mask); m[40:42, 50:52] = 1; kw["mask"] = m
    elif case == "size_mismatch":
        kw["mask"] = mask[:-1]
    elif case == "zero_depth":
        d = depth.copy(); d[mask > 0] = 0; kw["depth"] = d
    elif case == "nan_depth":
        d = depth.astype(np.float32) / 1000; d[mask > 0] = np.nan; kw["depth"] = d
    elif case == "bad_dtype":
        kw["depth"] = depth.astype(np.complex64)
    elif case == "wrong_encoding":
        kw["depth"] = depth.astype(np.float32)
        kw["depth_encoding"] = "16UC1"
    elif case == "no_K":
        kw["K"] = None
    elif case == "singular_K":
        kw["K"] = np.zeros((3, 3))
    elif case == "nan_K":
        k = K.copy(); k[0, 0] = np.nan; kw["K"] = k
    elif case == "huge_K":  # finite, but its determinant overflows: no camera's
        k = K.copy(); k[0, 0] = k[1, 1] = 1e200; kw["K"] = k
    elif case == "rgb_size":
        kw["rgb"] = rgb[:, :-2]
    elif case == "depth_3d":
        kw["depth"] = np.zeros((4, 4, 4))
    with pytest.raises(InputError) as e:
        make_view(**kw)
    assert e.value.reason == reason
    assert str(e.value)


def test_depth_out_of_range_is_invalid():
    rgb, depth, mask = _arrays()
    with pytest.raises(InputError, match="no valid depth"):
        make_view(rgb, depth, mask, K, min_depth=1.0, max_depth=4.0)


def test_estimate_before_reference():
    rgb, depth, mask = _arrays()
    est = PoseEstimator("classic")
    with pytest.raises(NoReferenceError):
        est.estimate(make_view(rgb, depth, mask, K))


def test_reference_roundtrip_and_corrupt_files(tmp_path):
    rgb, depth, mask = _arrays()
    T = np.eye(4); T[:3, 3] = [0.01, 0.02, 0.75]
    ref = make_reference(make_view(rgb, depth, mask, K, T_cam_obj=T))
    ref.embedding = {"tokens": np.arange(12, dtype=np.float32).reshape(3, 4)}
    ref.embedding_backend = "one2any"
    p = tmp_path / "ref.o2a"
    save_reference(ref, p)
    back = load_reference(p)
    np.testing.assert_allclose(back.T_C_O, ref.T_C_O)
    np.testing.assert_allclose(back.points_C, ref.points_C)
    assert back.scale == pytest.approx(ref.scale)
    np.testing.assert_array_equal(back.embedding["tokens"], ref.embedding["tokens"])
    assert back.embedding_backend == "one2any"
    # truncated
    data = p.read_bytes()
    (tmp_path / "trunc.o2a").write_bytes(data[: len(data) // 2])
    with pytest.raises(ReferenceFileError, match="trunc.o2a"):
        load_reference(tmp_path / "trunc.o2a")
    # garbage and missing
    (tmp_path / "junk.o2a").write_bytes(b"not a zip at all")
    with pytest.raises(ReferenceFileError):
        load_reference(tmp_path / "junk.o2a")
    with pytest.raises(ReferenceFileError, match="does not exist"):
        load_reference(tmp_path / "nope.o2a")


def test_reference_from_other_version(tmp_path):
    import json
    import zipfile

    rgb, depth, mask = _arrays()
    p = tmp_path / "ref.o2a"
    save_reference(make_reference(make_view(rgb, depth, mask, K)), p)
    with zipfile.ZipFile(p) as zf:
        items = {n: zf.read(n) for n in zf.namelist()}
    items["meta.json"] = json.dumps({"format": "one2any_reference", "version": 999}).encode()
    with zipfile.ZipFile(p, "w") as zf:
        for n, b in items.items():
            zf.writestr(n, b)
    with pytest.raises(ReferenceFileError, match="version"):
        load_reference(p)
