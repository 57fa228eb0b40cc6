"""The learned hypothesis scorer: comparison images, the network, its checkpoint and rejections, the backend's term in
the final ranking, and the training command's pool bookkeeping and weight choice."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from one2any_ros.core.errors import CheckpointError
from one2any_ros.core.model.checkpoint import save_checkpoint
from one2any_ros.core.model.scorer import (DEFAULT_SCORER, IMAGE_CHANNELS, HypothesisScorer, ScorerConfig, comparison_images,
                                      listwise_loss, load_scorer, save_scorer, scorer_query, scorer_reference)
from one2any_ros.core.colour import colour_features

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY = ScorerConfig(grid=16, widths=(8, 8, 8, 8, 8), hidden=8)
K = np.array([[500.0, 0, 79.5], [0, 500.0, 59.5], [0, 0, 1]])


def _box_scene():
    """A 10 cm box face-on at 0.6 m with a left/right colour split, on a far wall; its surface points in the camera."""
    h, w = 120, 160
    depth = np.full((h, w), 1.5, np.float32)
    mask = np.zeros((h, w), bool)
    mask[35:85, 55:105] = True
    depth[mask] = 0.6
    rgb = np.full((h, w, 3), 90, np.uint8)
    rgb[35:85, 55:80] = (200, 40, 40)
    rgb[35:85, 80:105] = (40, 40, 200)
    v, u = np.nonzero(mask)
    pts = np.stack([(u - K[0, 2]) / K[0, 0] * 0.6, (v - K[1, 2]) / K[1, 1] * 0.6, np.full(len(u), 0.6)], 1)
    cols = colour_features(rgb, mask)[v, u]
    return rgb, depth, mask, pts, cols


def _flip_about_view_axis() -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = np.diag([-1.0, -1.0, 1.0])
    return T


def test_comparison_images_see_a_right_pose_and_a_flip():
    rgb, depth, mask, pts, cols = _box_scene()
    centre = pts.mean(0)
    sref = scorer_reference(pts - centre, cols, diameter=0.14)
    sq = scorer_query(depth, mask, colour_features(rgb, mask), K, 0.14, grid=16)
    right = np.eye(4)
    right[:3, 3] = centre
    flipped = right @ _flip_about_view_axis()
    behind = right.copy()
    behind[2, 3] += 0.05
    x = comparison_images(np.stack([right, flipped, behind]), sref, sq)
    assert x.shape == (3, IMAGE_CHANNELS, 16, 16) and x.dtype == np.float32 and np.isfinite(x).all()
    qmask, cov, dd = x[:, 4], x[:, 9], x[:, 10]
    # the right pose covers the query's silhouette where its depth agrees, and carries the query's colours there
    inside = (qmask[0] > 0) & (cov[0] > 0)
    assert inside.sum() >= 0.8 * (qmask[0] > 0).sum() and np.abs(dd[0][inside]).max() < 0.02
    assert np.abs(x[0, 5:8][:, inside] - x[0, 0:3][:, inside]).mean() < 0.05
    # the flip fits the depth just as well (a face-on plane) but puts red where the query is blue
    assert np.abs(dd[1][inside]).max() < 0.02
    assert np.abs(x[1, 5:8][:, inside] - x[1, 0:3][:, inside]).mean() > 5 * np.abs(x[0, 5:8][:, inside] - x[0, 0:3][:, inside]).mean()
    # 5 cm too far: behind the observed surface by 5 cm / 14 cm diameter
    assert np.allclose(dd[2][inside], 0.05 / 0.14, atol=0.02)


def test_comparison_images_keep_the_nearest_point_of_each_cell():
    """Two layers of the reference land on the same cells: the front layer's colour and depth must win whichever
    comes first in the cloud; of points at the same depth, the last in the cloud's order (numpy's repeated writes)."""
    rgb, depth, mask, pts, cols = _box_scene()
    centre = pts.mean(0)
    front = pts[::4] - centre  # both layers within REFERENCE_POINTS: none is subsampled away
    back = front + [0.0, 0.0, 0.03]
    red, blue = np.tile([1.0, 0.0, 0.0], (len(front), 1)), np.tile([0.0, 0.0, 1.0], (len(front), 1))
    sq = scorer_query(depth, mask, colour_features(rgb, mask), K, 0.14, grid=16)
    right = np.eye(4)
    right[:3, 3] = centre
    for order in (slice(None), slice(None, None, -1)):
        cloud, colours = np.concatenate([front, back])[order], np.concatenate([red, blue])[order]
        sref = scorer_reference(cloud, colours, diameter=0.14)
        x = comparison_images(right[None], sref, sq)[0]
        seen = x[9] > 0
        assert seen.sum() > 20 and np.allclose(x[5:8][:, seen], np.array([1.0, 0.0, 0.0])[:, None])
    same = np.concatenate([front, front])  # every cell's points tie in depth: the second copy (blue) is written last
    x = comparison_images(right[None], scorer_reference(same, np.concatenate([red, blue]), 0.14), sq)[0]
    assert np.allclose(x[5:8][:, x[9] > 0], np.array([0.0, 0.0, 1.0])[:, None])


def test_scorer_forward_and_a_tiny_training_run_ranks_the_right_hypothesis():
    torch.manual_seed(0)
    model = HypothesisScorer(TINY)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, IMAGE_CHANNELS, 16, 16, generator=g)
    x[2, 9] = 1.0  # the right hypothesis differs visibly (full coverage)
    x[[0, 1, 3, 4, 5], 9] = 0.0
    base = torch.zeros(6)
    right = torch.tensor([False, False, True, False, False, False])
    out = model(x, base)
    assert out.shape == (6,) and out.dtype == torch.float32
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    first = listwise_loss(model(x, base), right).item()
    for _ in range(30):
        loss = listwise_loss(model(x, base), right)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.25 * first and int(model(x, base).argmax()) == 2


def _saved(tmp_path, weight=0.1):
    torch.manual_seed(1)
    model = HypothesisScorer(TINY).eval()
    return model, save_scorer(model, tmp_path / "sc", weight=weight, training={"epochs": 1})


def test_scorer_checkpoint_round_trip(tmp_path):
    model, (st, js) = _saved(tmp_path)
    loaded, meta = load_scorer(st)
    x, b = torch.rand(3, IMAGE_CHANNELS, 16, 16), torch.rand(3)
    with torch.no_grad():
        assert torch.allclose(model(x, b), loaded(x, b))
    assert meta["weight"] == 0.1 and meta["architecture"]["grid"] == 16 and meta["training"] == {"epochs": 1}


def test_bad_scorer_files_are_rejected_naming_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="absent.json"):
        load_scorer(tmp_path / "absent")
    _, (st, js) = _saved(tmp_path)
    good = js.read_text()
    st.write_bytes(st.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="sc.safetensors"):
        load_scorer(st)
    _, (st, js) = _saved(tmp_path)
    for edit, match in (({"format": "one2any_checkpoint"}, "not a"), ({"weight": -1}, "weight"),
                        ({"architecture": {"name": "comparison_cnn", "grid": 16, "widths": [8, 8, 8, 8, 8], "hidden": 8, "depth": 3}}, "depth"),
                        ({"architecture": {"name": "comparison_cnn", "grid": 16, "widths": [8, 8, 8, 8, 16], "hidden": 8}}, "do not match")):
        js.write_text(json.dumps({**json.loads(good), **edit}))
        with pytest.raises(CheckpointError, match=match):
            load_scorer(st)
    js.write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_scorer(st)


def test_bundled_scorer_loads_with_its_training_summary():
    if not DEFAULT_SCORER.exists():
        pytest.skip("no bundled scorer")
    model, meta = load_scorer()
    tr = meta["training"]
    assert meta["weight"] > 0 and tr["train_pools"] > 0 and tr["wall_s"] > 0 and "val_with" in tr
    assert all(d["objects"] == "train" for d in tr["train_datasets"]) and tr["val_dataset"]["objects"] == "val"


# --- the backend lends the term; the estimator adds it to the refined candidates -------------------------

def _backend(tmp_path, weight):
    from one2any_ros.core.backends.one2any import One2AnyBackend
    from test_model import _tiny_model

    save_checkpoint(_tiny_model(), tmp_path / "tiny")
    _saved(tmp_path, weight=weight)
    return One2AnyBackend(device="cpu", checkpoint=str(tmp_path / "tiny"), scorer=str(tmp_path / "sc"))


def test_scorer_term_decides_among_the_refined_candidates(tmp_path, monkeypatch):
    from one2any_ros.core.backends import one2any as one2any_backend
    from one2any_ros.core.estimator import PoseEstimator
    from one2any_ros.core.estimator_settings import EstimatorSettings
    from test_model import _sphere_view

    backend = _backend(tmp_path, weight=1.0)
    assert backend.describe()["scorer"] and backend.scorer_weight == 1.0
    built = []
    real_reference = one2any_backend.scorer_reference
    monkeypatch.setattr(one2any_backend, "scorer_reference", lambda *a: built.append(1) or real_reference(*a))
    # the scorer alone (the appearance term, on by default, restricts the choice to candidates geometry cannot tell
    # apart: test_appearance.py; the twins' own terms: test_twins.py)
    est = PoseEstimator(backend, settings=EstimatorSettings().with_updates(
        **{"search.num_start_rotations": 8, "appearance_weight": 0.0, "twin_top_k": 0}))
    est.record_pool = True
    est.set_reference(_sphere_view())
    r = est.estimate(_sphere_view(shift=(3, 1), seed=2))
    pool = est.last_pool
    term = pool.refined_term
    assert term is not None and term.shape == pool.refined_score.shape and np.isfinite(term).all()
    assert pool.chosen == int(np.argmax(pool.refined_score + term)) and "rerank" in r.timings_ms
    est.estimate(_sphere_view(shift=(1, 2), seed=3))
    assert len(built) == 1  # the splatted reference cloud is prepared once per reference
    # a term that prefers the verifier's worst candidate overrides it
    monkeypatch.setattr(backend, "score_hypotheses", lambda ref, q, T, s: -1e3 * (s - s.min()))
    est.estimate(_sphere_view(shift=(3, 1), seed=2))
    assert est.last_pool.chosen == int(np.argmin(est.last_pool.refined_score))


def test_scorer_at_weight_zero_changes_nothing(tmp_path):
    from one2any_ros.core.estimator import PoseEstimator
    from test_model import _sphere_view

    backend = _backend(tmp_path, weight=0.0)
    assert backend.describe()["scorer"] is None
    est = PoseEstimator(backend)
    est.record_pool = True
    est.set_reference(_sphere_view())
    r = est.estimate(_sphere_view(shift=(3, 1), seed=2))
    assert est.last_pool.refined_term is None and "rerank" not in r.timings_ms


# --- the training command's bookkeeping ------------------------------------------------------------------

def _pools(right_logit_sign):
    """Three pools of 4 hypotheses (2 refined): the verifier prefers a wrong refined candidate in the first two."""
    from one2any_ros.training.train_scorer import Pools

    scores = np.array([0.5, 0.4, 0.3, 0.2] * 3, np.float32)
    errors = np.array([0.5, 0.05, 0.5, 0.5, 0.5, 0.5, 0.5, 0.05, 0.05, 0.5, 0.5, 0.5], np.float32)
    pools = Pools({"images": np.zeros((12, IMAGE_CHANNELS, 4, 4), np.float16), "scores": scores, "errors": errors,
                   "counts": np.array([4, 4, 4]), "refined": np.array([2, 2, 2]), "rotation_deg": np.array([10.0, 70.0, 100.0]),
                   "obj_id": np.array([1, 2, 3])})
    logits = [right_logit_sign * np.where(pools.pool(i)[2] < 0.1, 1.0, -1.0) for i in range(3)]
    return pools, logits


def test_pool_bookkeeping_and_weight_choice():
    from one2any_ros.training.train_scorer import choice_recall, choose_weight

    pools, logits = _pools(+1.0)
    assert list(pools.rankable()) == [0, 1, 2]
    assert choice_recall(pools, logits, 0.0)["add_s_01d_recall"] == pytest.approx(1 / 3)  # only pool 2's top is right
    rep = choice_recall(pools, logits, 1.0)
    assert rep["add_s_01d_recall"] == pytest.approx(2 / 3)  # pool 1's right hypothesis is not a refined candidate
    assert rep["by_rotation_bin"]["60-90"]["right"] == 0 and rep["by_rotation_bin"]["0-30"]["right"] == 1
    w, table = choose_weight(pools, logits, [0.01, 0.1, 1.0])
    assert w == 0.1 and table["0.0"] == pytest.approx(1 / 3)  # 0.01 is too small to overturn a 0.1 gap; ties -> smaller
    w, _ = choose_weight(pools, *_pools(-1.0)[1:], [0.1, 1.0])
    assert w == 0.0  # a scorer that ranks backwards is never used


def test_bundled_scorer_is_used_only_with_the_network_whose_pools_it_ranked(tmp_path, monkeypatch):
    from one2any_ros.core.backends import one2any as one2any_backend
    from one2any_ros.core.backends.one2any import One2AnyBackend

    if not DEFAULT_SCORER.exists():
        pytest.skip("no bundled scorer")
    assert One2AnyBackend(device="cpu").describe()["scorer"]  # the bundled pair belongs together
    # a scorer trained on another network's pools, bundled next to this network: left out, and said why
    _, (st, js) = _saved(tmp_path)
    meta = json.loads(js.read_text())
    meta["training"]["network_sha256"] = "0" * 64
    js.write_text(json.dumps(meta))
    monkeypatch.setattr(one2any_backend, "DEFAULT_SCORER", st)
    d = One2AnyBackend(device="cpu").describe()
    assert d["scorer"] is None and "train-scorer" in d["scorer_note"]
    assert One2AnyBackend(device="cpu", scorer=str(st)).describe()["scorer"]  # asked for explicitly: used


def test_train_scorer_command_end_to_end(tmp_path):
    """One rendered scene of a training object: pools collected and cached, one epoch, metrics, curves, a loadable
    scorer; a resumed run reuses the cached pools and refuses to export without validation objects."""
    from one2any_ros.training.train_scorer import train_scorer

    spec = {"name": "one_scene", "objects": "train", "scenes": 1, "frames": 4, "max_rotation": 60, "seed": 99}
    over = {"data.root": str(tmp_path / "data"), "data.train": [spec], "data.select": spec, "data.val": None,
            "train.epochs": 1, "model.grid": 16, "model.widths": [8, 8, 8, 8, 8], "model.hidden": 8}
    out = tmp_path / "run"
    config = Path(__file__).resolve().parents[1] / "config" / "scorer_default.yaml"
    res = train_scorer(config, out_dir=str(out), overrides=over)
    pools = out / "pools_one_scene.npz"
    with np.load(pools, allow_pickle=False) as z:
        assert len(z["counts"]) == 3 and z["images"].shape[1:] == (IMAGE_CHANNELS, 16, 16)
        assert len(z["images"]) == z["counts"].sum() == len(z["errors"]) == len(z["poses"])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and np.isfinite(rows[0]["train_loss"]) and (out / "curves.png").stat().st_size > 0
    model, meta = load_scorer(res["scorer"])
    assert meta["training"]["train_pools"] == 3 and meta["weight"] == res["weight"]
    stamp = pools.stat().st_mtime_ns
    res = train_scorer(config, out_dir=str(out), overrides=over, resume=True, export=True)
    assert pools.stat().st_mtime_ns == stamp and res["exported"] is None and "validation" in res["not_exported_because"]
