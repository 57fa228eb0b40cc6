"""What eval reports about the confidence and about symmetry errors (report.json keys confidence_auroc,
precision_at_recall_0.8, symmetry_errors, by_family), on hand-made records whose answers are known."""
from __future__ import annotations

import numpy as np
import pytest

from one2any_ros.core import metrics
from one2any_ros.evaluation import EvalModel, summarize


def test_auroc_is_the_chance_a_right_pose_outranks_a_wrong_one():
    assert metrics.confidence_auroc([0.9, 0.8, 0.3, 0.2], [True, True, False, False]) == pytest.approx(1.0)
    assert metrics.confidence_auroc([0.9, 0.8, 0.3, 0.2], [False, False, True, True]) == pytest.approx(0.0)
    assert metrics.confidence_auroc([0.5, 0.5, 0.5, 0.5], [True, False, True, False]) == pytest.approx(0.5)  # ties
    # 3 right x 2 wrong pairs; the right 0.4 is below both wrong ones: 4 of 6 pairs ordered right
    assert metrics.confidence_auroc([0.9, 0.7, 0.4, 0.6, 0.5], [1, 1, 1, 0, 0]) == pytest.approx(4 / 6)
    assert metrics.confidence_auroc([0.9, 0.8], [True, True]) is None  # no wrong pose: undefined
    rng = np.random.default_rng(0)
    c = rng.random(2000)
    assert abs(metrics.confidence_auroc(c, rng.random(2000) < 0.5) - 0.5) < 0.05  # noise ranks at chance


def test_precision_at_recall_keeps_the_confident_poses():
    conf = [0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    right = [1, 1, 0, 1, 1, 0, 0, 1, 0, 0]  # 5 right; 80 % = 4 of them: threshold 0.7 keeps 5 poses, 4 right
    precision, thr = metrics.precision_at_recall(conf, right, 0.8)
    assert thr == pytest.approx(0.7) and precision == pytest.approx(4 / 5)
    assert metrics.precision_at_recall([0.3], [False]) == (None, None)


def test_reliability_bins_count_and_share():
    rel = metrics.reliability_bins([0.05, 0.15, 0.95, 0.91, 1.0], [0, 1, 1, 0, 1], bins=10)
    assert rel["n"][0] == 1 and rel["n"][1] == 1 and rel["n"][9] == 3 and sum(rel["n"]) == 5
    assert rel["right_share"][9] == pytest.approx(2 / 3) and rel["right_share"][5] is None


def record(obj_id, *, hit, adds_hit=None, conf=0.5, ok=True, rel=10.0, d=0.1):
    """A query record as evaluate._run_query writes it (errors in metres, diameter d)."""
    add = 0.5 * 0.1 * d if hit else 0.5 * d
    adds = 0.5 * 0.1 * d if (hit or adds_hit) else 0.5 * d
    from one2any_ros.evaluation import rotation_bin

    return {"ok": ok, "reason": None if ok else "low_confidence", "obj_id": obj_id, "bin": rotation_bin(rel),
            "hit": hit and ok, "hit_add": hit and ok, "err_m": add if ok else np.inf, "add_m": add if ok else np.inf,
            "adds_m": adds if ok else np.inf, "rot_err_deg": 1.0 if ok else 180.0, "trans_err_m": 0.001 if ok else np.inf,
            "diameter_m": d, "confidence": conf if ok else None, "latency_ms": 10.0}


def model(family):
    return EvalModel(pts=np.zeros((1, 3)), diameter_m=0.1, symmetric=False, syms=None, family=family)


def test_summary_reports_symmetry_errors_families_and_confidence():
    records = [
        record(1, hit=True, conf=0.9), record(1, hit=True, conf=0.8, rel=100.0),
        record(1, hit=False, adds_hit=True, conf=0.6, rel=100.0),  # a flip: right by ADD-S, wrong by ADD
        record(2, hit=False, conf=0.3), record(2, hit=True, conf=0.7),
        record(2, hit=False, ok=False),  # a failure: a miss, but no pose, so no symmetry error
    ]
    rep = summarize(records, {1: model("texture_box"), 2: model("asymmetric")})
    assert rep["symmetry_errors"] == {"symmetry_errors": 1, "symmetry_error_share": pytest.approx(1 / 6),
                                      "symmetry_share_of_misses": pytest.approx(1 / 3)}
    fam = rep["by_family"]
    assert set(fam) == {"texture_box", "asymmetric"}
    assert fam["texture_box"]["n"] == 3 and fam["texture_box"]["add_s_01d_recall"] == pytest.approx(2 / 3)
    assert fam["texture_box"]["by_rotation_bin"]["90-120"] == pytest.approx(0.5)
    assert fam["texture_box"]["symmetry_errors"] == 1 and fam["asymmetric"]["symmetry_errors"] == 0
    # 5 poses: right 0.9 0.8 0.7, wrong 0.6 0.3 -> every right above every wrong
    assert rep["confidence_auroc"] == pytest.approx(1.0)
    assert rep["precision_at_recall_0.8"] == pytest.approx(1.0)
    assert sum(rep["confidence_reliability"]["n"]) == 5
    assert summarize(records[:2], {})["by_family"] == {}  # a BOP dataset without families


def test_family_comes_from_models_info_or_the_shape_symmetry():
    from one2any_ros.evaluation import info_family

    assert info_family({"shape_symmetry": "continuous"}, False) == "texture_only"
    assert info_family({"shape_symmetry": "discrete"}, True) == "symmetric"
    assert info_family({"shape_symmetry": "none"}, False) == "shape_asymmetric"
    assert info_family({}, False) is None  # a BOP dataset of someone else's
