"""Generated bad input (hypothesis): the library's entry points yield a result or a typed One2AnyError,
never an unhandled exception. Random shapes and dtypes, NaN/inf/zero/negative depth, masks of 0-3 pixels,
extreme intrinsics, random and mutated reference files; and the same classes of input as ROS messages
(``conversions.view_from_messages``, the node's first step on every frame).

Each test is bounded (max_examples 40-80, no deadline) so the file runs in well under a minute on 2 cores.
Inputs that once broke something are pinned with ``@example`` so they are checked on every run, not only
when the random search happens to find them again. The hypothesis profile comes from test/conftest.py: with
CI set ("ci") the examples are derandomized, the same on every run and machine; elsewhere ("dev") each run
draws new ones.
"""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from one2any_ros.core import camera
from one2any_ros.core.errors import One2AnyError, ReferenceFileError
from one2any_ros.core.estimator import EstimatorSettings, PoseEstimator, PoseResult
from one2any_ros.core.reference import Reference, View, load_reference, make_reference, make_view, save_reference

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                            HealthCheck.data_too_large])
K_GOOD = np.array([[60.0, 0.0, 11.5], [0.0, 60.0, 9.5], [0.0, 0.0, 1.0]])
H, W = 20, 24

# --- strategies ------------------------------------------------------------------------------------------

SPECIAL_FLOATS = st.sampled_from([0.0, -0.0, np.nan, np.inf, -np.inf, -1.0, 1e-30, 1e30, 0.5, 0.8, 65.535])
DEPTH_DTYPES = st.sampled_from([np.uint16, np.float32, np.float64, np.float16, np.int32, np.uint32, np.uint8,
                                np.int8, np.int64, np.bool_, np.complex64])


def _cast(v: float, dtype) -> float:
    """``v`` as ``dtype`` would store it (1e30 as float16 is inf: meant, so without the overflow warning)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.asarray(v).astype(dtype))


def _depth_elements(dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return st.one_of(st.floats(width=min(dtype.itemsize * 8, 64), allow_nan=True, allow_infinity=True),
                         SPECIAL_FLOATS.map(lambda v: _cast(v, dtype)))
    if dtype.kind == "c":
        return st.complex_numbers(allow_nan=True, allow_infinity=True, width=64)
    return hnp.from_dtype(dtype)


@st.composite
def depth_arrays(draw, shape=None):
    dtype = draw(DEPTH_DTYPES)
    if shape is None:
        shape = draw(st.one_of(st.tuples(st.integers(0, 6), st.integers(0, 6)),
                               hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)))
    return draw(hnp.arrays(dtype, shape, elements=_depth_elements(dtype)))


@st.composite
def intrinsics(draw):
    """Sane, extreme, singular, non-finite and wrongly shaped K (or None)."""
    kind = draw(st.sampled_from(["good", "extreme", "random", "shape", "none"]))
    if kind == "none":
        return None
    if kind == "shape":
        return draw(hnp.arrays(np.float64, hnp.array_shapes(max_dims=3, max_side=5), elements=SPECIAL_FLOATS))
    K = K_GOOD.copy()
    if kind == "good":
        return K
    if kind == "extreme":
        val = st.sampled_from([1e-300, 1e-12, 1e-6, 2e-6, 1e-3, 1.0, 1e6, 1e12, 1e150, 1e300, -60.0, 0.0,
                               np.nan, np.inf, -np.inf])
        for i, j in draw(st.lists(st.sampled_from([(0, 0), (1, 1), (0, 2), (1, 2), (0, 1), (2, 2), (2, 0)]),
                                  min_size=1, max_size=4)):
            K[i, j] = draw(val)
        return K
    return draw(hnp.arrays(np.float64, (3, 3), elements=st.floats(-1e6, 1e6) | SPECIAL_FLOATS))


@st.composite
def masks(draw, shape):
    """Masks of 0-3 pixels, random masks, a solid block, wrong shapes/dtypes."""
    h, w = shape
    kind = draw(st.sampled_from(["few", "few", "random", "block", "shape", "dtype"]))
    if kind == "shape":
        return draw(hnp.arrays(np.uint8, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6)))
    if kind == "dtype":
        return draw(hnp.arrays(st.sampled_from([np.float32, np.float64, np.int16, np.complex64, np.bool_]), (h, w)))
    m = np.zeros((h, w), np.uint8)
    if kind == "few":
        n = draw(st.integers(0, 3))
        for _ in range(n):
            m[draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))] = draw(st.integers(1, 255))
    elif kind == "random":
        m = draw(hnp.arrays(np.uint8, (h, w), elements=st.sampled_from([0, 0, 255])))
    else:
        r0, c0 = draw(st.integers(0, h // 2)), draw(st.integers(0, w // 2))
        m[r0:r0 + draw(st.integers(1, h)), c0:c0 + draw(st.integers(1, w))] = 255
    return m


@st.composite
def rgbs(draw, shape):
    h, w = shape
    kind = draw(st.sampled_from(["none", "u8", "grey", "rgba", "float", "u16", "bad"]))
    if kind == "none":
        return None
    if kind == "u8":
        return draw(hnp.arrays(np.uint8, (h, w, 3)))
    if kind == "grey":
        return draw(hnp.arrays(np.uint8, (h, w)))
    if kind == "rgba":
        return draw(hnp.arrays(np.uint8, (h, w, 4)))
    if kind == "float":
        return draw(hnp.arrays(np.float32, (h, w, 3), elements=st.floats(width=32) | SPECIAL_FLOATS.map(np.float32)))
    if kind == "u16":
        return draw(hnp.arrays(np.uint16, (h, w, 3)))
    return draw(hnp.arrays(st.sampled_from([np.int8, np.bool_, np.uint8]), hnp.array_shapes(min_dims=0, max_dims=4,
                                                                                        max_side=5)))


def object_depth(h: int = H, w: int = W) -> np.ndarray:
    """A slanted patch 0.6-0.7 m away in front of a wall at 0.9 m (float32 metres)."""
    d = np.full((h, w), 0.9, np.float32)
    d[4:16, 5:19] = (0.6 + 0.006 * np.arange(14, dtype=np.float32)[None, :]
                     + 0.004 * np.arange(12, dtype=np.float32)[:, None])
    return d


def object_mask(h: int = H, w: int = W) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[4:16, 5:19] = 255
    return m


def object_rgb(h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)


@st.composite
def near_valid_views(draw):
    """Mostly-valid object views broken in one or two ways: the inputs most likely to reach deep code."""
    depth = object_depth()
    mask = object_mask()
    rgb = object_rgb()
    K = K_GOOD.copy()
    for _ in range(draw(st.integers(1, 2))):
        what = draw(st.sampled_from(["depth_special", "depth_noise", "mask_few", "mask_line", "K", "flat",
                                     "far", "huge_depth", "rgb"]))
        if what == "depth_special":  # NaN/inf/0/negative sprinkled over the object
            sel = draw(hnp.arrays(np.bool_, depth.shape))
            depth = depth.copy()
            depth[sel] = draw(SPECIAL_FLOATS)
        elif what == "depth_noise":
            depth = depth + draw(hnp.arrays(np.float32, depth.shape, elements=st.floats(-0.5, 0.5, width=32)))
        elif what == "mask_few":
            mask = draw(masks((H, W)))
        elif what == "mask_line":  # a one-pixel-wide object: degenerate geometry
            mask = np.zeros((H, W), np.uint8)
            mask[draw(st.integers(0, H - 1)), :] = 255
        elif what == "K":
            K = draw(intrinsics())
        elif what == "flat":  # every object pixel at one depth (a plane facing the camera)
            depth = np.where(object_mask() > 0, np.float32(draw(st.sampled_from([0.3, 0.6, 3.9]))), depth)
        elif what == "far":  # at the edge of the valid range
            depth = depth * np.float32(draw(st.sampled_from([0.1, 0.17, 4.4, 6.0])))
        elif what == "huge_depth":
            depth = np.where(object_mask() > 0, np.float32(draw(st.sampled_from([1e4, 1e30, 3e38]))), depth)
        else:
            rgb = draw(rgbs((H, W)))
    return rgb, depth, mask, K


def is_rigid(T: np.ndarray) -> bool:
    R = T[:3, :3]
    return (T.shape == (4, 4) and bool(np.all(np.isfinite(T))) and np.allclose(R @ R.T, np.eye(3), atol=1e-6)
            and np.linalg.det(R) > 0 and np.allclose(T[3], [0, 0, 0, 1]))


def check_view(v: View) -> None:
    h, w = v.depth.shape
    assert v.rgb.shape == (h, w, 3) and v.rgb.dtype == np.uint8
    assert v.mask.shape == (h, w) and v.mask.dtype == bool
    assert v.depth.dtype == np.float32 and np.all(np.isfinite(v.depth)) and np.all(v.depth >= 0)
    assert v.K.shape == (3, 3) and np.all(np.isfinite(v.K))
    assert v.T_cam_obj is None or is_rigid(v.T_cam_obj), "the object pose of a view must be a rigid transform"


def check_pose(res: PoseResult) -> None:
    for T in (res.T_camera_object, res.T_camera_C):
        assert is_rigid(T), T
    assert 0.0 <= res.confidence <= 1.0 and res.inliers >= 0


def fast_estimator(backend: str = "classic") -> PoseEstimator:
    s = EstimatorSettings().with_updates(**{"search.num_start_rotations": 12, "search.icp_keep": 6})
    return PoseEstimator(backend, settings=s)


# --- camera.decode_depth ---------------------------------------------------------------------------------

@SETTINGS
@given(depth=depth_arrays(), encoding=st.sampled_from([None, "16UC1", "mono16", "32FC1", "8UC1", "bogus", ""]),
       scale=st.one_of(st.none(), SPECIAL_FLOATS))
def test_decode_depth_gives_finite_metres_or_a_typed_error(depth, encoding, scale):
    try:
        out = camera.decode_depth(depth, depth_scale_m=scale, encoding=encoding)
    except One2AnyError:
        return
    assert out.ndim == 2 and out.dtype == np.float32 and out.size > 0
    assert np.all(np.isfinite(out)) and np.all(out >= 0)


# --- make_view -------------------------------------------------------------------------------------------

@st.composite
def raw_views(draw):
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    shape = draw(st.sampled_from([(h, w), (h, w), (h, w), (h + 1, w), (h, w, 1)]))
    depth = draw(depth_arrays(shape=shape))
    return dict(rgb=draw(rgbs((h, w))), depth=depth, mask=draw(masks((h, w))), K=draw(intrinsics()),
                depth_scale_m=draw(st.one_of(st.none(), SPECIAL_FLOATS)),
                min_depth=draw(st.sampled_from([0.0, 0.1, np.nan, 5.0])),
                max_depth=draw(st.sampled_from([4.0, np.inf, 0.05, np.nan])),
                min_pixels=draw(st.sampled_from([camera.MIN_MASK_PIXELS, 1, 0])),
                T_cam_obj=draw(st.sampled_from([None, None, np.eye(4), 2 * np.eye(4), np.ones((4, 4)), np.zeros((4, 4)),
                                                np.full((4, 4), np.nan), np.eye(3), np.diag([1.0, 1.0, -1.0, 1.0])])))


@settings(SETTINGS, max_examples=80)
@given(kw=raw_views())
@example(kw=dict(rgb=None, depth=object_depth(), mask=object_mask(), K=K_GOOD, T_cam_obj=2 * np.eye(4)))
def test_make_view_gives_a_valid_view_or_a_typed_error(kw):
    try:
        v = make_view(**kw)
    except One2AnyError:
        return
    check_view(v)


# --- make_reference --------------------------------------------------------------------------------------

@SETTINGS
@given(raw=near_valid_views(), min_pixels=st.sampled_from([camera.MIN_MASK_PIXELS, 1]))
def test_make_reference_gives_a_finite_reference_or_a_typed_error(raw, min_pixels):
    rgb, depth, mask, K = raw
    try:
        ref = make_reference(make_view(rgb, depth, mask, K, min_pixels=min_pixels))
    except One2AnyError:
        return
    assert np.isfinite(ref.scale) and ref.scale > 0
    assert len(ref.points_C) >= 1 and np.all(np.isfinite(ref.points_C)) and np.all(np.isfinite(ref.T_refcam_C))
    assert np.all(np.isfinite(ref.colour_C)) and ref.num_points >= 1


# --- PoseEstimator.set_reference / estimate --------------------------------------------------------------

@pytest.fixture(scope="module")
def estimator():
    est = fast_estimator()
    est.set_reference(make_view(object_rgb(), object_depth(), object_mask(), K_GOOD))
    return est


@SETTINGS
@given(raw=near_valid_views(), track=st.booleans())
def test_estimate_gives_a_finite_pose_or_a_typed_error(estimator, raw, track):
    rgb, depth, mask, K = raw
    try:
        res = estimator.estimate(make_view(rgb, depth, mask, K), track=track)
    except One2AnyError:
        return
    check_pose(res)


@settings(SETTINGS, max_examples=40)
@given(raw=near_valid_views())
def test_set_reference_then_estimate_on_the_good_view(raw):
    rgb, depth, mask, K = raw
    est = fast_estimator()
    try:
        est.set_reference(make_view(rgb, depth, mask, K))
    except One2AnyError:
        assert est.reference is None
        return
    try:
        res = est.estimate(make_view(object_rgb(), object_depth(), object_mask(), K_GOOD))
    except One2AnyError:
        return
    check_pose(res)


def test_estimate_matches_the_truth_on_the_clean_view(estimator):
    """The fixture is not a straw man: on its own view the estimator finds the identity."""
    res = estimator.estimate(make_view(object_rgb(), object_depth(), object_mask(), K_GOOD))
    np.testing.assert_allclose(res.T_camera_C, estimator.reference.T_refcam_C, atol=2e-3)


# --- load_reference: random bytes and mutated files ------------------------------------------------------

@pytest.fixture(scope="module")
def saved_reference(tmp_path_factory):
    ref = make_reference(make_view(object_rgb(), object_depth(), object_mask(), K_GOOD,
                                   T_cam_obj=np.eye(4)))
    path = tmp_path_factory.mktemp("ref") / "ref.zip"
    save_reference(ref, path)
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    return SavedReference(path.read_bytes(), members)


class SavedReference(tuple):
    """(file bytes, {member: bytes}) with a short repr: hypothesis prints the arguments of a failing example."""

    def __new__(cls, data: bytes, members: dict[str, bytes]):
        return super().__new__(cls, (data, members))

    def __repr__(self) -> str:
        return f"<saved reference, {len(self[0])} bytes, members {sorted(self[1])}>"


def check_loaded(ref: Reference) -> None:
    """A reference that loads must be usable: finite 4x4 frames, a view that passes validation."""
    assert ref.T_C_O.shape == (4, 4) and np.all(np.isfinite(ref.T_C_O))
    assert np.isfinite(ref.scale) and ref.scale > 0
    check_view(ref.view)
    est = fast_estimator()
    est.set_reference(ref)
    try:
        check_pose(est.estimate(ref.view))
    except One2AnyError:
        pass


def load_bytes(tmp_path, data: bytes) -> None:
    p = tmp_path / "candidate.zip"
    p.write_bytes(data)
    try:
        ref = load_reference(p)
    except ReferenceFileError:
        return
    check_loaded(ref)


@SETTINGS
@given(data=st.binary(max_size=2048) | st.binary(max_size=64).map(lambda b: b"PK\x03\x04" + b))
def test_load_reference_of_random_bytes_raises_reference_file_error(tmp_path_factory, data):
    load_bytes(tmp_path_factory.mktemp("rand"), data)


def _zip(members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for n, b in members.items():
            zf.writestr(n, b)
    return buf.getvalue()


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


NPY_VALUES = st.sampled_from([
    np.zeros(3), np.zeros((0, 4)), np.array("text"), np.array(["a", "b"]), np.full((4, 4), np.nan),
    np.ones((4, 4), np.complex64), np.zeros((2, 2), np.uint8), np.eye(4)[:3], np.array(7), np.zeros((5, 4, 4)),
])


@st.composite
def mutated_files(draw):
    """How to break a valid reference file: (kind, position, bit, array, meta, pinned member). Kinds: a bit
    flip (also inside the compressed data), truncation, a member removed, meta.json replaced by other
    JSON, an array replaced by one of another shape/dtype."""
    return (draw(st.sampled_from(["flip", "flip", "truncate", "drop", "meta", "array"])), draw(st.integers(0, 10**9)),
            draw(st.integers(0, 7)), draw(NPY_VALUES),
            draw(st.sampled_from([[], {}, None, 1, "x", {"format": "one2any_reference"},
                                  {"format": "one2any_reference", "version": 1, "scale": "x"},
                                  {"format": "one2any_reference", "version": "1"}])), None)


def _apply(kind, n, bit, arr, meta, saved) -> bytes:
    data, members = saved
    names = sorted(members)
    if kind == "flip":
        b = bytearray(data)
        b[n % len(b)] ^= 1 << bit
        return bytes(b)
    if kind == "truncate":
        return data[: n % len(data)]
    if kind == "drop":
        return _zip({k: v for k, v in members.items() if k != names[n % len(names)]})
    if kind == "meta":
        return _zip({**members, "meta.json": json.dumps(meta).encode()})
    npys = [k for k in names if k.endswith(".npy")]
    return _zip({**members, npys[n % len(npys)]: _npy(arr)})


# Pinned reproducers (each broke load_reference when this file was written): a bit flip in a deflate block
# header (zlib.error), a missing T_C_O member (KeyError), meta.json that is not an object (AttributeError),
# string arrays (ValueError), a T_C_O of the wrong shape (loaded; estimation then crashes) or not rigid
# (loaded; poses are then not rigid transforms).
@settings(SETTINGS, max_examples=80)
@given(m=mutated_files())
@example(m=("flip", 0, 1, None, None, "deflate"))
@example(m=("drop", 0, 0, None, None, "T_C_O.npy"))
@example(m=("meta", 0, 0, None, [], None))
@example(m=("array", 0, 0, np.array("text"), None, "K.npy"))
@example(m=("array", 0, 0, np.array(["a", "b"]), None, "T_C_O.npy"))
@example(m=("array", 0, 0, np.zeros(3), None, "T_C_O.npy"))
@example(m=("array", 0, 0, np.ones((4, 4)), None, "T_C_O.npy"))
def test_load_reference_of_a_mutated_file_raises_reference_file_error(tmp_path_factory, saved_reference, m):
    kind, n, bit, arr, meta, target = m
    data, members = saved_reference
    if target == "deflate":  # flip a bit of the block header at the start of the largest member's deflate data
        info = max(zipfile.ZipFile(io.BytesIO(data)).infolist(), key=lambda i: i.compress_size)
        n = info.header_offset + 30 + len(info.filename) + len(info.extra)
    elif target is not None:  # the pinned member
        n = sorted(members).index(target)
        if kind == "array":
            n = [k for k in sorted(members) if k.endswith(".npy")].index(target)
    load_bytes(tmp_path_factory.mktemp("mut"), _apply(kind, n, bit, arr, meta, saved_reference))


# --- the same classes of input as ROS messages (the node's conversion step; no graph) ------------------

@st.composite
def image_messages(draw, kind: str, h: int, w: int):
    from sensor_msgs.msg import Image

    from one2any_ros.ros import conversions as conv

    enc = draw(st.sampled_from({"rgb": ["rgb8", "bgr8"], "depth": ["16UC1", "32FC1", "mono16"],
                                "mask": ["mono8", "8UC1"]}[kind] + ["rgba8", "mono8", "32FC1", "", "ü", "16UC3"]))
    msg = Image()
    msg.height, msg.width, msg.encoding = h, w, enc
    msg.is_bigendian = draw(st.sampled_from([0, 0, 1]))
    dtype, ch = conv.ENCODINGS.get(enc, (np.dtype(np.uint8), 1))
    row = w * ch * dtype.itemsize
    msg.step = draw(st.sampled_from([row, row, row + 3, max(row - 1, 0), 0, 2**31 - 1]))
    fill = draw(st.sampled_from(["exact", "exact", "short", "long", "random"]))
    n = {"exact": msg.step * h, "short": msg.step * h // 2, "long": msg.step * h + 17}.get(fill, 0)
    if fill == "random" or n > 1 << 16:  # (a 2^31 step x h rows would be gigabytes: random bytes instead)
        msg.data = draw(st.binary(max_size=4096))
    elif kind == "depth" and enc == "32FC1" and fill == "exact" and msg.step == row and not msg.is_bigendian:
        msg.data = draw(hnp.arrays(np.float32, (h, w), elements=SPECIAL_FLOATS.map(np.float32))).tobytes()
    else:
        msg.data = draw(st.binary(min_size=min(n, 4096), max_size=min(n, 4096))) + bytes(max(n - 4096, 0))
    return msg


@st.composite
def frame_messages(draw):
    from sensor_msgs.msg import CameraInfo

    h, w = draw(st.integers(0, 8)), draw(st.integers(0, 8))
    msgs = {k: draw(image_messages(k, *draw(st.sampled_from([(h, w), (h, w), (h, w), (w, h), (h + 1, w)]))))
            for k in ("rgb", "depth", "mask")}
    info = CameraInfo()
    info.height, info.width = draw(st.sampled_from([(h, w), (0, 0), (h + 2, w)]))
    K = draw(intrinsics())
    info.k = [float(v) for v in (np.asarray(K, np.float64).ravel()[:9].tolist() + [0.0] * 9)[:9]] \
        if K is not None else [0.0] * 9
    msgs["camera_info"] = info
    return msgs


@settings(SETTINGS, max_examples=80)
@given(msgs=frame_messages(), min_depth=st.sampled_from([0.0, 0.1]))
def test_view_from_messages_gives_a_view_or_a_typed_error(msgs, min_depth):
    conv = pytest.importorskip("one2any_ros.ros.conversions")
    try:
        v = conv.view_from_messages(msgs, min_depth=min_depth, max_depth=4.0)
    except One2AnyError:
        return
    check_view(v)
