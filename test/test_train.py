"""Training: the pair sampler's targets, the loss, a tiny run that learns, and the train() loop's files/resume."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from one2any_ros.core.errors import CheckpointError, One2AnyError
from one2any_ros.core.geometry import transform_points
from one2any_ros.core.model.checkpoint import load_checkpoint, load_tensors
from one2any_ros.core.model.network import NetConfig, One2AnyNet

pytest.importorskip("pybullet")

from one2any_ros.training.pairs import PairConfig, PairSampler, covisible, symmetry_transforms  # noqa: E402
from one2any_ros.training.config import load_config  # noqa: E402
from one2any_ros.training.losses import compute_loss, match_cross_entropy  # noqa: E402
from one2any_ros.training.train import train  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TINY_YAML = REPO / "config" / "train_tiny.yaml"
TINY = NetConfig.from_dict(load_config(TINY_YAML)["model"])
PAIR_KEYS = ("ref", "ref_valid", "query", "gt", "gt_valid")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def pairs():
    cfg = PairConfig(input_size=TINY.input_size, output_stride=TINY.output_stride, pixel_diameter=(60.0, 200.0),
                     object_pool=2, pairs_per_object=50, max_variants=4)
    sampler = PairSampler(cfg, seed=5)
    try:
        yield [sampler.sample() for _ in range(4)]
    finally:
        sampler.close()


def test_pairs_are_consistent(pairs):
    n, g = TINY.input_size, TINY.input_size // TINY.output_stride
    for p in pairs:
        assert p["ref"].shape == (7, n, n) and p["query"].shape == (8, n, n) and p["gt"].shape == (4, 3, g, g)
        assert p["gt_valid"].sum() > 10
        assert p["gt_covisible"].shape == (1, g, g) and (0 <= p["gt_covisible"]).all() and (p["gt_covisible"] <= 1).all()
        assert 0.0 <= p["angle_deg"] <= 180.0
        # the target ROC (x s) carried by the ground-truth T_query_C lands on the query's own points
        m = (p["gt_valid"][0] > 0) & (p["q_points_valid"][0] > 0)
        pts_C = p["gt"][0][:, m].T * p["scale"]
        resid = np.linalg.norm(transform_points(p["T_query_C"][0], pts_C.astype(np.float64)) - p["q_points"][:, m].T, axis=1)
        assert np.median(resid) < 0.05 * p["diameter"]
        # the reference channels: ROC only where depth is valid, mask channel binary
        assert set(np.unique(p["ref"][6])) <= {0.0, 1.0}
        assert np.all(p["ref"][3:6][:, p["ref_valid"][0] == 0] == 0)


def test_symmetry_variants_are_symmetries():
    from one2any_ros.data.objects import make_object

    obj = make_object(3, symmetric=True)
    S = symmetry_transforms(obj, 12)
    assert np.allclose(S[0], np.eye(4)) and len(S) >= 2
    for T in S[1:]:  # each maps the surface onto itself (vertices land near surface samples)
        from scipy.spatial import cKDTree

        surf = obj.sample_surface(4000, seed=0)
        d, _ = cKDTree(surf).query(transform_points(T, obj.sample_surface(300, seed=1)))
        assert np.median(d) < 0.03 * obj.diameter


def test_loss_takes_the_best_symmetric_variant():
    g = 8
    gt = torch.randn(2, 3, 3, g, g)
    valid = torch.ones(2, 1, g, g)
    out = {"roc": gt[:, 2].clone(), "roc_match": gt[:, 2].clone(), "log_b": torch.full((2, 1, g, g), -3.0)}
    loss, parts = compute_loss(out, {"gt": gt, "gt_valid": valid}, {"beta": 0.1, "match_weight": 0.5, "conf_weight": 0.0})
    assert parts["loss_roc"] == pytest.approx(0.0, abs=1e-7) and parts["roc_err"] == pytest.approx(0.0, abs=1e-7)
    out["roc"] = out["roc"] + 0.5
    _, parts2 = compute_loss(out, {"gt": gt, "gt_valid": valid}, {"beta": 0.1, "conf_weight": 1.0})
    assert parts2["loss_roc"] > 0 and parts2["roc_err"] > 0


def test_covisible_is_what_the_reference_camera_saw():
    # the reference saw a plane at z = 1 m, filling its 64 x 64 image except the right quarter (mask off there)
    n = 64
    K = np.array([[60.0, 0, 32], [0, 60.0, 32], [0, 0, 1]])
    mask = np.ones((n, n), bool)
    mask[:, 48:] = False
    ref = {"K": K, "depth_clean": np.ones((n, n), np.float32), "mask": mask}
    pts = np.zeros((1, 3, 2, 3))  # 6 query pixels' points in the reference camera, one symmetry variant
    pts[0, :, 0, 0] = (0.0, 0.0, 1.0)  # on the seen surface
    pts[0, :, 0, 1] = (0.0, 0.0, 1.3)  # behind it: hidden from the reference camera
    pts[0, :, 0, 2] = (0.0, 0.0, 0.7)  # in front of it: not that surface
    pts[0, :, 1, 0] = (0.4, 0.0, 1.0)  # projects outside the reference's mask (u = 56)
    pts[0, :, 1, 1] = (5.0, 0.0, 1.0)  # outside the image
    pts[0, :, 1, 2] = (0.0, 0.0, -1.0)  # behind the camera
    got = covisible(pts, ref, diameter=0.2)
    assert got.tolist() == [[True, False, False], [False, False, False]]
    # a symmetric object: a pixel counts when some variant puts it on the seen surface
    two = np.concatenate([pts, pts], axis=0)
    two[1, :, 0, 1] = (0.0, 0.0, 1.0)
    assert covisible(two, ref, diameter=0.2).tolist() == [[True, True, False], [False, False, False]]


def test_rendered_pairs_are_less_covisible_at_wide_baselines():
    cfg = PairConfig(input_size=TINY.input_size, output_stride=TINY.output_stride, pixel_diameter=(60.0, 200.0),
                     object_pool=2, pairs_per_object=50, max_variants=1, occluder_prob=0.0)
    sampler = PairSampler(cfg, seed=11)
    try:
        def share(angle):
            ps = [sampler.sample(angle_deg=angle) for _ in range(4)]
            return np.mean([p["gt_covisible"][0][p["gt_valid"][0] > 0].mean() for p in ps])

        near, far = share(5.0), share(175.0)
    finally:
        sampler.close()
    assert near > 0.6 and far < near - 0.2, (near, far)


def test_noncovisible_weight_discounts_pixels_the_reference_never_saw():
    g = 4
    gt = torch.zeros(1, 1, 3, g, g)
    valid = torch.ones(1, 1, g, g)
    covis = torch.zeros(1, 1, g, g)
    covis[..., :2] = 1.0  # left half seen by the reference
    roc = torch.zeros(1, 3, g, g)
    roc[..., 2:] = 1.0  # wrong only where the reference never looked
    out = {"roc": roc, "roc_match": roc.clone(), "log_b": torch.zeros(1, 1, g, g)}
    batch = {"gt": gt, "gt_valid": valid, "gt_covisible": covis}
    _, full = compute_loss(out, batch, {"conf_weight": 0.0})  # default weight 1: every pixel counts
    _, seen = compute_loss(out, batch, {"conf_weight": 0.0, "noncovisible_weight": 0.0})
    _, some = compute_loss(out, batch, {"conf_weight": 0.0, "noncovisible_weight": 0.5})
    assert full["loss_roc"] > some["loss_roc"] > seen["loss_roc"] and seen["loss_roc"] == pytest.approx(0.0, abs=1e-7)
    # the logged error still covers every pixel ...
    assert seen["roc_err"] == pytest.approx(full["roc_err"], rel=1e-6) and full["roc_err"] > 0
    assert seen["roc_err_covisible"] == pytest.approx(0.0, abs=1e-7)  # ... and its co-visible part is reported on its own


def _matching_case():
    """A 4x4 reference input pooled to 2x2 cells (stride 2), each cell a distinct ROC; a 2x2 query whose cell i
    shows reference cell 3 - i; the reference's cell 3 has no valid pixel."""
    ref = torch.zeros(1, 7, 4, 4)
    cell_roc = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    for j in range(4):
        r, c = divmod(j, 2)
        ref[0, 3:6, 2 * r:2 * r + 2, 2 * c:2 * c + 2] = cell_roc[j][:, None, None]
    ref[0, 6] = 1.0
    ref_valid = torch.ones(1, 1, 4, 4)
    ref_valid[0, 0, 2:, 2:] = 0.0  # cell 3: no depth
    gt = cell_roc[[3, 2, 1, 0]].T.reshape(1, 3, 2, 2)  # query cell i carries reference cell 3 - i's ROC
    return ref, ref_valid, gt


def test_match_cross_entropy_rewards_attention_on_the_cells_that_show_the_point():
    ref, ref_valid, gt = _matching_case()
    use = torch.ones(1, 1, 2, 2)
    right = torch.full((1, 4, 4), -5.0)
    for i in range(4):
        right[0, i, 3 - i] = 5.0
    right[..., 3] = float("-inf")  # invalid reference cell, as the network masks it
    wrong = right.flip(-1).clone()
    wrong[..., 3] = float("-inf")
    ce_r, n, top1_r = match_cross_entropy(right, gt, use, ref, ref_valid, band=0.15)
    ce_w, _, top1_w = match_cross_entropy(wrong, gt, use, ref, ref_valid, band=0.15)
    assert int(n) == 3  # query cell 0 shows the reference cell without depth: no positive, skipped
    assert float(ce_r) < 0.01 and float(top1_r) == 1.0
    assert float(ce_w) > 5.0 and float(top1_w) == 0.0
    use[0, 0, 0, 1] = 0.0  # a cell the reference never saw is not trained
    assert int(match_cross_entropy(right, gt, use, ref, ref_valid, band=0.15)[1]) == 2
    # in compute_loss: logged whenever it can be computed, added to the loss only with a weight
    out = {"roc": gt.clone(), "roc_match": gt.clone(), "log_b": torch.zeros(1, 1, 2, 2), "match_logits": wrong}
    batch = {"gt": gt[:, None], "gt_valid": torch.ones(1, 1, 2, 2), "gt_covisible": torch.ones(1, 1, 2, 2),
             "ref": ref, "ref_valid": ref_valid}
    loss0, parts0 = compute_loss(out, batch, {"conf_weight": 0.0})
    loss1, parts1 = compute_loss(out, batch, {"conf_weight": 0.0, "match_ce_weight": 0.5})
    assert parts0["match_top1"] == 0.0 and parts0["loss_match_ce"] == pytest.approx(float(ce_w), rel=1e-5)
    assert float(loss1 - loss0) == pytest.approx(0.5 * float(ce_w), rel=1e-5, abs=1e-5)  # float32 difference


def test_tiny_training_lowers_the_loss_on_a_fixed_batch(pairs):
    torch.manual_seed(0)
    model = One2AnyNet(TINY)
    batch = {k: torch.from_numpy(np.stack([p[k] for p in pairs])) for k in PAIR_KEYS}
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(25):
        out = model(batch["ref"], batch["ref_valid"], batch["query"])
        loss, parts = compute_loss(out, batch, {"beta": 0.1, "match_weight": 0.5, "conf_weight": 0.1})
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(parts["loss_roc"])
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3]), losses


def test_train_writes_outputs_and_resumes(tmp_path):
    out = tmp_path / "run"
    res = train(TINY_YAML, device="cpu", out_dir=out, progress=False)
    assert res["steps"] == 6
    for f in ("checkpoint.safetensors", "checkpoint.json", "best.safetensors", "train_state.json",
              "train_state.safetensors", "metrics.jsonl", "metrics.csv", "curves.png", "config.yaml"):
        assert (out / f).is_file(), f
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any(r["kind"] == "val" and "val_pose_acc" in r for r in rows)
    assert any(r["kind"] == "train" and np.isfinite(r["loss"]) for r in rows)
    model, meta = load_checkpoint(out / "checkpoint")
    assert meta["training"]["steps"] == 6 and meta["input_size"] == TINY.input_size
    # an existing run is never silently overwritten
    with pytest.raises(One2AnyError, match="resume"):
        train(TINY_YAML, device="cpu", out_dir=out, progress=False)
    # rows logged after the saved state (a run killed between two saves) are dropped on resume, not run twice
    with open(out / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps({"kind": "train", "step": 7, "samples": 28, "loss": 9.0}) + "\n")
    res2 = train(TINY_YAML, device="cpu", out_dir=out, resume=True, overrides={"train.max_steps": 8}, progress=False)
    assert res2["steps"] == 8 and res2["samples"] == 8 * 4
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "train"] == sorted(r["step"] for r in rows if r["kind"] == "train")
    assert all(r.get("loss") != 9.0 for r in rows)
    assert len((out / "metrics.csv").read_text().splitlines()) == len(rows) + 1
    st = json.loads((out / "train_state.json").read_text())
    assert st["step"] == 8 and st["resumes"] == 1
    # the committed run state stays small: Adam's moments in bfloat16, cast back to fp32 on resume
    opt_t = load_tensors(out / "train_state.safetensors")
    moments = [t for k, t in opt_t.items() if k.endswith(("exp_avg", "exp_avg_sq"))]
    assert moments and all(t.dtype == torch.bfloat16 for t in moments)


def test_resume_rejects_another_architecture(tmp_path):
    out = tmp_path / "run"
    train(TINY_YAML, device="cpu", out_dir=out, overrides={"train.max_steps": 1, "data.val_pairs": 0}, progress=False)
    with pytest.raises(CheckpointError, match="architecture"):
        train(TINY_YAML, device="cpu", out_dir=out, resume=True, overrides={"model.match_dim": 8}, progress=False)


def test_warm_start_records_its_parent_and_rejects_another_architecture(tmp_path):
    parent = tmp_path / "parent"
    train(TINY_YAML, device="cpu", out_dir=parent, overrides={"train.max_steps": 2, "data.val_pairs": 0}, progress=False)
    child = tmp_path / "child"
    train(TINY_YAML, device="cpu", out_dir=child, progress=False,
          overrides={"train.max_steps": 1, "data.val_pairs": 0, "train.init_from": str(parent / "checkpoint")})
    _, meta = load_checkpoint(child / "checkpoint")
    assert meta["training"]["init_from"] == str(parent / "checkpoint") and meta["training"]["init_samples"] == 2 * 4
    with pytest.raises(CheckpointError, match="architecture"):
        train(TINY_YAML, device="cpu", out_dir=tmp_path / "other", progress=False,
              overrides={"train.max_steps": 1, "data.val_pairs": 0, "model.match_dim": 8,
                         "train.init_from": str(parent / "checkpoint")})


def test_non_finite_steps_are_skipped_and_a_diverged_run_stops_with_a_reason(tmp_path, monkeypatch):
    """A NaN loss must never reach the weights; a run that only produces NaN stops with a clear error."""
    import one2any_ros.training.train as tr

    real = tr.compute_loss
    monkeypatch.setattr(tr, "compute_loss", lambda out, batch, cfg: (lambda l, p: (l * float("nan"), p))(*real(out, batch, cfg)))
    out = tmp_path / "run"
    with pytest.raises(One2AnyError, match="diverged"):
        train(TINY_YAML, device="cpu", out_dir=out, progress=False,
              overrides={"train.max_steps": 20, "train.max_bad_steps": 3, "data.val_pairs": 0, "train.checkpoint_minutes": 0.0})
    model, _ = load_checkpoint(out / "checkpoint")  # saved after the skipped steps: still the initial, finite weights
    assert all(torch.isfinite(t).all() for t in model.state_dict().values())


def test_config_errors_are_named(tmp_path):
    with pytest.raises(One2AnyError, match="does not exist"):
        load_config(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("modle: {}\n")
    with pytest.raises(One2AnyError, match="unknown sections"):
        load_config(bad)
    bad.write_text("model: {input_size: 30}\n")
    with pytest.raises(ValueError, match="input_size"):
        load_config(bad)


@pytest.mark.parametrize("path", sorted((REPO / "config").glob("train_*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_training_config_builds_its_model_and_sampler(path):
    """A config a user is told to run must not fail after minutes of setup: its network and sampler build,
    and one forward pass gives the output grid the sampler's targets use."""
    from one2any_ros.training.config import pair_config

    cfg = load_config(path)
    net = NetConfig.from_dict(cfg["model"])
    pc = pair_config(cfg)
    assert (pc.input_size, pc.output_stride) == (net.input_size, net.output_stride)
    n = net.input_size
    out = One2AnyNet(net)(torch.rand(1, 7, n, n), torch.ones(1, 1, n, n), torch.rand(1, 8, n, n))
    assert out["roc"].shape == (1, 3, net.output_size, net.output_size)


def test_sigterm_saves_the_run_state_and_exits_cleanly(tmp_path):
    """A background run stopped by SIGTERM (a session ending, ``kill``) keeps its progress for --resume."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "one2any_ros.apps.cli", "train", "--config", str(TINY_YAML), "--device", "cpu",
           "--out", str(out), "--set", "train.max_steps=100000", "--set", "train.val_every=100000"]
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (out / "metrics.jsonl").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)  # the first logged steps: training is under way
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "run state is saved" in err and "Traceback" not in err
    st = json.loads((out / "train_state.json").read_text())
    assert st["step"] >= 2 and not st["final"]
    load_checkpoint(out / "checkpoint")  # the weights at that step load


def test_cpu_and_gpu_configs_train_the_same_committed_run():
    """config/train_cpu.yaml and config/train_gpu.yaml continue one run (checkpoints/train/): a resume checks the
    architecture, so their model sections must stay identical."""
    cpu, gpu = load_config(REPO / "config" / "train_cpu.yaml"), load_config(REPO / "config" / "train_gpu.yaml")
    assert cpu["model"] == gpu["model"]
    assert cpu["out_dir"] == gpu["out_dir"] == "checkpoints/train"
    assert cpu["data"]["sampler"] | {"renderer": None} == gpu["data"]["sampler"] | {"renderer": None}


def test_wide_rotation_sampling_draws_from_the_wide_part_of_the_range():
    cfg = PairConfig(max_rotation_deg=120.0, wide_rotation_prob=1.0, wide_rotation_deg=60.0)
    sampler = PairSampler(cfg, seed=0)  # _angle renders nothing
    rng = np.random.default_rng(0)
    assert min(sampler._angle(rng) for _ in range(200)) >= 60.0
    half = PairSampler(PairConfig(max_rotation_deg=120.0, wide_rotation_prob=0.5, wide_rotation_deg=60.0), seed=0)
    share = np.mean([half._angle(rng) >= 60.0 for _ in range(2000)])
    assert 0.7 < share < 0.8  # 0.5 + 0.5 * 0.5 = 0.75
    with pytest.raises(ValueError, match="wide_rotation"):
        PairConfig(max_rotation_deg=90.0, wide_rotation_deg=100.0)
