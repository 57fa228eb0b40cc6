"""Accuracy of the SHIPPED default (issue 25): ``auto`` = the bundled learned network with its learned hypothesis
scorer and the appearance term, on fixed rendered held-out pairs (test/accuracy_pairs.py: test-split objects,
never trained on; 0-120 deg between reference and query; two families: shape-asymmetric objects, and
texture-only ones, shape-symmetric bodies told apart only by their texture).

The floors are MEASURED on these pairs (seed PAIR_SEED, this repo's bundled checkpoint and scorer) and set two
pairs below, so a BLAS kernel or another machine rounding one or two pairs the other way does not fail them, while
a real loss does. If a new bundled network or a change of the pipeline moves them, re-measure (the assertion
messages print every number) and set them again: never lower a floor to make a regression pass.

Measured (2 CPU cores, OpenBLAS default and OPENBLAS_CORETYPE=Haswell alike), ADD @ 0.1 d hits of N_PER_FAMILY:
    auto     shape_asymmetric 29 (0-30 deg: 10/10)   texture_only 25 (0-30 deg: 10/10)   overall 54/80
    classic  shape_asymmetric 29                    texture_only 25                     overall 54/80
    (the same pairs right but two texture-only ones: auto gains one at 60-90 deg, classic one at 30-60 deg)
    learned RANSAC hypotheses, pairs under 30 deg: a hypothesis within 15 deg of the truth on 19 of 20
"""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # tens of seconds of estimates
pytest.importorskip("pybullet")
pytest.importorskip("torch")

from accuracy_pairs import Outcome, render_pairs, run_pairs  # noqa: E402 (pytest puts test/ on sys.path)
from one2any_ros.core.backends import create_backend  # noqa: E402
from one2any_ros.core.estimator import PoseEstimator
from one2any_ros.core.estimator_settings import EstimatorSettings

FAMILIES = ("shape_asymmetric", "texture_only")
N_PER_FAMILY = 40  # pairs per family: 10 per 30 deg bin; ~15-25 s of estimates per backend on 2 busy cores
PAIR_SEED = 0
EASY_DEG = 30.0
# ADD @ 0.1 d hits (of N_PER_FAMILY; overall of 2 x N_PER_FAMILY): measured minus two pairs (module docstring)
AUTO_FLOOR = {"shape_asymmetric": 27, "texture_only": 23}
AUTO_FLOOR_OVERALL = 52
AUTO_EASY_FLOOR = 8  # of the 10 pairs under EASY_DEG, per family (measured 10)
# the network's own RANSAC hypotheses on the pairs under EASY_DEG (20): one within LEARNED_RIGHT_DEG of the truth
LEARNED_RIGHT_DEG = 15.0  # a random rotation is that close with probability ~0.001 (4 tries: ~0.4 %)
LEARNED_EASY_FLOOR = 17  # measured 19 of 20


@pytest.fixture(scope="module")
def pairs():
    return {f: render_pairs(f, N_PER_FAMILY, seed=PAIR_SEED) for f in FAMILIES}


@pytest.fixture(scope="module")
def auto_backend():
    return create_backend("auto")


@pytest.fixture(scope="module")
def auto_encoder_calls():
    """How often the auto run encoded a reference (filled by ``auto_run``)."""
    return []


@pytest.fixture(scope="module")
def auto_run(pairs, auto_backend, auto_encoder_calls):
    est = PoseEstimator(auto_backend)
    n0 = auto_backend.encoder_calls
    run = {f: run_pairs(est, ps) for f, ps in pairs.items()}
    auto_encoder_calls.append(auto_backend.encoder_calls - n0)
    return run


@pytest.fixture(scope="module")
def classic_run(pairs):
    est = PoseEstimator("classic")
    return {f: run_pairs(est, ps) for f, ps in pairs.items()}


def _hits(outcomes: list[Outcome], max_deg: float = 180.0) -> int:
    return sum(o.hit for o in outcomes if o.pair.angle_deg < max_deg)


def _table(run: dict[str, list[Outcome]]) -> str:
    """Hits per family and 30 deg bin, and the per-pair hit string (for the assertion messages)."""
    lines = []
    for f, outs in run.items():
        bins = " ".join(f"{lo}-{lo + 30}: {sum(o.hit for o in outs if lo <= o.pair.angle_deg < lo + 30)}/"
                        f"{sum(1 for o in outs if lo <= o.pair.angle_deg < lo + 30)}" for lo in (0, 30, 60, 90))
        lines.append(f"{f}: {_hits(outs)}/{len(outs)} ({bins}) failures {sum(not o.ok for o in outs)} "
                     f"hits {''.join('1' if o.hit else '0' for o in outs)}")
    return "\n".join(lines)


def test_auto_is_the_bundled_learned_backend(auto_backend):
    """``auto`` resolves to the learned backend with the bundled checkpoint and scorer: not a silent fallback to
    classic, not another file, and the scorer is the one trained on this network's pools."""
    from one2any_ros.core.model.checkpoint import DEFAULT_CHECKPOINT
    from one2any_ros.core.model.scorer import DEFAULT_SCORER

    b = auto_backend
    assert b.name == "one2any" and not b.fallback_reason, b.describe()
    assert b.checkpoint_path == str(DEFAULT_CHECKPOINT)
    bundled = json.loads(DEFAULT_CHECKPOINT.with_suffix(".json").read_text())
    assert b.config["sha256"] == bundled["sha256"] == hashlib.sha256(DEFAULT_CHECKPOINT.read_bytes()).hexdigest()
    assert b.scorer is not None and b.scorer_weight > 0 and b.scorer_path == str(DEFAULT_SCORER), b.describe()
    assert b.scorer_meta["training"]["network_sha256"] == b.config["sha256"]
    assert b.describe()["scorer"] == str(DEFAULT_SCORER)
    assert EstimatorSettings().appearance_weight > 0  # the appearance term is on by default


def test_learned_path_ran_on_every_pair(auto_run, auto_encoder_calls):
    """Every estimate went through the network (its stage timings, its RANSAC hypotheses in the pool) and the
    learned scorer's re-ranking: nothing fell back to classic or skipped the network on the way."""
    n_hyp = EstimatorSettings().search.ransac_hypotheses
    n_pairs = 0
    for outs in auto_run.values():
        for o in outs:
            n_pairs += 1
            if not o.ok:
                continue
            res, pool = o.result, o.pool
            assert res.backend == "one2any"
            assert res.timings_ms.get("network", 0.0) > 0 and res.timings_ms.get("ransac", 0.0) > 0, res.timings_ms
            assert "rerank" in res.timings_ms and "appearance" in res.timings_ms, res.timings_ms
            assert pool.refined_term is not None  # the scorer's term joined the final ranking
            assert 1 <= len(o.learned_rot_err_deg) <= n_hyp, pool.sources
            assert "grid" in pool.sources and res.num_hypotheses == len(pool.sources)
    assert auto_encoder_calls == [n_pairs]  # the ROPE encoder ran once per reference
    assert sum(o.ok for outs in auto_run.values() for o in outs) >= n_pairs - 2


def test_auto_accuracy_floors(auto_run):
    """ADD @ 0.1 d hits of the default per family, overall, and on the easy pairs (under 30 deg)."""
    msg = "auto:\n" + _table(auto_run)
    for f in FAMILIES:
        assert _hits(auto_run[f]) >= AUTO_FLOOR[f], msg
        assert _hits(auto_run[f], EASY_DEG) >= AUTO_EASY_FLOOR, msg
    assert sum(_hits(outs) for outs in auto_run.values()) >= AUTO_FLOOR_OVERALL, msg


def test_auto_not_worse_than_classic(auto_run, classic_run):
    """The learned backend must not cost accuracy: on the same pairs the default is right at least as often as the
    training-free ``classic``, overall and per family, within ONE pair. Why one: both pool the same grid search, so
    they agree on nearly every pair (measured: the same 54 of 80, on 78 pairs the same answer, the other two split
    one each way, identical under OPENBLAS_CORETYPE=Haswell); a pair that two candidates nearly tie on may turn on
    another machine's float rounding, in either backend. Learning's measured gain is of that size too (DESIGN 8:
    +0.015 pooled over 735 queries; on other seeds of these pairs 0 to +2 of 80), so this guards against the
    learned path making the default worse, not for its gain: a loss of two pairs fails."""
    msg = f"auto:\n{_table(auto_run)}\nclassic:\n{_table(classic_run)}"
    auto_total = sum(_hits(outs) for outs in auto_run.values())
    classic_total = sum(_hits(outs) for outs in classic_run.values())
    assert auto_total >= classic_total - 1, msg
    for f in FAMILIES:
        assert _hits(auto_run[f]) >= _hits(classic_run[f]) - 1, msg


def test_learned_hypotheses_right_on_easy_pairs(auto_run):
    """The network itself, not the grid it is pooled with: on the pairs under 30 deg its own RANSAC hypotheses
    (before any refinement) include one within 15 deg of the truth on most pairs. Broken predictions, a broken
    RANSAC or hypotheses dropped on the way fail here even when the pooled grid search keeps the final poses right."""
    easy = [o for outs in auto_run.values() for o in outs if o.pair.angle_deg < EASY_DEG and o.ok]
    best = [min(o.learned_rot_err_deg, default=180.0) for o in easy]
    right = sum(b < LEARNED_RIGHT_DEG for b in best)
    assert right >= LEARNED_EASY_FLOOR, f"{right}/{len(easy)} right; best learned rotation errors (deg): " \
                                        f"{np.round(best, 1).tolist()}"
    assert float(np.median(best)) < 10.0, np.round(best, 1).tolist()


def test_learned_failure_is_not_swallowed(pairs, auto_backend, monkeypatch):
    """An error inside the network's forward pass reaches the caller; the estimator does not quietly answer from
    the grid alone."""
    p = pairs["shape_asymmetric"][0]
    est = PoseEstimator(auto_backend)
    est.set_reference(p.ref)

    def broken(*a, **k):
        raise RuntimeError("decoder broke")

    monkeypatch.setattr(auto_backend.model, "decode", broken)
    with pytest.raises(RuntimeError, match="decoder broke"):
        est.estimate(p.query)
