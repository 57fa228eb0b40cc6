"""Segmenter-like query masks (data/segmenter_masks.py) and the evaluation's ``query_masks`` option: the same query
gets the same mask in every run, the mask moves by a bounded amount and is never emptied, and ``evaluate_dataset``
hands the estimator those masks for the queries only (the reference keeps its clean mask) and records it."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from one2any_ros.data.segmenter_masks import (SegmenterNoise, mask_iou, query_rng, segmenter_mask,
                                              segmenter_query_mask)
from test_evaluate import PLAN, FakeEstimator, make_dataset  # noqa: E402 (pytest puts test/ on sys.path)


def _ellipse(h: int = 200, w: int = 240, axes: tuple[int, int] = (50, 30)) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    cv2.ellipse(m, (w // 2, h // 2), axes, 20.0, 0.0, 360.0, 1, thickness=-1)
    return m.astype(bool)


def test_the_same_query_gets_the_same_mask_and_another_query_another():
    clean = _ellipse()
    a = segmenter_query_mask(clean, scene_id=3, im_id=7, obj_id=2)
    b = segmenter_query_mask(clean, scene_id=3, im_id=7, obj_id=2)
    np.testing.assert_array_equal(a, b)
    others = [segmenter_query_mask(clean, scene_id=3, im_id=im, obj_id=2) for im in range(8, 12)]
    assert any(not np.array_equal(a, o) for o in others)
    reseeded = segmenter_query_mask(clean, scene_id=3, im_id=7, obj_id=2, noise=SegmenterNoise(seed=1))
    assert not np.array_equal(a, reseeded)


def test_the_mask_moves_a_few_pixels_not_more():
    clean = _ellipse()
    ious = np.array([mask_iou(clean, segmenter_mask(clean, query_rng(0, 1, i, 1))) for i in range(60)])
    assert ious.max() < 0.99  # always perturbed
    assert ious.min() > 0.6  # a 1-4 px border shift, holes and a leak on a ~80 px object, not a different object
    assert 0.75 < ious.mean() < 0.95
    # both ways: some masks grow past the clean one, some shrink inside it
    sizes = np.array([segmenter_mask(clean, query_rng(0, 1, i, 1)).sum() for i in range(60)])
    assert (sizes > clean.sum()).any() and (sizes < clean.sum()).any()


def test_the_mask_is_never_emptied_and_an_empty_mask_stays_empty():
    for size in (1, 2, 3, 5):
        clean = np.zeros((40, 40), bool)
        clean[20:20 + size, 20:20 + size] = True
        for i in range(30):
            assert segmenter_mask(clean, query_rng(0, 0, i, size)).any()
    tiny = np.zeros((40, 40), bool)
    tiny[18:23, 18:23] = True
    erase = SegmenterNoise(shift_px=(8, 8), dilate_prob=0.0, max_shift_frac=10.0, leak_prob=0.0)
    np.testing.assert_array_equal(segmenter_mask(tiny, query_rng(0, 0, 0, 0), erase), tiny)  # the clean mask back
    empty = np.zeros((40, 40), bool)
    assert not segmenter_mask(empty, query_rng(0, 0, 0, 0)).any()
    with pytest.raises(ValueError):
        segmenter_mask(np.zeros((4, 4, 3), bool), query_rng(0, 0, 0, 0))


class MaskRecorder(FakeEstimator):
    """The test_evaluate fake, keeping the masks it was handed: reference and query."""

    def __init__(self, plan):
        super().__init__(plan)
        self.masks: dict[tuple[str, int, int], np.ndarray] = {}

    def set_reference(self, view):
        super().set_reference(view)
        self.masks[("ref", *self.references[-1])] = view.mask.copy()

    def estimate(self, view, *, track=False):
        n = len(self.calls)
        try:
            return super().estimate(view, track=track)
        finally:
            if len(self.calls) > n:
                self.masks[("query", *self.calls[-1])] = view.mask.copy()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("segmasks") / "ds")


def test_segmenter_masks_reach_the_estimator_for_the_queries_only(dataset: Path, tmp_path: Path):
    from one2any_ros.evaluation import evaluate_dataset, format_report_table

    runs = {}
    for masks in ("clean", "segmenter"):
        fake = MaskRecorder(PLAN)
        rep = evaluate_dataset(dataset, backend="fake", out_dir=tmp_path / masks, estimator=fake, progress=False,
                               plot=False, query_masks=masks)
        records = [json.loads(line) for line in (tmp_path / masks / "queries.jsonl").read_text().splitlines()]
        runs[masks] = (fake, rep, records)
    (clean, rep_c, rec_c), (seg, rep_s, rec_s) = runs["clean"], runs["segmenter"]
    assert rep_c["query_masks"] == "clean" and rep_c["segmenter_noise"] is None
    assert rep_s["query_masks"] == "segmenter" and rep_s["segmenter_noise"]["shift_px"] == [1, 4]
    assert "segmenter" in format_report_table(rep_s) and "segmenter" not in format_report_table(rep_c)
    assert set(rep_c) == set(rep_s)
    assert set(clean.masks) == set(seg.masks)
    for key, m in clean.masks.items():
        if key[0] == "ref":
            np.testing.assert_array_equal(seg.masks[key], m)  # the operator's clean reference mask
        else:
            assert 0.3 < mask_iou(seg.masks[key], m) < 1.0, key
    assert all("query_mask_iou" not in r for r in rec_c)
    ious = [r["query_mask_iou"] for r in rec_s if r["ok"]]
    assert ious and all(0.3 < v < 1.0 for v in ious)
    # a second segmenter run hands the estimator the very same masks (paired runs)
    again = MaskRecorder(PLAN)
    evaluate_dataset(dataset, backend="fake", out_dir=tmp_path / "again", estimator=again, progress=False, plot=False,
                     query_masks="segmenter")
    assert all(np.array_equal(again.masks[k], m) for k, m in seg.masks.items())
    with pytest.raises(ValueError):
        evaluate_dataset(dataset, backend="fake", out_dir=tmp_path / "bad", estimator=MaskRecorder(PLAN),
                         progress=False, plot=False, query_masks="sam")


def test_the_cli_takes_query_masks():
    from one2any_ros.apps.cli import build_parser

    a = build_parser().parse_args(["eval", "--dataset", "d", "--out", "o", "--query-masks", "segmenter"])
    assert a.query_masks == "segmenter"
    assert build_parser().parse_args(["eval", "--dataset", "d", "--out", "o"]).query_masks == "clean"
