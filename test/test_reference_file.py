"""The reference file (reference.save_reference / load_reference): it stores only what loading uses, loads back
the same reference, and a file of an older format version gives a clear error instead of a wrong reference."""
import io
import json
import zipfile

import numpy as np
import pytest

from one2any_ros.core.errors import ReferenceFileError
from one2any_ros.core.reference import REFERENCE_FORMAT_VERSION, load_reference, make_reference, save_reference
from one2any_ros.core.frame import make_view

K = np.array([[60.0, 0, 31.5], [0, 60.0, 23.5], [0, 0, 1]])


def _reference(T_cam_obj=None):
    h, w = 48, 64
    v, u = np.mgrid[0:h, 0:w]
    depth = (0.5 + 0.002 * (u - w / 2) + 0.001 * (v - h / 2)).astype(np.float32)
    mask = np.zeros((h, w), bool)
    mask[10:38, 12:52] = True
    rgb = np.random.default_rng(3).integers(0, 255, (h, w, 3), dtype=np.uint8)
    ref = make_reference(make_view(rgb, depth, mask, K, depth_encoding="32FC1", T_cam_obj=T_cam_obj))
    ref.embedding = {"tokens": np.arange(6, dtype=np.float32).reshape(2, 3)}
    ref.embedding_backend = "one2any"
    return ref


def test_round_trip_with_an_object_pose(tmp_path):
    T = np.eye(4)
    T[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    T[:3, 3] = [0.01, -0.02, 0.52]
    ref = _reference(T)
    p = tmp_path / "ref.zip"
    save_reference(ref, p)
    back = load_reference(p)
    np.testing.assert_array_equal(back.view.rgb, ref.view.rgb)
    np.testing.assert_array_equal(back.view.mask, ref.view.mask)
    np.testing.assert_allclose(back.view.depth, ref.view.depth, atol=1e-7)
    np.testing.assert_allclose(back.view.K, ref.view.K)
    np.testing.assert_allclose(back.view.T_cam_obj, T, atol=1e-9)
    np.testing.assert_allclose(back.T_C_O, ref.T_C_O, atol=1e-9)
    np.testing.assert_allclose(back.T_refcam_C, ref.T_refcam_C, atol=1e-9)
    np.testing.assert_allclose(back.points_C, ref.points_C, atol=1e-9)
    np.testing.assert_allclose(back.colour_C, ref.colour_C, atol=1e-6)
    np.testing.assert_allclose(back.roc_map, ref.roc_map, atol=1e-6)
    assert back.scale == pytest.approx(ref.scale)
    np.testing.assert_array_equal(back.embedding["tokens"], ref.embedding["tokens"])
    assert back.embedding_backend == "one2any"


def test_round_trip_without_an_object_pose_keeps_O_equal_to_C(tmp_path):
    ref = _reference()
    save_reference(ref, tmp_path / "ref.zip")
    back = load_reference(tmp_path / "ref.zip")
    np.testing.assert_allclose(back.T_C_O, np.eye(4), atol=1e-12)
    np.testing.assert_allclose(back.view.T_cam_obj, back.T_refcam_C, atol=1e-12)  # O = C, seen from the camera


def test_the_file_holds_only_what_loading_uses(tmp_path):
    save_reference(_reference(np.eye(4)), tmp_path / "ref.zip")
    with zipfile.ZipFile(tmp_path / "ref.zip") as zf:
        names = set(zf.namelist())
        meta = json.loads(zf.read("meta.json"))
    assert names == {"meta.json", "rgb.npy", "depth.npy", "mask.npy", "K.npy", "T_C_O.npy", "emb__tokens.npy"}
    assert meta == {"format": "one2any_reference", "version": REFERENCE_FORMAT_VERSION, "embedding_backend": "one2any"}


def _version_1_file(path, ref) -> None:
    """A file as the version-1 writer made it (the view, every frame, the cloud and the scale)."""
    arrays = {"rgb": ref.view.rgb, "depth": ref.view.depth, "mask": ref.view.mask, "K": ref.view.K,
              "T_refcam_C": ref.T_refcam_C, "T_C_O": ref.T_C_O, "points_C": ref.points_C}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("meta.json", json.dumps({"format": "one2any_reference", "version": 1, "scale": ref.scale,
                                             "embedding_backend": ""}))
        for k, v in arrays.items():
            buf = io.BytesIO()
            np.save(buf, v, allow_pickle=False)
            zf.writestr(k + ".npy", buf.getvalue())


def test_a_version_1_file_says_set_the_reference_again(tmp_path):
    p = tmp_path / "old.zip"
    _version_1_file(p, _reference())
    with pytest.raises(ReferenceFileError, match=r"older version \(1\); set the reference again") as info:
        load_reference(p)
    assert info.value.reason == "reference_version"


@pytest.mark.parametrize("meta,message", [({"format": "one2any_reference", "version": 99}, "version 99"),
                                          ({"format": "one2any_reference", "version": "2"}, "version '2'"),
                                          ({"format": "something else", "version": 2}, "not a one2any reference"),
                                          ([], "not a one2any reference")])
def test_other_formats_and_versions_are_named(tmp_path, meta, message):
    p = tmp_path / "ref.zip"
    save_reference(_reference(), p)
    with zipfile.ZipFile(p) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members["meta.json"] = json.dumps(meta).encode()
    with zipfile.ZipFile(p, "w") as zf:
        for n, b in members.items():
            zf.writestr(n, b)
    with pytest.raises(ReferenceFileError, match=message) as info:
        load_reference(p)
    assert info.value.reason == "reference_version"
