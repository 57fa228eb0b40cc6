"""Promotion of a trained checkpoint to the bundled model: the decision rule (one2any_ros.training.promote.decide)."""
import pytest

from one2any_ros.training.promote import decide


def _report(overall, b6090, b90120, b030=0.9):
    bins = {"0-30": b030, "30-60": 0.8, "60-90": b6090, "90-120": b90120, "120-180": None}
    return {"add_s_01d_recall": overall, "by_rotation_bin": {k: {"n": 0 if v is None else 10, "add_s_01d_recall": v}
                                                             for k, v in bins.items()}}


CLASSIC = _report(0.70, 0.66, 0.49)


def test_promotes_only_a_variant_that_beats_classic_overall_and_at_wide_baselines():
    d = decide(CLASSIC, {"one2any_no_roc": _report(0.71, 0.66, 0.50), "one2any_roc": _report(0.74, 0.70, 0.55)})
    assert d["promote"] and d["variant"] == "one2any_roc"
    assert d["comparison"]["90-120"] == {"classic": 0.49, "one2any": 0.55}


@pytest.mark.parametrize("variant", [
    _report(0.75, 0.66, 0.60),  # a tie at 60-90 adds nothing but latency
    _report(0.75, 0.70, 0.45),  # better overall, worse at 90-120
    _report(0.69, 0.70, 0.60),  # better at wide baselines, worse overall
])
def test_keeps_classic_when_the_learned_backend_does_not_win_everywhere(variant):
    assert not decide(CLASSIC, {"one2any_roc": variant})["promote"]


def test_the_best_variant_overall_is_the_candidate_and_none_is_an_error():
    d = decide(CLASSIC, {"a": _report(0.60, 0.9, 0.9), "b": _report(0.72, 0.5, 0.5)})
    assert d["variant"] == "b" and not d["promote"]
    with pytest.raises(ValueError):
        decide(CLASSIC, {})


def test_a_tie_goes_to_the_cheaper_variant():
    from one2any_ros.training.promote import VARIANTS

    same = _report(0.75, 0.70, 0.55)
    d = decide(CLASSIC, {name: same for name in VARIANTS})
    assert d["variant"] == "one2any_no_roc" and VARIANTS[d["variant"]] == (False, 1)  # no ROC term, one decoder pass


def test_a_candidate_must_also_beat_a_bundled_model_that_clears_the_bar():
    candidate = {"one2any_no_roc": _report(0.74, 0.70, 0.55)}
    assert decide(CLASSIC, candidate)["promote"]
    stronger = _report(0.76, 0.68, 0.52)  # clears the bar and is better overall: keep it
    d = decide(CLASSIC, candidate, stronger)
    assert not d["promote"] and d["comparison"]["overall"]["bundled"] == 0.76
    assert not decide(CLASSIC, candidate, _report(0.74, 0.69, 0.51))["promote"]  # a tie overall changes nothing
    assert decide(CLASSIC, candidate, _report(0.72, 0.69, 0.51))["promote"]  # better than a bundled that clears it
    assert decide(CLASSIC, candidate, _report(0.80, 0.60, 0.40))["promote"]  # the bundled one misses the bar
