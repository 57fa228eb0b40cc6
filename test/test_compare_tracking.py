"""The paired tracking comparison's statistics (tools/compare_tracking.py, docs/tracking.md "How wide a tracking
comparison's interval is"): the interval resamples whole sequences, and several draws per side are paired and
averaged. Synthetic rows: no estimation (one test renders a frame to check the families asked for)."""
import json
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
from tool_modules import load_tool

ct = load_tool("compare_tracking")


def test_flips_in_runs_widen_the_interval_beyond_the_object_frames_one():
    """20 sequences of 20 frames; B loses whole runs of frames in 4 of them: the cluster interval is wider than one
    that treats the 400 object-frames as independent, and both hold the mean."""
    sequence = np.repeat(np.arange(20), 20)
    d = np.zeros(400)
    for s in (2, 7, 11, 15):
        d[np.flatnonzero(sequence == s)[5:15]] = -1.0
    rng = np.random.default_rng(0)
    lo, hi = ct.sequence_interval(d, sequence, rng)
    frames = rng.choice(d, (4000, len(d))).mean(axis=1)
    f_lo, f_hi = np.percentile(frames, [2.5, 97.5])
    assert lo <= d.mean() <= hi
    assert hi - lo > 1.5 * (f_hi - f_lo), (lo, hi, f_lo, f_hi)


def test_no_difference_gives_a_zero_interval():
    assert ct.sequence_interval(np.zeros(30), np.repeat(np.arange(3), 10), np.random.default_rng(0)) == (0.0, 0.0)


def _rows(path: Path, right: list[bool]) -> str:
    """Two sequences ("0/0", "0/1") of len(right) / 2 frames each, all 10 deg from the reference."""
    half = len(right) // 2
    rows = [{"key": f"0/{i // half}/{i % half + 1}", "family": "shape_asymmetric", "mode": "track", "ms": 1.0,
             "confidence": 0.9 if r else 0.2, "verifier_confidence": None, "appearance": None, "source": "track",
             "right": r, "from_reference_deg": 10.0, "rot_deg": 1.0 if r else 40.0, "mm": 1.0}
            for i, r in enumerate(right)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_several_draws_are_paired_and_averaged(tmp_path, capsys):
    """A right everywhere in both draws; B wrong on 2 of 4 object-frames in one draw only: B - A is -0.25 (a frame's
    share of right draws), and the summaries pool both draws' rows."""
    a = ",".join(_rows(tmp_path / f"a{k}.jsonl", [True] * 4) for k in range(2))
    b = ",".join([_rows(tmp_path / "b0.jsonl", [True, False, True, False]), _rows(tmp_path / "b1.jsonl", [True] * 4)])
    ct.compare(Namespace(a=a, b=b))
    out = json.loads(capsys.readouterr().out)
    assert out["draws"] == 2 and out["n"] == 4
    assert out["A"]["published"] == 8 and out["B"]["published_wrong"] == 2
    assert out["bins"]["0-30"]["B_minus_A"] == pytest.approx(-0.25)
    assert out["bins"]["0-30"]["sequences"] == 2


def test_draws_must_pair_one_to_one(tmp_path):
    a = _rows(tmp_path / "a.jsonl", [True] * 4)
    with pytest.raises(SystemExit, match="pair them"):
        ct.compare(Namespace(a=a, b=f"{a},{a}"))


def test_families_choose_the_two_objects():
    """``run --families``: the two objects of each scene come from the families asked for (a change that reaches
    symmetric bodies - tracking's sphere turns - is measured on them too; they are scored by ADD-S)."""
    pytest.importorskip("pybullet")
    from one2any_ros.data.objects import TEXTURE_ONLY_SHAPES, family_of

    [(objs, frames)] = ct.sequences(1, 1, 3, families=("symmetric", "texture_only"))
    assert objs[0].symmetric and not objs[1].symmetric and len(frames) == 1
    assert family_of(objs[1].symmetric, objs[1].name in TEXTURE_ONLY_SHAPES) == "texture_only"
