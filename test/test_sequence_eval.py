"""``one2any render --sequences`` and ``one2any eval --sequence`` (issue 26): tracking over rendered BOP sequences with
an occluder and an exit, in frame order, beside one-shot estimation on the same frames."""
import csv
import json

import pytest

from one2any_ros.apps.cli import main


@pytest.fixture(scope="module")
def sequences(tmp_path_factory):
    pytest.importorskip("pybullet")
    root = tmp_path_factory.mktemp("sequences")
    assert main(["render", "--sequences", "--out", str(root), "--scenes", "1", "--frames", "36", "--objects", "val"]) == 0
    return root


def test_the_rendered_sequence_has_an_exit_and_an_occlusion(sequences):
    gt_info = json.loads((sequences / "test" / "000001" / "scene_gt_info.json").read_text())
    shown = [len(v) for v in gt_info.values()]
    assert shown[0] == 2 and min(shown) == 1  # both objects at the reference; one leaves the view for a while
    assert min(i["visib_fract"] for v in gt_info.values() for i in v) < 0.9  # the occluder passes in front


def test_sequence_eval_reports_tracking_beside_one_shot(sequences, tmp_path, capsys):
    assert main(["eval", "--sequence", "--dataset", str(sequences), "--out", str(tmp_path), "--backend", "classic"]) == 0
    r = json.loads((tmp_path / "report.json").read_text())
    assert r["masks"] == "reference" and r["sequences"] == 2 and r["exits"] == 1
    assert r["tracking_add_01d"] >= 0.8 and r["oneshot_add_01d"] >= 0.8, r
    assert r["published_while_away"] == 0 and r["longest_wrong_run"] <= 2, r
    assert r["never_reacquired"] == 0 and max(r["frames_to_reacquire"]) <= 5, r
    b = r["both_published"]
    assert b["object_frames"] > 0 and b["tracking"]["rot_deg"] < 10 and b["oneshot"]["rot_deg"] < 10, b
    assert r["oneshot_median_rot_deg"] is not None and set(r["confidence_auroc"]) == {"tracking", "oneshot"}
    assert set(r["verifier_confidence_auroc"]) == {"tracking", "oneshot"}
    assert (tmp_path / "sequence.png").is_file() and (tmp_path / "sequences.csv").is_file()
    with open(tmp_path / "sequences.csv") as fh:  # the published confidence never exceeds the verifier's
        rows = [row for row in csv.DictReader(fh) if row["published"] == "True"]
    assert rows and all(float(x["confidence"]) <= float(x["verifier_confidence"]) + 1e-9 for x in rows)
    assert "one-shot on the same frames" in capsys.readouterr().out
