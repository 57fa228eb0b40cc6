"""Procedural objects: deterministic identities, disjoint splits, valid textured meshes, symmetry metadata."""

import numpy as np
import pytest

from one2any_ros.data import objects as O


def test_identity_is_deterministic():
    a, b = O.make_object(123), O.make_object(123)
    assert a.name == b.name
    np.testing.assert_array_equal(a.vertices, b.vertices)
    np.testing.assert_array_equal(a.faces, b.faces)
    np.testing.assert_array_equal(a.texture, b.texture)
    c = O.make_object(124)
    assert c.vertices.shape != a.vertices.shape or not np.allclose(c.vertices, a.vertices)


def test_splits_are_disjoint_and_deterministic():
    assert O.split_of(0) == "train" and O.split_of(999_999) == "train"
    assert O.split_of(1_000_000) == "val" and O.split_of(2_000_000) == "test"
    with pytest.raises(ValueError):
        O.split_of(3_000_000)
    sets = {s: set(O.split_ids(s, 200, seed=5)) for s in ("train", "val", "test")}
    for s, ids in sets.items():
        assert len(ids) == 200
        assert all(O.split_of(i) == s for i in ids)
    assert (
        not (sets["train"] & sets["val"])
        and not (sets["train"] & sets["test"])
        and not (sets["val"] & sets["test"])
    )
    assert O.split_ids("test", 20, seed=5) == O.split_ids("test", 20, seed=5)
    assert O.split_ids("test", 20, seed=5) != O.split_ids("test", 20, seed=6)
    assert all(i not in O.REAL_TEST_IDS for i in O.split_ids("test", 200, seed=1))
    for i in O.REAL_TEST_IDS:
        assert O.split_of(i) == "test"  # real assets are test objects only
    assert O.make_object(2_100_000).split == "test" and O.make_object(5).split == "train"


@pytest.mark.parametrize("family", O.FAMILIES)
def test_family_selection_matches_the_built_objects(family):
    """``split_ids(family=...)`` (``render --family``) keeps only that family, read without building the object,
    and agrees with what ``make_object`` builds: texture-only objects are symmetric shapes scored by ADD."""
    ids = O.split_ids("val", 6, seed=3, family=family)
    assert len(set(ids)) == 6 and all(O.split_of(i) == "val" for i in ids)
    assert ids == O.split_ids("val", 6, seed=3, family=family)
    for i in ids:
        obj = O.make_object(i)
        assert O.object_family(i) == family
        assert obj.symmetric == (family == "symmetric")
        if family == "texture_only":
            assert obj.name in O.TEXTURE_ONLY_SHAPES and obj.shape_symmetry != "none"
            assert not obj.symmetries_discrete and not obj.symmetries_continuous  # ADD, not ADD-S
            assert obj.texture.reshape(-1, 3).std(axis=0).max() > 10  # a pattern, not one colour
        elif family == "shape_asymmetric":
            assert obj.shape_symmetry == "none"
    with pytest.raises(ValueError, match="unknown family"):
        O.split_ids("val", 2, family="round")


def _signed_volume(V, F):
    t = V[F]
    return float(np.einsum("ij,ij->i", t[:, 0], np.cross(t[:, 1], t[:, 2])).sum() / 6.0)


@pytest.mark.parametrize("oid", list(range(0, 40)))
def test_meshes_are_valid(oid):
    o = O.make_object(oid)
    n = len(o.vertices)
    assert o.faces.min() >= 0 and o.faces.max() < n
    assert o.uvs.shape == (n, 2) and o.normals.shape == (n, 3)
    assert np.all((o.uvs >= -1e-6) & (o.uvs <= 1 + 1e-6))
    np.testing.assert_allclose(np.linalg.norm(o.normals, axis=1), 1.0, atol=1e-4)
    assert o.texture.dtype == np.uint8 and o.texture.ndim == 3
    lo, hi = O.DIAMETER_RANGE_M
    assert lo * 0.99 <= o.diameter <= hi * 1.01
    np.testing.assert_allclose(0.5 * (o.vertices.min(0) + o.vertices.max(0)), 0, atol=1e-9)  # bbox-centred
    assert _signed_volume(o.vertices, o.faces) > 0  # faces wind outwards


def test_asymmetric_by_default_and_symmetry_metadata():
    objs = [O.make_object(i) for i in range(150)]
    frac = np.mean([o.symmetric for o in objs])
    assert 0.02 < frac < 0.25
    a = O.make_object(7, symmetric=False)
    assert not a.symmetric and not a.symmetries_discrete and not a.symmetries_continuous and a.key == "7"
    for i in range(16):
        s = O.make_object(i, symmetric=True)
        assert s.symmetric and s.key.endswith("s")
        assert s.symmetries_continuous or s.symmetries_discrete
        if s.symmetries_continuous:  # a textured body of revolution about z: rows of the texture are constant
            assert np.all(s.texture == s.texture[:, :1])
            R = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1.0]])  # 90° about z maps the surface onto itself
            P = s.sample_surface(200, seed=1) @ R.T
            d = np.sqrt(((P[:, None] - s.sample_surface(3000, seed=2)[None]) ** 2).sum(-1)).min(1)
            assert np.median(d) < 0.03 * s.diameter
        for S in s.symmetries_discrete:
            V2 = s.vertices @ S[:3, :3].T + S[:3, 3]
            d = np.sqrt(((V2[:, None] - s.vertices[None]) ** 2).sum(-1)).min(1)
            assert d.max() < 1e-6


def test_object_creation_is_fast():
    import time

    O.make_object(0)
    t = time.perf_counter()
    for i in range(20):
        O.make_object(10_000 + i)
    assert (time.perf_counter() - t) / 20 < 0.2  # ~30 ms typical; loose for a busy machine


def test_export_obj(tmp_path):
    o = O.make_object(11)
    p = o.export_obj(tmp_path)
    text = p.read_text()
    assert text.count("\nv ") == len(o.vertices) and text.count("\nf ") == len(o.faces)
    assert (tmp_path / f"obj_{o.key}.png").is_file() and "map_Kd" in (
        tmp_path / f"obj_{o.key}.mtl"
    ).read_text()


def test_real_assets():
    ids = O.real_test_object_ids()
    if not ids:
        pytest.skip("pybullet_data not installed")
    duck = O.make_object(min(ids))
    assert duck.source == "pybullet_data" and duck.split == "test" and duck.name == "duck"
    assert 0.05 < duck.diameter < 0.2 and duck.texture.shape[0] >= 256
    for i in ids:
        o = O.make_object(i)
        assert o.faces.max() < len(o.vertices) and o.uvs.shape == (len(o.vertices), 2)
