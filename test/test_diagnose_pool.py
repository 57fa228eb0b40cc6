"""tools/diagnose_pool.py on the validation suite's parts (issue 28): it takes a suite run's settings, and a query an
occluder left with too few object pixels counts as a miss instead of ending the run."""
import argparse
import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tool():
    sys.path.insert(0, str(REPO / "tools"))
    try:
        yield importlib.import_module("diagnose_pool")
    finally:
        sys.path.remove(str(REPO / "tools"))


def _args(**kw):
    base = dict(backend="classic", checkpoint=None, query_rolls=None, min_rotation=0.0, settings="{}")
    return argparse.Namespace(**{**base, **kw})


def test_settings_reach_the_estimator(tool):
    est = tool._estimator(_args(settings='{"twin_top_k": 0, "search.icp_keep": 7}'))
    assert est.settings.twin_top_k == 0 and est.settings.search.icp_keep == 7


def test_a_query_with_too_few_object_pixels_is_a_miss(tool):
    h, w = 48, 64
    mask = np.zeros((h, w), bool)
    mask[10:14, 10:15] = True  # 20 pixels: fewer than a view needs
    img = {"rgb": np.zeros((h, w, 3), np.uint8), "depth": np.full((h, w), 0.5, np.float32), "mask": mask,
           "K": np.array([[60.0, 0, 32], [0, 60.0, 24], [0, 0, 1]])}
    per_bin = {}
    tool._diagnose_query(_args(), est=argparse.Namespace(last_pool=None), img=img, T_gt=np.eye(4), m=None, T_C_O=np.eye(4), per_bin=per_bin,
                         rel=100.0)
    (row,) = per_bin.values()
    assert row["n"] == 1 and row["chosen"] == row["in_pool"] == 0
