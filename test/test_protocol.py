"""The protocol's shared definitions (one2any_ros.core.protocol) and that every user reads the same ones."""
import math

import numpy as np
import pytest

from one2any_ros.core import protocol


def test_bins_tile_0_to_180_in_order():
    lows = [lo for _, lo, _ in protocol.ROTATION_BINS]
    highs = [hi for _, _, hi in protocol.ROTATION_BINS]
    assert lows[0] == pytest.approx(0.0) and highs[-1] == pytest.approx(180.0)
    assert all(h == pytest.approx(lo) for h, lo in zip(highs[:-1], lows[1:]))
    assert protocol.BIN_NAMES == tuple(f"{lo:.0f}-{hi:.0f}" for _, lo, hi in protocol.ROTATION_BINS)
    assert set(protocol.DECISIVE_BINS) <= set(protocol.BIN_NAMES)


@pytest.mark.parametrize("deg,key", [(0, "0-30"), (29.99, "0-30"), (30, "30-60"), (119.9, "90-120"), (180, "120-180"),
                                     (math.nan, "120-180")])
def test_rotation_bin(deg, key):
    assert protocol.rotation_bin(deg) == key


def test_is_hit_is_strict_and_failures_miss():
    assert protocol.is_hit(0.0099, 0.1) is True
    assert protocol.is_hit(0.0101, 0.1) is False
    assert protocol.is_hit(math.inf, 0.1) is False and protocol.is_hit(math.nan, 0.1) is False
    np.testing.assert_array_equal(protocol.is_hit(np.array([0.05, 0.2, np.inf, np.nan], np.float32)),
                                  [True, False, False, False])  # errors already in diameters


def test_users_share_the_definitions():
    from one2any_ros.apps import bench
    from one2any_ros import evaluation as evaluate
    from one2any_ros.training import curves, promote, train_scorer
    from one2any_ros.core import metrics

    assert bench.STAGES is protocol.STAGES
    assert evaluate.rotation_bin is protocol.rotation_bin
    assert promote.DECISIVE_BINS is protocol.DECISIVE_BINS and train_scorer.DECISIVE_BINS is protocol.DECISIVE_BINS
    assert curves.CSV_COLUMNS[-len(protocol.BIN_NAMES):] == tuple(f"val_{b}" for b in protocol.BIN_NAMES)
    assert metrics.add_s_01d_hit(0.0099, 0.1) and not metrics.add_s_01d_hit(0.0101, 0.1)
