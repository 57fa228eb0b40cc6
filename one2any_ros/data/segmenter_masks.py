"""Segmenter-like query masks: a clean (rendered, ground-truth) mask perturbed the way an instance segmenter's
mask differs from the truth, deterministically per query so that two runs see the same masks (paired comparisons).

A real segmenter (Mask R-CNN's 28x28 mask head upsampled, SAM, YOLO-seg) rarely misses an object it detected, but
its border is a few pixels off - shrunk on dark or thin parts, bleeding onto the background elsewhere - and jagged
at the scale of its upsampling; highlights and low-texture patches leave small holes; now and then the mask leaks
into a touching object or a shadow. Only QUERY masks get this: the reference is registered once by an operator with
a good mask or box. Pure NumPy + OpenCV; every random draw comes from the generator handed in.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

QUERY_MASKS = ("clean", "segmenter")  # the evaluation's choices: the dataset's mask_visib, or it perturbed here


@dataclass(frozen=True)
class SegmenterNoise:
    """How far a segmenter's mask strays from the truth (pixels at the query image's resolution).

    ``shift_px``: the border moves in or out by a whole number of pixels drawn from this range (in with
    probability 1 - ``dilate_prob``), capped at ``max_shift_frac`` x the mask's equivalent radius, since a mask
    head's error grows with the object and a tiny object would otherwise vanish. ``jag_px`` / ``jag_scale_px``:
    amplitude (std) and correlation length of the border's wobble. ``holes``: how many holes of radius
    ``hole_radius_px`` (inclusive ranges) inside the object. ``leak_prob``: chance of one blob spilling over the
    border, its half-length ``leak_frac`` x the equivalent radius, half as wide or less. ``seed``: another seed
    draws other masks for the same queries.
    """

    shift_px: tuple[int, int] = (1, 4)
    dilate_prob: float = 0.5
    max_shift_frac: float = 0.15
    jag_px: float = 1.0
    jag_scale_px: float = 3.0
    holes: tuple[int, int] = (0, 3)
    hole_radius_px: tuple[int, int] = (1, 3)
    leak_prob: float = 0.2
    leak_frac: tuple[float, float] = (0.25, 0.6)
    seed: int = 0


def query_rng(seed: int, scene_id: int, im_id: int, obj_id: int) -> np.random.Generator:
    """The generator of one query's mask: keyed by (seed, scene, image, object), so every run and every setting
    perturbs a query's mask the same way whatever else it evaluates."""
    return np.random.default_rng([int(seed), int(scene_id), int(im_id), int(obj_id)])


def _signed_distance(mask: np.ndarray) -> np.ndarray:
    """(H,W) float32 px: > 0 inside the mask, < 0 outside, the border at 0 (half a pixel outside the last pixel in)."""
    m = mask.astype(np.uint8)
    inside = cv2.distanceTransform(m, cv2.DIST_L2, 5)
    outside = cv2.distanceTransform(1 - m, cv2.DIST_L2, 5)
    return np.where(mask, inside - 0.5, 0.5 - outside).astype(np.float32)


def _wobble(shape: tuple[int, int], rng: np.random.Generator, amplitude: float, scale: float) -> np.ndarray:
    """Smooth random field (H,W) of std ``amplitude`` px, correlated over ~``scale`` px: the jagged border."""
    field = rng.standard_normal(shape).astype(np.float32)
    if scale > 0:
        field = cv2.GaussianBlur(field, (0, 0), scale)
    std = float(field.std())
    return field * (amplitude / std) if std > 0 else field


def _random_pixel(where: np.ndarray, rng: np.random.Generator) -> tuple[int, int] | None:
    """(x, y) of a pixel drawn uniformly among ``where``'s True pixels, or None when there is none."""
    ys, xs = np.nonzero(where)
    if len(xs) == 0:
        return None
    i = int(rng.integers(len(xs)))
    return int(xs[i]), int(ys[i])


def segmenter_mask(mask: np.ndarray, rng: np.random.Generator, noise: SegmenterNoise = SegmenterNoise()) -> np.ndarray:
    """A segmenter-like version of ``mask`` (H,W) bool: border shifted in or out and jagged, small holes, sometimes
    a leak. Never empty when ``mask`` is not (the clean mask comes back when the perturbation would empty it); an
    empty mask stays empty. The same ``rng`` state gives the same mask."""
    mask = np.asarray(mask, bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H,W), got {mask.shape}")
    if not mask.any():
        return mask.copy()
    radius = float(np.sqrt(mask.sum() / np.pi))  # equivalent radius, px
    shift = min(int(rng.integers(noise.shift_px[0], noise.shift_px[1] + 1)), max(1, round(noise.max_shift_frac * radius)))
    sign = 1.0 if rng.random() < noise.dilate_prob else -1.0
    sd = _signed_distance(mask)
    out = sd + sign * shift + _wobble(mask.shape, rng, noise.jag_px, noise.jag_scale_px) > 0

    canvas = out.astype(np.uint8)
    for _ in range(int(rng.integers(noise.holes[0], noise.holes[1] + 1))):
        r = int(rng.integers(noise.hole_radius_px[0], noise.hole_radius_px[1] + 1))
        centre = _random_pixel(sd > r + 2, rng)  # inside, clear of the border (the wobble already roughens it)
        if centre is not None:
            cv2.circle(canvas, centre, r, 0, thickness=-1)
    if rng.random() < noise.leak_prob:
        centre = _random_pixel(np.abs(sd) < 1.0, rng)  # on the clean border
        if centre is not None:
            a = max(2.0, rng.uniform(*noise.leak_frac) * radius)
            axes = (round(a), max(1, round(a * rng.uniform(0.25, 0.5))))
            cv2.ellipse(canvas, centre, axes, float(rng.uniform(0.0, 180.0)), 0.0, 360.0, 1, thickness=-1)
    out = canvas.astype(bool)
    return out if out.any() else mask.copy()


def segmenter_query_mask(mask: np.ndarray, *, scene_id: int, im_id: int, obj_id: int,
                         noise: SegmenterNoise = SegmenterNoise()) -> np.ndarray:
    """``segmenter_mask`` of one query, its generator keyed by (``noise.seed``, scene, image, object): the
    evaluation's segmenter-like masks."""
    return segmenter_mask(mask, query_rng(noise.seed, scene_id, im_id, obj_id), noise)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (H,W) bool masks (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0
