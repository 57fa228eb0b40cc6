"""One frame and one object's view of it: decoding and validating the camera's arrays once, the label image, and the
rules for object ids and mask labels.

- ``decode_frame`` -> ``Frame``: one synchronized RGB-D (+ label image) frame, decoded once (rgb uint8, depth in
  metres, labels uint8/uint16, the free-space depth the verifier needs); every object's ``View`` is a selection of
  its pixels (``Frame.view`` by label or box, ``Frame.view_of`` by a mask).
- ``at_working_width``: a frame wider than the node's ``max_image_width``, decimated once before anything else.
- ``make_view`` -> ``View``: one validated RGB-D + mask observation (the reference, one-shot estimation).
- ``validate_object_id``, ``check_label``: what an object may be called and which label values can occur.

The estimator, the several-objects orchestrator and its helper processes, the reference store and the ROS
conversions all take frames and views from here. No ROS here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from one2any_ros.core import camera
from one2any_ros.core.box_segment import Box, segment_in_box
from one2any_ros.core.errors import InputError
from one2any_ros.core.geometry import is_rigid, orthonormalize
from one2any_ros.core.verify import near_depth

DEFAULT_OBJECT = ""
OBJECT_ID_PATTERN = re.compile(r"[A-Za-z0-9_]{1,32}")


def validate_object_id(object_id: str) -> str:
    """The id itself, or InputError(reason="bad_object_id"): "" (the default object) or [A-Za-z0-9_]{1,32}.

    Args:
        object_id: the proposed name.

    Returns:
        ``object_id`` unchanged.

    Raises:
        InputError: reason "bad_object_id" for any other name or type.
    """
    if object_id == DEFAULT_OBJECT or (isinstance(object_id, str) and OBJECT_ID_PATTERN.fullmatch(object_id)):
        return object_id
    raise InputError(f"object_id {object_id!r} is not a valid name: use 1-32 of A-Z a-z 0-9 _ (or \"\" for the "
                     "default object)", reason="bad_object_id")


@dataclass(frozen=True)
class Frame:
    """One decoded frame: rgb (H,W,3) uint8, depth (H,W) float32 m (0 = invalid), labels (H,W) uint8|uint16 or None
    (no mask came with this frame), K."""

    rgb: np.ndarray
    depth: np.ndarray
    labels: np.ndarray | None
    K: np.ndarray
    min_depth: float = 0.1
    max_depth: float = 4.0
    stride: int = 1  # the camera's pixels per pixel here, across and down (``at_working_width``)
    _near: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def max_label(self) -> int:
        """The largest label this image's type can hold (255 for mono8, 65535 for mono16; 65535 without one)."""
        return 65535 if self.labels is None else int(np.iinfo(self.labels.dtype).max)

    def mask_for(self, mask_label: int | None) -> np.ndarray:
        """The object's pixels: ``labels == mask_label``; 0 = every non-zero pixel; None (or no label image): none."""
        if mask_label is None or self.labels is None:
            return np.zeros(self.depth.shape, bool)
        check_label(mask_label, self.max_label)
        return self.labels != 0 if mask_label == 0 else self.labels == mask_label

    def label_counts(self) -> np.ndarray:
        """Pixels per label value (index = value; computed once per frame and shared by its objects)."""
        if "counts" not in self._near:
            self._near["counts"] = (np.zeros(1, np.int64) if self.labels is None else
                                    np.bincount(self.labels.ravel(), minlength=1))
        return self._near["counts"]

    def has_label(self, mask_label: int) -> bool:
        """Whether the label image holds any pixel of ``mask_label`` (0: any non-zero pixel)."""
        counts = self.label_counts()
        if mask_label == 0:
            return bool(counts[1:].any())
        return 0 < mask_label < len(counts) and bool(counts[mask_label])

    def near_depth(self) -> np.ndarray:
        """``verify.near_depth`` of this frame, computed on first use and shared by its objects."""
        if "near" not in self._near:
            self._near["near"] = near_depth(self.depth)
        return self._near["near"]

    def view(self, mask_label: int | None, *, T_cam_obj: np.ndarray | None = None, box: Box | None = None,
             others: np.ndarray | None = None) -> View:
        """The View of one object (InputError with the reason when its pixels are unusable). With a ``box``
        (``Box.is_set``): the label's pixels inside it (none there: empty_mask), or, when the label has no pixel in
        the whole image (no segmenter ran, or it missed the object), the object segmented from depth inside the box
        (``box_segment.segment_in_box``; bad_roi when the box is outside the image or holds no usable depth), never
        taking ``others``' pixels ((H,W) bool: the objects known on this frame, which a box around a neighbour that
        touches them holds too)."""
        mask = self.mask_for(mask_label)
        if box is not None and box.is_set:
            rows, cols = box.pixels(*self.depth.shape)
            if mask.any():
                inside = np.zeros_like(mask)
                inside[rows, cols] = True
                mask = mask & inside
            else:
                mask = segment_in_box(self.depth, self.K, box, exclude=others)
        return self.view_of(mask, T_cam_obj=T_cam_obj)

    def view_of(self, mask: np.ndarray, *, T_cam_obj: np.ndarray | None = None) -> View:
        """The View of the pixels of a (H,W) bool ``mask`` (a predicted silhouette, core/tracking.py)."""
        return view_from_decoded(self.rgb, self.depth, mask, self.K, T_cam_obj=T_cam_obj,
                                 min_depth=self.min_depth, max_depth=self.max_depth)


def check_label(mask_label: int, max_label: int = 65535) -> int:
    """The label itself, or InputError(reason="bad_mask_label") when it cannot occur in the label image.

    Args:
        mask_label: the label value (0 = every non-zero pixel).
        max_label: the largest value the label image holds (255 for mono8, 65535 for mono16).

    Returns:
        ``mask_label`` as int.

    Raises:
        InputError: reason "bad_mask_label" for a non-integer or a value outside [0, max_label].
    """
    if not isinstance(mask_label, (int, np.integer)) or not 0 <= int(mask_label) <= max_label:
        raise InputError(f"mask_label {mask_label!r} cannot occur in this label image (0..{max_label})",
                         reason="bad_mask_label")
    return int(mask_label)


def decode_labels(labels: np.ndarray) -> np.ndarray:
    """A 2-D uint8 or uint16 label image (bool masks become 0/1; other types are refused).

    Args:
        labels: (H, W) or (H, W, 1) bool, uint8 or uint16 label image.

    Returns:
        (H, W) uint8 or uint16 labels (uint8 0/1 for a bool mask).

    Raises:
        InputError: another shape ("bad_mask_shape") or dtype ("bad_mask_encoding").
    """
    a = camera.single_channel(labels, "label image")
    if a.dtype == bool:
        return a.astype(np.uint8)
    if a.dtype not in (np.uint8, np.uint16):
        raise InputError(f"label image must be mono8 or mono16 (uint8/uint16), got {a.dtype}", reason="bad_mask_encoding")
    return a


def decode_frame(rgb: np.ndarray | None, depth: np.ndarray, labels: np.ndarray | None, K: np.ndarray | None, *,
                 depth_scale_m: float | None = None, depth_encoding: str | None = None, min_depth: float = 0.1,
                 max_depth: float = 4.0) -> Frame:
    """Validate and decode one frame once (the same rules as ``reference.make_view``); ``labels`` None: no mask came
    with it.

    Args:
        rgb: (H, W, 3) RGB as ``camera.decode_rgb`` takes it, or None (grey).
        depth: (H, W) raw depth (``camera.decode_depth``: uint16 millimetres or float metres by default).
        labels: (H, W) uint8/uint16/bool label image, or None.
        K: (3, 3) intrinsics, pixels.
        depth_scale_m: metres per raw depth unit, overriding the encoding.
        depth_encoding: the depth's ROS encoding, or None to infer from the dtype.
        min_depth: nearest valid depth, metres.
        max_depth: farthest valid depth, metres.

    Returns:
        Frame with rgb (H, W, 3) uint8, depth (H, W) float32 metres (0 = invalid or out of range), labels (H, W)
        uint8/uint16 or None and K (3, 3) float64.

    Raises:
        InputError: bad intrinsics, label image, rgb or depth, or sizes that differ (with a reason).
    """
    K = camera.validate_intrinsics(K)
    lab = None if labels is None else decode_labels(labels)
    shape = np.shape(depth)[:2] if lab is None else lab.shape
    rgb_u8, depth_m = decode_images(rgb, depth, shape, depth_scale_m=depth_scale_m, depth_encoding=depth_encoding,
                                    min_depth=min_depth, max_depth=max_depth)
    return Frame(rgb=rgb_u8, depth=depth_m, labels=lab, K=K, min_depth=min_depth, max_depth=max_depth)


def at_working_width(frame: Frame, max_width: int) -> Frame:
    """``frame`` decimated by the smallest whole stride that makes it at most ``max_width`` pixels wide (itself when it
    is no wider, or ``max_width`` is 0). Every per-frame stage (the predicted silhouettes and their sharing, the query
    cloud and its colour, the appearance signal, a box's depth segment) costs in proportion to an object's pixels, the
    appearance signal's windows more (they widen with the object), while what the estimator uses is a few hundred to
    a few thousand of them: a 1280 x 720 camera cost 2.3x the time per object of the same scene at 640 x 480 for the
    same poses (docs/tracking.md, "A camera's resolution"). Poses are metric, so only the intrinsics change.

    Args:
        frame: the decoded frame.
        max_width: the widest frame estimated as it is, pixels; 0 = every frame at full resolution.

    Returns:
        The frame with ``stride`` times fewer pixels across and down (the last ``width % stride`` columns and
        ``height % stride`` rows dropped): rgb averaged over each stride x stride block (cv2.INTER_AREA), depth and
        labels the block's centre pixel (a measurement and a label as they came, never a blend across an edge), K
        for the blocks' centres; ``stride`` multiplied by it.
    """
    h, w = frame.depth.shape
    if max_width <= 0 or w <= max_width:
        return frame
    k = min(-(-w // max_width), h)  # (an image a few rows high keeps one)
    H, W, o = h // k, w // k, k // 2
    K = frame.K.copy()
    K[:2, :2] /= k
    K[:2, 2] = (K[:2, 2] - (k - 1) / 2) / k  # pixel u' covers the camera's u = k u' .. k u' + k - 1
    labels = None if frame.labels is None else np.ascontiguousarray(frame.labels[o:H * k:k, o:W * k:k])
    return replace(frame, rgb=cv2.resize(frame.rgb[:H * k, :W * k], (W, H), interpolation=cv2.INTER_AREA),
                   depth=np.ascontiguousarray(frame.depth[o:H * k:k, o:W * k:k]), labels=labels, K=K,
                   stride=frame.stride * k, _near={})


@dataclass(frozen=True)
class View:
    """One validated RGB-D + mask observation. Arrays share the same (H, W)."""

    rgb: np.ndarray  # (H,W,3) uint8 RGB
    depth: np.ndarray  # (H,W) float32 metres, 0 = invalid
    mask: np.ndarray  # (H,W) bool, object pixels
    K: np.ndarray  # (3,3) float64
    T_cam_obj: np.ndarray | None = None  # optional (4,4) object pose in this camera (reference only)

    @property
    def shape(self) -> tuple[int, int]:
        return self.depth.shape  # type: ignore[return-value]

    @property
    def valid(self) -> np.ndarray:
        """Object pixels with valid depth."""
        return self.mask & (self.depth > 0)


def make_view(
    rgb: np.ndarray | None,
    depth: np.ndarray,
    mask: np.ndarray,
    K: np.ndarray | None,
    *,
    depth_scale_m: float | None = None,
    depth_encoding: str | None = None,
    min_depth: float = 0.1,
    max_depth: float = 4.0,
    T_cam_obj: np.ndarray | None = None,
    min_pixels: int = camera.MIN_MASK_PIXELS,
) -> View:
    """Validate and decode raw arrays into a View, raising InputError with a reason on bad input.

    ``rgb`` may be None (a grey image is substituted). Depth outside [min_depth, max_depth] is invalid.

    Args:
        rgb: (H, W, 3) RGB as ``camera.decode_rgb`` takes it, or None (grey).
        depth: (H, W) raw depth (``camera.decode_depth``).
        mask: (H, W) object mask of any dtype (non-zero = object).
        K: (3, 3) intrinsics, pixels.
        depth_scale_m: metres per raw depth unit, overriding the encoding.
        depth_encoding: the depth's ROS encoding, or None to infer from the dtype.
        min_depth: nearest valid depth, metres.
        max_depth: farthest valid depth, metres.
        T_cam_obj: (4, 4) object pose in this camera, metres, or None.
        min_pixels: the fewest mask pixels, and mask pixels with depth, accepted.

    Returns:
        View with rgb (H, W, 3) uint8, depth (H, W) float32 metres, mask (H, W) bool, K (3, 3) float64 and
        T_cam_obj (4, 4) float64 (orthonormalised) or None.

    Raises:
        InputError: bad intrinsics, mask, rgb, depth or pose, sizes that differ, or too few (valid) mask pixels.
    """
    K = camera.validate_intrinsics(K)
    mask_b = camera.decode_mask(mask)
    rgb_u8, depth_m = decode_images(rgb, depth, mask_b.shape, depth_scale_m=depth_scale_m,
                                    depth_encoding=depth_encoding, min_depth=min_depth, max_depth=max_depth)
    return view_from_decoded(rgb_u8, depth_m, mask_b, K, T_cam_obj=T_cam_obj, min_depth=min_depth, max_depth=max_depth,
                             min_pixels=min_pixels)


def decode_images(rgb: np.ndarray | None, depth: np.ndarray, mask_shape: tuple[int, ...], *,
                  depth_scale_m: float | None = None, depth_encoding: str | None = None, min_depth: float = 0.1,
                  max_depth: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """(rgb uint8, depth float32 m with depth outside [min_depth, max_depth] set to 0) of one frame, checked against
    the mask's size; ``rgb`` None gives a grey image. InputError (reason) when unusable.

    Args:
        rgb: (H, W, 3) RGB as ``camera.decode_rgb`` takes it, or None.
        depth: (H, W) raw depth (``camera.decode_depth``).
        mask_shape: (H, W) the mask's or label image's shape.
        depth_scale_m: metres per raw depth unit, overriding the encoding.
        depth_encoding: the depth's ROS encoding, or None to infer from the dtype.
        min_depth: nearest valid depth, metres.
        max_depth: farthest valid depth, metres.

    Returns:
        (rgb, depth): (H, W, 3) uint8 (128 grey when ``rgb`` is None) and (H, W) float32 metres, 0 = invalid.

    Raises:
        InputError: bad rgb or depth, or "size_mismatch".
    """
    depth_m = camera.decode_depth(depth, depth_scale_m=depth_scale_m, encoding=depth_encoding)
    depth_m[(depth_m < min_depth) | (depth_m > max_depth)] = 0.0
    if tuple(mask_shape) != depth_m.shape:
        raise InputError(f"mask {tuple(mask_shape)} and depth {depth_m.shape} have different sizes", reason="size_mismatch")
    if rgb is None:
        return np.full(depth_m.shape + (3,), 128, np.uint8), depth_m
    rgb_u8 = camera.decode_rgb(rgb)
    if rgb_u8.shape[:2] != depth_m.shape:
        raise InputError(f"rgb {rgb_u8.shape[:2]} and depth {depth_m.shape} have different sizes", reason="size_mismatch")
    return rgb_u8, depth_m


def view_from_decoded(rgb_u8: np.ndarray, depth_m: np.ndarray, mask_b: np.ndarray, K: np.ndarray, *,
                      T_cam_obj: np.ndarray | None = None, min_depth: float = 0.1, max_depth: float = 4.0,
                      min_pixels: int = camera.MIN_MASK_PIXELS) -> View:
    """A View from arrays already decoded and range-limited (``make_view`` after decoding; several objects of
    one frame share the decoded rgb and depth): checks the mask's pixels and depth, and the object pose.

    Args:
        rgb_u8: (H, W, 3) uint8 RGB.
        depth_m: (H, W) float32 depth, metres, 0 = invalid.
        mask_b: (H, W) bool object mask.
        K: (3, 3) float64 intrinsics, pixels.
        T_cam_obj: (4, 4) object pose in this camera, metres, or None.
        min_depth: nearest valid depth, metres (for the error message only).
        max_depth: farthest valid depth, metres (for the error message only).
        min_pixels: the fewest mask pixels, and mask pixels with depth, accepted.

    Returns:
        View of these arrays, ``T_cam_obj`` orthonormalised to float64.

    Raises:
        InputError: "empty_mask", "tiny_mask", "no_depth_in_mask", "too_little_depth" or "bad_object_pose".
    """
    n_mask = int(mask_b.sum())
    if n_mask == 0:
        raise InputError("mask is empty: no object pixels", reason="empty_mask")
    if n_mask < min_pixels:
        raise InputError(f"mask has only {n_mask} pixels (need >= {min_pixels})", reason="tiny_mask")
    n_valid = int((mask_b & (depth_m > 0)).sum())
    if n_valid == 0:
        raise InputError(
            f"no valid depth inside the mask (all zero/NaN or outside [{min_depth}, {max_depth}] m)", reason="no_depth_in_mask"
        )
    if n_valid < min_pixels:
        raise InputError(f"only {n_valid} mask pixels have valid depth (need >= {min_pixels})", reason="too_little_depth")
    if T_cam_obj is not None:
        if not is_rigid(T_cam_obj):
            raise InputError("object pose must be a finite rigid 4x4 transform (rotation + translation)",
                             reason="bad_object_pose")
        T_cam_obj = orthonormalize(np.asarray(T_cam_obj, dtype=np.float64))
    return View(rgb=rgb_u8, depth=depth_m, mask=mask_b, K=K, T_cam_obj=T_cam_obj)
