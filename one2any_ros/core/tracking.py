"""One object on one frame, with whatever the frame offers it (issue 26: masks only when needed).

A segmenter's mask or a detector's box registers an object and finds it again after a loss; in between, the object
is tracked without one, from its own silhouette predicted at its last pose and checked against depth:

- a **cue** (``Cue``) says what this frame offers the object: mask values to try (none: no mask for it), a box, its
  pose on the last frame, and its last accepted pose while it is lost;
- ``estimate_object`` picks the view from the cue:
  a mask or a box: tracking with the global search behind it (``detected`` when the global search decided);
  nothing, but a pose on the last frame: its predicted silhouette (``predicted_mask``; shared with the objects that
  touch it by whose surface lies nearest, ``claimed_masks``), tracking, then the global
  search on the same pixels, both held to the estimator's trust test: a pose that fails is ``lost`` at once, never
  carried forward;
  nothing, and lost: a search where it was last seen (``_search_view``), publishing nothing until a pose there passes
  the same test;
  nothing, and never seen: ``empty_mask`` (it waits for a mask or a box).

The caller (core/multi_object.py) keeps each object's poses (``ObjectTrack``) and builds its cue, so an object keeps
its track when it moves to another process. No ROS here.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from one2any_ros.core import camera
from one2any_ros.core.box_segment import Box, segment_in_box
from one2any_ros.core.errors import EstimationFailure, InputError, One2AnyError
from one2any_ros.core.estimator import PoseEstimator, PoseResult
from one2any_ros.core.estimator_settings import EstimatorSettings
from one2any_ros.core.geometry import subsample, transform_points
from one2any_ros.core.nearest import KDTree

MAX_SILHOUETTE_POINTS = 2000  # reference points that predict the silhouette (and check its depth)
MAX_DILATION_PX = 80


@dataclass(frozen=True)
class Cue:
    """What one frame offers one object. ``labels``: the mask values that may be its pixels (a segmenter's; empty = no
    mask for it on this frame; several: instances it may take, the verifier choosing); ``box``: a detector's box;
    ``last_T_C``: its pose of C in the camera on the last frame (tracking; None once lost); ``seen_T_C``: its last
    accepted pose, kept while it is lost (searching there); ``lost_frames``: frames since it was lost (the search
    widens); ``need_mask``: no mask or box is empty_mask (mask_mode every_frame); ``trust_labels``: the labels are
    guesses (instances nobody holds), so a pose on them must pass the trust test too; ``exclude``: (H,W) bool, pixels
    a search or a box must not take (the other objects being tracked); ``region``: (H,W) bool, its predicted pixels
    already shared out with the other objects (``claimed_masks``), or None to predict them here."""

    labels: tuple[int, ...] = ()
    box: Box | None = None
    last_T_C: np.ndarray | None = None
    seen_T_C: np.ndarray | None = None
    lost_frames: int = 0
    need_mask: bool = False
    trust_labels: bool = False
    exclude: np.ndarray | None = None
    region: np.ndarray | None = None

    @property
    def has_mask_or_box(self) -> bool:
        return bool(self.labels) or (self.box is not None and self.box.is_set)

    @property
    def searching(self) -> bool:
        """Lost, with nothing but its last place to go by (``_search_view``)."""
        return not self.has_mask_or_box and not self.need_mask and self.last_T_C is None and self.seen_T_C is not None


@dataclass
class ObjectTrack:
    """The caller's record of one object between frames (updated from each frame's result: ``update``)."""

    last_T_C: np.ndarray | None = None
    seen_T_C: np.ndarray | None = None
    lost_frames: int = 0

    def update(self, result: PoseResult | One2AnyError) -> None:
        """A pose: tracked from it next frame. A failed estimate (not trusted, no pose): tracking ends, the last
        accepted pose stays for the search. Bad input (no depth, a stale frame): nothing changes, tracking resumes
        after it."""
        if isinstance(result, PoseResult):
            self.last_T_C = self.seen_T_C = result.T_camera_C
            self.lost_frames = 0
        elif isinstance(result, EstimationFailure):
            self.lost_frames += 1 if self.last_T_C is None else 0
            self.last_T_C = None

    def cue(self, labels: tuple[int, ...] = (), box: Box | None = None) -> Cue:
        return Cue(labels=labels, box=box, last_T_C=self.last_T_C, seen_T_C=self.seen_T_C,
                   lost_frames=self.lost_frames)


def predicted_mask(depth_m: np.ndarray, K: np.ndarray, points_cam: np.ndarray, margin_m: float) -> np.ndarray:
    """(H,W) bool: the pixels an object whose surface points are ``points_cam`` (camera frame, metres; its reference
    cloud at its last pose) may cover now (``predicted_pixels``).

    Args:
        depth_m: (H, W) float depth, metres, 0 = invalid.
        K: (3, 3) intrinsics, pixels.
        points_cam: (N, 3) float surface points in the camera, metres.
        margin_m: motion allowed between frames, metres.

    Returns:
        (H, W) bool mask; all False when no point projects into the image in front of the camera.
    """
    out = np.zeros(depth_m.shape, bool)
    pix, _ = predicted_pixels(depth_m, K, points_cam, margin_m)
    out[pix[:, 0], pix[:, 1]] = True
    return out


def predicted_pixels(depth_m: np.ndarray, K: np.ndarray, points_cam: np.ndarray,
                     margin_m: float) -> tuple[np.ndarray, np.ndarray]:
    """The pixels an object may cover now, with how far each lies from its surface. Its silhouette is the points'
    projection, widened by ``margin_m`` (the motion allowed between frames) in the image; a pixel in it is kept only
    when its depth lies within ``margin_m`` of those points, so the wall behind does not leak in (a neighbour within
    the margin is left to ``claimed_masks``). Hand-written: OpenCV gives the widening (a distance transform),
    ``nearest.KDTree`` (pykdtree) the nearest-point test.

    Returns:
        ((n, 2) int row, column of each pixel; (n,) float distance of its depth point to the nearest surface point,
        metres, each <= margin_m). Empty when no point projects into the image in front of the camera.
    """
    h, w = depth_m.shape
    none = (np.zeros((0, 2), np.intp), np.zeros(0))
    pts = points_cam[subsample(points_cam, MAX_SILHOUETTE_POINTS)]
    uv, z = camera.project(pts, K)
    inside = np.isfinite(uv).all(axis=1) & (z > 0)
    inside &= (uv[:, 0] > -0.5) & (uv[:, 0] < w - 0.5) & (uv[:, 1] > -0.5) & (uv[:, 1] < h - 0.5)
    if not inside.any():
        return none
    u, v = np.rint(uv[inside]).astype(int).T
    r = int(np.clip(np.ceil(K[0, 0] * margin_m / max(float(z[inside].min()), 1e-3)), 2, MAX_DILATION_PX))
    r0, r1 = max(v.min() - r, 0), min(v.max() + r + 1, h)
    c0, c1 = max(u.min() - r, 0), min(u.max() + r + 1, w)
    # within r pixels of a projected point: one distance transform (5x a dilation by a disc of radius r)
    free = np.ones((r1 - r0, c1 - c0), np.uint8)
    free[v - r0, u - c0] = 0
    region = np.zeros((h, w), bool)
    region[r0:r1, c0:c1] = cv2.distanceTransform(free, cv2.DIST_L2, cv2.DIST_MASK_PRECISE) <= r + 0.5
    q, pix = camera.backproject(depth_m, K, region)
    if not len(q):
        return none
    dist, _ = KDTree(pts).query(q, k=1, distance_upper_bound=margin_m)
    near = np.isfinite(dist)
    return pix[near], dist[near]


def claimed_masks(depth_m: np.ndarray, K: np.ndarray,
                  clouds: dict[str, tuple[np.ndarray, float]]) -> dict[str, np.ndarray]:
    """Each object's predicted pixels (``predicted_pixels``; ``clouds``: object id -> (its surface points in the
    camera, metres: its reference cloud at its last pose; its margin, metres)), a pixel that several may cover going
    to the object whose surface lies nearest it. Objects that touch lie within each other's margin: alone, a tracked
    object's pixels took its neighbour's near side (and a neighbour coming back beside it), its pose drifted toward
    it and its confidence fell (docs/tracking.md, "Neighbours that touch").

    Returns:
        object id -> (H, W) bool mask; no two masks share a pixel, and together they cover what the predicted masks
        cover.
    """
    best = np.full(depth_m.shape, np.inf, np.float32)
    owner = np.full(depth_m.shape, -1, np.int16)
    for i, (points_cam, margin_m) in enumerate(clouds.values()):
        pix, dist = predicted_pixels(depth_m, K, points_cam, margin_m)
        rows, cols = pix[:, 0], pix[:, 1]
        nearer = dist < best[rows, cols]
        best[rows[nearer], cols[nearer]] = dist[nearer]
        owner[rows[nearer], cols[nearer]] = i
    return {oid: owner == i for i, oid in enumerate(clouds)}


def track_margin_m(settings: EstimatorSettings, diameter: float) -> float:
    """The motion allowed an object between frames, metres: ``track_margin`` x its diameter, at least
    ``track_margin_min_m`` (its predicted pixels lie within it of its surface)."""
    return max(settings.track_margin * diameter, settings.track_margin_min_m)


def in_front(depth_m: np.ndarray, nearest_m: float) -> np.ndarray:
    """(H,W) bool: the pixels with depth nearer the camera than ``nearest_m`` metres (0 = invalid depth: never)."""
    return (depth_m > 0) & (depth_m < nearest_m)


def search_box(centre_cam: np.ndarray, radius_m: float, K: np.ndarray, shape: tuple[int, int]) -> Box | None:
    """The image box of a sphere of ``radius_m`` about ``centre_cam`` (clipped to the image), or None when it lies
    outside the image or behind the camera.

    Args:
        centre_cam: (3,) float sphere centre in the camera, metres.
        radius_m: sphere radius, metres.
        K: (3, 3) intrinsics, pixels.
        shape: (H, W) of the image, pixels.

    Returns:
        Box (x, y, width, height) in pixels, or None.
    """
    h, w = shape
    z = float(centre_cam[2])
    if not z > 1e-3:
        return None
    uv, _ = camera.project(np.asarray(centre_cam, float)[None], K)
    u, v = uv[0]
    ru, rv = K[0, 0] * radius_m / z, K[1, 1] * radius_m / z
    x0, y0 = int(max(np.floor(u - ru), 0)), int(max(np.floor(v - rv), 0))
    x1, y1 = int(min(np.ceil(u + ru), w)), int(min(np.ceil(v + rv), h))
    if x1 <= x0 or y1 <= y0:
        return None
    return Box(x0, y0, x1 - x0, y1 - y0)


def estimate_object(est: PoseEstimator, frame, cue: Cue, near: np.ndarray | None = None) -> PoseResult:
    """The object's pose on ``frame`` (core/multi_object.Frame) from what ``cue`` offers (module docstring), or the
    One2AnyError that says why not. ``est`` holds its reference; its tracking state is set from the cue.

    Args:
        est: the object's estimator, with its reference and settings.
        frame: the decoded ``frame.Frame``.
        cue: the object's labels, box and last poses on this frame.
        near: (H, W) float32 ``verify.near_depth`` of the frame, or None to compute it.

    Returns:
        PoseResult: T_camera_object and T_camera_C (4, 4) float64, metres, confidence in [0, 1], inliers, residual
        in metres and the verifier's score.

    Raises:
        InputError: no pixels for it ("empty_mask").
        EstimationFailure: lost ("lost"), or no trusted pose.
        One2AnyError: whatever else ``PoseEstimator.estimate`` raises.
    """
    s, ref = est.settings, est.reference
    est.last_T_C = cue.last_T_C
    if cue.has_mask_or_box:
        return _best_of_labels(est, frame, cue, near)
    if cue.need_mask:
        raise InputError("the mask has no pixels of it", reason="empty_mask")
    margin = track_margin_m(s, ref.diameter)
    if cue.last_T_C is not None:
        mask = cue.region if cue.region is not None else \
            predicted_mask(frame.depth, frame.K, transform_points(cue.last_T_C, ref.points_C), margin)
        try:
            view = frame.view_of(mask)
        except InputError as e:
            est.last_T_C = None
            raise EstimationFailure(f"no depth where it was predicted to be ({e}): it left the view or is hidden",
                                    reason="lost") from None
        # a tracked pose that is not trusted: the global search on the same pixels, held to the same trust
        return est.estimate(view, track=True, near_depth=near, require_trust=True)
    if cue.seen_T_C is not None:
        return est.estimate(_search_view(frame, ref, cue, margin, s.search_radii), track=False, near_depth=near,
                            require_trust=True)
    raise InputError("no mask or box for it on this frame, and no last pose to track from: waiting for one",
                     reason="empty_mask")


def _search_view(frame, ref, cue: Cue, margin: float, search_radii: float):
    """Where a lost object is looked for: on the first frame lost, its silhouette at its last accepted pose with twice
    the tracking margin; after that (or when no depth is there), the object segmented from depth in the image box of
    ``search_radii`` radii about that place (core/box_segment.py: the plane behind or under it removed, the largest
    part near the centre). The pixels of the objects being tracked (``cue.exclude``) are never taken. A silhouette
    widened further would take the wall behind before the object that moved. What lies nearer the camera than any
    part of the object could be at that place, turned any way and moved by the tracking margin (``in_front``), is
    taken only when nothing lies behind that depth: an occluder passing in front hid it and would fill the search
    region before it, while an object carried towards the camera is still the only thing there (docs/tracking.md,
    "An occluder passing in front"). EstimationFailure("lost") when neither holds anything."""
    mid = 0.5 * (ref.points_C.min(axis=0) + ref.points_C.max(axis=0))
    centre = transform_points(cue.seen_T_C, mid[None])[0]
    nearest = float(centre[2]) - float(np.linalg.norm(ref.points_C - mid, axis=1).max()) - margin
    free = np.ones(frame.depth.shape, bool) if cue.exclude is None else ~cue.exclude
    if cue.lost_frames == 0:
        try:
            region = free & predicted_mask(frame.depth, frame.K, transform_points(cue.seen_T_C, ref.points_C),
                                           2 * margin)
            behind = region & ~in_front(frame.depth, nearest)
            return frame.view_of(behind if behind.sum() >= camera.MIN_MASK_PIXELS else region)
        except InputError:
            pass
    box = search_box(centre, search_radii * ref.diameter / 2, frame.K, frame.depth.shape)
    try:
        if box is None:
            raise InputError("its last place is outside the image", reason="bad_roi")
        return frame.view_of(segment_in_box(frame.depth, frame.K, box, behind_m=nearest, exclude=cue.exclude))
    except InputError as e:
        raise EstimationFailure(f"searching where it was last seen: nothing there ({e}); waiting for a mask or a box",
                                reason="lost") from None


def _best_of_labels(est: PoseEstimator, frame, cue: Cue, near: np.ndarray | None) -> PoseResult:
    """A mask (each of ``cue.labels`` in turn, the best verifier score winning) or the box alone."""
    best: PoseResult | None = None
    error: One2AnyError | None = None
    for label in cue.labels or (None,):
        est.last_T_C = cue.last_T_C
        try:
            r = est.estimate(frame.view(label, box=cue.box, others=cue.exclude), track=True, near_depth=near,
                             require_trust=cue.trust_labels)
        except One2AnyError as e:
            error = error or e
            continue
        if best is None or r.score > best.score:
            best = r
    if best is None:
        est.last_T_C = None if isinstance(error, EstimationFailure) else cue.last_T_C
        raise error  # type: ignore[misc]
    est.last_T_C = best.T_camera_C
    return best
