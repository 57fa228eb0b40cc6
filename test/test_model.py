"""The learned model: forward shapes, inputs/crop rule, checkpoint I/O and its rejections, ROPE caching."""
import json

import numpy as np
import pytest
import torch

from one2any_ros.core import camera
from one2any_ros.core.errors import CheckpointError
from one2any_ros.core.model import inputs
from one2any_ros.core.model.checkpoint import load_checkpoint, save_checkpoint
from one2any_ros.core.model.network import EMBEDDING_KEYS, NetConfig, One2AnyNet, confidence_from_log_b, pool_roc
from one2any_ros.core.reference import load_reference, save_reference
from one2any_ros.core.frame import make_view

TINY = NetConfig(input_size=32, output_stride=2, stem=8, widths=(16, 16, 32), match_dim=16, heads=2, ref_layers=1,
                 bottleneck_layers=1)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tiny_model(seed=0, cfg=TINY):
    torch.manual_seed(seed)
    return One2AnyNet(cfg).eval()


def _inputs(cfg=TINY, b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = cfg.input_size
    ref = torch.rand(b, 7, n, n, generator=g)
    valid = (torch.rand(b, 1, n, n, generator=g) > 0.3).float()
    ref[:, 6:7] = valid
    return ref, valid, torch.rand(b, 8, n, n, generator=g)


@pytest.mark.parametrize("stride", [2, 4])
def test_forward_shapes_and_dtypes(stride):
    cfg = NetConfig(**{**TINY.to_dict(), "widths": (16, 16, 32), "rgb_mean": (0.45,) * 3, "rgb_std": (0.25,) * 3,
                       "output_stride": stride})
    model = _tiny_model(cfg=cfg)
    ref, valid, query = _inputs(cfg)
    with torch.no_grad():
        emb = model.encode(ref, valid)
        out = model.decode(query, emb)
    g = cfg.input_size // stride
    assert set(emb) == set(EMBEDDING_KEYS)
    assert emb["tokens8"].shape == (2, (cfg.input_size // 8) ** 2, cfg.widths[2])
    assert emb["tokens4"].shape == (2, (cfg.input_size // 4) ** 2, cfg.widths[1])
    assert emb["keys"].shape == (2, g * g, cfg.match_dim) and emb["values"].shape == (2, g * g, 3)
    assert emb["valid"].dtype == torch.bool
    for k in ("roc", "roc_match"):
        assert out[k].shape == (2, 3, g, g) and out[k].dtype == torch.float32
    assert out["log_b"].shape == (2, 1, g, g)
    assert torch.isfinite(out["roc"]).all()
    conf = confidence_from_log_b(out["log_b"])
    assert ((conf > 0) & (conf <= 1)).all()
    # the matching output is a convex combination of the reference's valid ROC values
    lo = emb["values"].masked_fill(~emb["valid"][..., None], 1e9).amin(1)
    assert (out["roc_match"].flatten(2).amin(2) >= lo - 1e-5).all()


def test_no_valid_reference_pixel_gives_finite_output():
    model = _tiny_model()
    ref, valid, query = _inputs()
    with torch.no_grad():
        out = model(ref, torch.zeros_like(valid), query)
    assert torch.isfinite(out["roc"]).all()


def test_pool_roc_matches_numpy_twin():
    from one2any_ros.training.pairs import pool_mean

    rng = np.random.default_rng(0)
    roc = rng.normal(size=(1, 3, 16, 16)).astype(np.float32)
    valid = rng.random((16, 16)) > 0.5
    t, ok = pool_roc(torch.from_numpy(roc), torch.from_numpy(valid)[None, None], 2)
    n, ok_n = pool_mean(roc[0], valid, 2)
    np.testing.assert_allclose(t[0].numpy(), n, atol=1e-6)
    assert (ok[0, 0].numpy() == ok_n).all()


def test_crop_rule_from_bbox_equals_camera_crop_box():
    rng = np.random.default_rng(1)
    for _ in range(50):
        m = np.zeros((120, 160), bool)
        v0, u0 = rng.integers(-10, 100), rng.integers(-10, 140)
        m[max(v0, 0):v0 + rng.integers(2, 60), max(u0, 0):u0 + rng.integers(2, 60)] = True
        if not m.any():
            continue
        v, u = np.nonzero(m)
        w = inputs.crop_window_from_bbox(u.min(), u.max(), v.min(), v.max(), 64)
        assert (w.u0, w.v0, w.side) == camera.crop_box(m)


def test_crop_intrinsics_agree_with_nearest_sampling():
    """A point projected with the crop's K lands on the input cell whose nearest source pixel it projects to."""
    K = np.array([[600.0, 0, 320], [0, 600, 240], [0, 0, 1]])
    win = inputs.CropWindow(u0=250, v0=170, side=150, size=64)
    Kc = win.intrinsics(K)
    us, vs = win.source_indices()
    rng = np.random.default_rng(2)
    for _ in range(100):
        x, y = rng.integers(0, 64, 2)
        # the ray through source pixel (us[x], vs[y]) at 1 m
        P = np.array([(us[x] - K[0, 2]) / K[0, 0], (vs[y] - K[1, 2]) / K[1, 1], 1.0])
        uv, _ = camera.project(P[None], Kc)
        assert abs(uv[0, 0] - x) <= 0.5 * 64 / 150 + 0.5 + 1e-9 and abs(uv[0, 1] - y) <= 0.5 + 0.5 * 64 / 150 + 1e-9
    # and the cell <- pixel mapping used to read the output back is the inverse of the sampling
    pix = np.stack(np.meshgrid(vs, us, indexing="ij"), -1).reshape(-1, 2)
    r, c = win.pixels_to_grid(pix, 64)
    assert (r.reshape(64, 64) == np.arange(64)[:, None]).all() and (c.reshape(64, 64) == np.arange(64)[None]).all()


# --- checkpoints -------------------------------------------------------------------------------------

def test_checkpoint_round_trip(tmp_path):
    model = _tiny_model(seed=3)
    st, js = save_checkpoint(model, tmp_path / "m", training={"steps": 7})
    assert st.name == "m.safetensors" and js.name == "m.json"
    loaded, meta = load_checkpoint(tmp_path / "m.safetensors")
    assert meta["input_size"] == TINY.input_size and meta["training"]["steps"] == 7
    assert not loaded.training
    ref, valid, query = _inputs()
    with torch.no_grad():
        a, b = model(ref, valid, query), loaded(ref, valid, query)
    for k in a:  # the same weights: the same outputs, up to float32 rounding (kernels may differ between runs)
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def _saved(tmp_path):
    st, js = save_checkpoint(_tiny_model(), tmp_path / "m")
    return st, js


def test_missing_checkpoint_files(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist") as e:
        load_checkpoint(tmp_path / "nothing.safetensors")
    assert "nothing.json" in str(e.value)
    st, js = _saved(tmp_path)
    st.unlink()
    with pytest.raises(CheckpointError, match="m.safetensors"):
        load_checkpoint(js)


def test_truncated_tensors_rejected(tmp_path):
    st, js = _saved(tmp_path)
    data = st.read_bytes()
    st.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="checksum|truncated"):
        load_checkpoint(st)
    # without the checksum the safetensors reader itself must refuse it
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(st, verify_checksum=False)
    st.write_bytes(b"\x00" * 3)
    with pytest.raises(CheckpointError):
        load_checkpoint(st, verify_checksum=False)


@pytest.mark.parametrize("edit,match", [
    (lambda m: m.update(format="something_else"), "not a one2any checkpoint"),
    (lambda m: m.update(version=99), "version"),
    (lambda m: m["architecture"].update(name="resnet"), "architecture"),
    (lambda m: m["architecture"].update(depth=3), "unknown architecture fields"),
    (lambda m: m["architecture"].update(output_stride=3), "output_stride"),
    (lambda m: m.update(input_size=64), "input_size"),
])
def test_json_architecture_mismatch_rejected(tmp_path, edit, match):
    st, js = _saved(tmp_path)
    meta = json.loads(js.read_text())
    edit(meta)
    js.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=match) as e:
        load_checkpoint(st)
    assert "m.json" in str(e.value)


def test_invalid_json_rejected(tmp_path):
    st, js = _saved(tmp_path)
    js.write_text("{ not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(st)


def test_wrong_tensor_shapes_rejected(tmp_path):
    """Tensors of a wider network under this JSON: named shape mismatch."""
    st, js = _saved(tmp_path)
    wide = NetConfig(**{**TINY.to_dict(), "widths": (16, 16, 48), "rgb_mean": TINY.rgb_mean, "rgb_std": TINY.rgb_std})
    st2, js2 = save_checkpoint(One2AnyNet(wide), tmp_path / "wide")
    st.write_bytes(st2.read_bytes())
    with pytest.raises(CheckpointError, match="wrongly shaped"):
        load_checkpoint(st, verify_checksum=False)
    # and with the checksum on, the mix-up is caught first
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(st)


def test_missing_tensor_rejected(tmp_path):
    from safetensors.torch import load_file, save_file

    st, js = _saved(tmp_path)
    t = load_file(str(st))
    t.pop(sorted(t)[0])
    save_file(t, str(st))
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(st, verify_checksum=False)


def test_backend_raises_checkpoint_error(tmp_path):
    from one2any_ros.core.backends.one2any import One2AnyBackend

    with pytest.raises(CheckpointError):
        One2AnyBackend(device="cpu", checkpoint=str(tmp_path / "absent.safetensors"))


# --- the backend: ROPE computed once per reference ---------------------------------------------------

K = np.array([[500.0, 0, 79.5], [0, 500.0, 59.5], [0, 0, 1]])


def _sphere_view(shift=(0, 0), seed=0):
    """A textured half-sphere (radius 5 cm, 0.6 m away) on a far wall: an analytic RGB-D frame."""
    h, w = 120, 160
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    cu, cv = 80 + shift[0], 60 + shift[1]
    z0, R = 0.6, 0.05
    x = (u - K[0, 2]) / K[0, 0]
    y = (v - K[1, 2]) / K[1, 1]
    X0 = np.array([(cu - K[0, 2]) / K[0, 0] * z0, (cv - K[1, 2]) / K[1, 1] * z0, z0])
    # ray-sphere intersection
    d = np.stack([x, y, np.ones_like(x)], -1)
    b = (d * X0).sum(-1)
    a = (d * d).sum(-1)
    disc = b * b - a * ((X0 * X0).sum() - R * R)
    mask = disc > 0
    t = np.where(mask, (b - np.sqrt(np.maximum(disc, 0))) / a, 0)
    depth = np.where(mask, t, 1.5).astype(np.float32)
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    rgb[mask] = (np.stack([u, v, u + v], -1)[mask] * 1.5 % 255).astype(np.uint8)
    return make_view(rgb, depth, mask, K)


def test_rope_encoded_once_per_reference(tmp_path):
    from one2any_ros.core.backends.one2any import One2AnyBackend
    from one2any_ros.core.errors import EstimationFailure
    from one2any_ros.core.estimator import PoseEstimator

    save_checkpoint(_tiny_model(), tmp_path / "tiny")
    backend = One2AnyBackend(device="cpu", checkpoint=str(tmp_path / "tiny.safetensors"))
    calls = {"enc": 0, "dec": 0}
    enc_fwd, dec_fwd = backend.model.encoder.forward, backend.model.decoder.forward

    def enc(*a, **k):
        calls["enc"] += 1
        return enc_fwd(*a, **k)

    def dec(*a, **k):
        calls["dec"] += 1
        return dec_fwd(*a, **k)

    backend.model.encoder.forward = enc
    backend.model.decoder.forward = dec
    est = PoseEstimator(backend)
    ref = est.set_reference(_sphere_view())
    assert calls["enc"] == 1 and set(EMBEDDING_KEYS) <= set(ref.embedding)
    assert all(isinstance(v, np.ndarray) for v in ref.embedding.values())
    for i in range(3):
        try:
            est.estimate(_sphere_view(shift=(3 * i, -2 * i), seed=i + 1))
        except EstimationFailure:
            pass
    assert calls == {"enc": 1, "dec": 3}
    # saved with the reference and reused after loading: still no second encoding
    save_reference(ref, tmp_path / "ref.zip")
    loaded = load_reference(tmp_path / "ref.zip")
    est2 = PoseEstimator(backend)
    est2.set_reference(loaded)
    try:
        est2.estimate(_sphere_view(shift=(2, 2), seed=9))
    except EstimationFailure:
        pass
    assert calls == {"enc": 1, "dec": 4}


def test_proposal_has_roc_at_query_points(tmp_path):
    from one2any_ros.core.backends.base import SearchSettings
    from one2any_ros.core.backends.one2any import One2AnyBackend
    from one2any_ros.core.estimator import PoseEstimator

    save_checkpoint(_tiny_model(), tmp_path / "tiny")
    backend = One2AnyBackend(device="cpu", checkpoint=str(tmp_path / "tiny"))
    est = PoseEstimator(backend)
    ref = est.set_reference(_sphere_view())
    q = est._context(_sphere_view(shift=(5, 0), seed=4))
    s = SearchSettings(num_start_rotations=8)
    prop = backend.propose(ref, q, s, ref.diameter)
    n = len(q.points)
    assert prop.roc_pred.shape == (n, 3) and prop.roc_weight.shape == (n,)
    assert ((prop.roc_weight >= 0) & (prop.roc_weight <= 1)).all()
    assert prop.sources.count("grid") == 8 and 1 <= prop.sources.count("ransac") <= s.ransac_hypotheses
    assert prop.T_query_C.shape == (len(prop.sources), 4, 4)
    assert "network" in prop.timings_ms


def test_embedding_from_another_checkpoint_is_recomputed(tmp_path):
    from one2any_ros.core.backends.one2any import One2AnyBackend
    from one2any_ros.core.reference import make_reference

    save_checkpoint(_tiny_model(seed=0), tmp_path / "a")
    save_checkpoint(_tiny_model(seed=1), tmp_path / "b")
    ba = One2AnyBackend(device="cpu", checkpoint=str(tmp_path / "a"))
    bb = One2AnyBackend(device="cpu", checkpoint=str(tmp_path / "b"))
    ref = make_reference(_sphere_view())
    ba.encode_reference(ref)
    keys_a = ref.embedding["keys"].copy()
    bb.predict(ref, _sphere_view(shift=(1, 1)))
    assert bb.encoder_calls == 1 and not np.allclose(ref.embedding["keys"], keys_a)
    bb.predict(ref, _sphere_view(shift=(2, 1)))
    assert bb.encoder_calls == 1


@pytest.mark.parametrize("val_err,span,expect", [(0.7, None, False), (0.1, None, True), (0.1, 180.0, True),
                                                  (0.1, 90.0, False)])  # a 0-90 deg curriculum says nothing of 90-180
def test_weak_checkpoint_keeps_its_roc_out_of_the_verifier(tmp_path, val_err, span, expect):
    from one2any_ros.core.backends.base import SearchSettings
    from one2any_ros.core.backends.one2any import One2AnyBackend
    from one2any_ros.core.estimator import PoseEstimator

    training = {"val": {"val_roc_err": val_err}}
    if span is not None:
        training["pair_sampler"] = {"max_rotation_deg": span}
    save_checkpoint(_tiny_model(), tmp_path / "m", training=training)
    backend = One2AnyBackend(device="cpu", checkpoint=str(tmp_path / "m"))
    assert backend.roc_to_verifier is expect
    est = PoseEstimator(backend)
    ref = est.set_reference(_sphere_view())
    prop = backend.propose(ref, est._context(_sphere_view(shift=(2, 0))), SearchSettings(num_start_rotations=4), ref.diameter)
    assert (prop.roc_pred is not None) is expect
    assert "ransac" in prop.sources


@pytest.mark.parametrize("choice", [True, False])
def test_measured_choice_in_the_checkpoint_decides_the_roc_term(tmp_path, choice):
    """A checkpoint promoted by measurement (one2any_ros.training.promote) records whether its ROC helped the verifier on
    validation scenes; that record wins over the heuristic from the training summary."""
    from one2any_ros.core.backends.one2any import One2AnyBackend
    from one2any_ros.training.export import export_checkpoint

    save_checkpoint(_tiny_model(), tmp_path / "m", training={"val": {"val_roc_err": 0.1 if not choice else 0.7}})
    export_checkpoint(tmp_path / "m", tmp_path / "bundled", inference={"roc_to_verifier": choice})
    backend = One2AnyBackend(device="cpu", checkpoint=str(tmp_path / "bundled"))
    assert backend.roc_to_verifier is choice
    assert backend.describe()["roc_to_verifier"] is choice


def test_learned_backend_reports_its_stages_and_an_honest_total(tmp_path):
    """The network, RANSAC and grid times are parts of the hypotheses stage: the total is wall time, not their sum."""
    import time

    from one2any_ros.core.backends.one2any import One2AnyBackend
    from one2any_ros.core.estimator import PoseEstimator
    from one2any_ros.core.estimator_settings import EstimatorSettings

    save_checkpoint(_tiny_model(), tmp_path / "m")
    est = PoseEstimator(One2AnyBackend(device="cpu", checkpoint=str(tmp_path / "m")),
                        settings=EstimatorSettings(min_inliers=0, min_confidence=0.0))
    est.set_reference(_sphere_view())
    t0 = time.perf_counter()
    res = est.estimate(_sphere_view(shift=(2, 0)))
    wall_ms = 1000.0 * (time.perf_counter() - t0)
    assert {"network", "ransac", "grid", "hypotheses"} <= set(res.timings_ms)
    network = res.timings_ms["network"] + res.timings_ms["ransac"]
    # with a second core the network runs beside the grid (core/background.py): the stage lasts the longer of the two
    assert res.timings_ms["hypotheses"] >= max(network, res.timings_ms["grid"])
    from one2any_ros.core.background import overlap_pays

    if not overlap_pays():
        assert res.timings_ms["hypotheses"] >= network + res.timings_ms["grid"]
    assert res.timings_ms["total"] <= wall_ms + 0.5


def test_query_input_from_the_estimators_depth_mask_is_the_same():
    """The estimator hands the network the object depth mask its points came from (QueryContext.depth_mask) rather
    than sorting the depths again: the input must not change by a bit."""
    from one2any_ros.core.estimator import PoseEstimator

    view = _sphere_view(shift=(7, -4))
    est = PoseEstimator("classic")
    q = est._context(view)
    np.testing.assert_array_equal(q.depth_mask(), camera.object_depth_mask(view.depth, view.K, view.mask))
    x, win = inputs.query_input(view, 0.05, 32)
    x2, win2 = inputs.query_input(view, 0.05, 32, q.depth_mask())
    np.testing.assert_array_equal(x, x2)
    assert win == win2


def _rot90_view(view, k):
    """The same frame seen by a camera rolled by k x 90 deg: the images turned by np.rot90, K with them."""
    from one2any_ros.core.frame import make_view

    Kr, w = view.K.copy(), view.shape[1]
    for _ in range(k % 4):
        Kr = np.array([[Kr[1, 1], 0, Kr[1, 2]], [0, Kr[0, 0], w - 1 - Kr[0, 2]], [0, 0, 1]])
        w = view.shape[0] if w == view.shape[1] else view.shape[1]
    turn = lambda a: np.ascontiguousarray(np.rot90(a, k))
    return make_view(turn(view.rgb), turn(view.depth), turn(view.mask), Kr)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_rolled_query_input_is_what_a_rolled_camera_sees(k):
    from one2any_ros.core.frame import make_view

    sphere = _sphere_view(shift=(7, -4))
    u = np.arange(sphere.shape[1])[None, :]
    tilted = np.where(sphere.mask, sphere.depth + 0.0006 * (u - 80), sphere.depth).astype(np.float32)  # no longer
    view = make_view(sphere.rgb, tilted, sphere.mask, sphere.K)  # symmetric about the optical axis
    x, _ = inputs.query_input(view, 0.05, 32)
    rolled = inputs.roll_query_input(x, k)
    seen, _ = inputs.query_input(_rot90_view(view, k), 0.05, 32)
    assert rolled.shape == seen.shape
    same_mask = np.mean(rolled[3] == seen[3])
    assert same_mask > 0.97  # the crop box may land a pixel apart after the turn
    both = (rolled[7] > 0) & (seen[7] > 0)
    assert both.sum() > 100
    # points / scale: the same geometry turned with the image. The crop box rounds a pixel apart after the turn,
    # which shifts the sampled pixels and so their median (the centre): a constant offset of a few mm, no more
    d = rolled[4:7][:, both] - seen[4:7][:, both]
    offset = np.median(d, axis=1, keepdims=True)
    assert np.abs(offset).max() < 0.1  # 5 mm at scale 5 cm
    assert np.percentile(np.abs(d - offset), 90) < 0.05  # 2.5 mm: about one source pixel at 0.6 m
    wrong = inputs.roll_query_input(x, -k)  # the opposite turn must not pass the same test
    both_w = (wrong[7] > 0) & (seen[7] > 0)
    dw = wrong[4:7][:, both_w] - seen[4:7][:, both_w]
    assert k == 2 or np.percentile(np.abs(dw - np.median(dw, axis=1, keepdims=True)), 90) > 0.2
    g = np.arange(2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8)
    np.testing.assert_array_equal(inputs.unroll_output(np.rot90(g, k, axes=(1, 2)), k), g)
    np.testing.assert_array_equal(inputs.roll_query_input(x, 0), x)


def test_query_rolls_pool_each_rolls_hypotheses(tmp_path):
    from one2any_ros.core.backends.base import SearchSettings
    from one2any_ros.core.backends.one2any import One2AnyBackend
    from one2any_ros.core.errors import One2AnyError
    from one2any_ros.core.estimator import PoseEstimator
    from one2any_ros.training.export import export_checkpoint

    save_checkpoint(_tiny_model(), tmp_path / "tiny")
    backend = One2AnyBackend(device="cpu", checkpoint=str(tmp_path / "tiny"), query_rolls=4)
    est = PoseEstimator(backend)
    ref = est.set_reference(_sphere_view())
    q = est._context(_sphere_view(shift=(5, 0), seed=4))
    roc, conf, _ = backend.predict(ref, q.view, 4)
    assert roc.shape[:2] == (4, 3) and conf.shape[:2] == (4, 1)
    one, _, _ = backend.predict(ref, q.view, 1)
    np.testing.assert_allclose(roc[0], one[0], atol=1e-5)  # roll 0 is the plain prediction
    prop = backend.propose(ref, q, SearchSettings(num_start_rotations=8), ref.diameter)
    assert {s for s in prop.sources if s.startswith("ransac")} <= {"ransac", "ransac_roll90", "ransac_roll180", "ransac_roll270"}
    assert sum(s.startswith("ransac_roll") for s in prop.sources) >= 1
    assert backend.describe()["query_rolls"] == 4
    with pytest.raises(One2AnyError, match="query_rolls"):
        One2AnyBackend(device="cpu", checkpoint=str(tmp_path / "tiny"), query_rolls=5)
    export_checkpoint(tmp_path / "tiny", tmp_path / "bundled", inference={"query_rolls": 3})
    assert One2AnyBackend(device="cpu", checkpoint=str(tmp_path / "bundled")).query_rolls == 3
    assert One2AnyBackend(device="cpu", checkpoint=str(tmp_path / "tiny")).query_rolls == 1
