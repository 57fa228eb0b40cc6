"""Network inputs: crop + resize of the reference and the query by the fixed crop rule, and the way back
from the output grid to query pixels.

The same functions serve inference (crops cut from full images) and training (crops rendered directly at
the input size with the shifted intrinsics of ``CropWindow.intrinsics``), so both see identical inputs:

- crop: ``camera.crop_box(mask)`` (square, 1.2 x the mask's larger bbox side), resampled to N x N;
  depth, mask and ROC by centred nearest-neighbour sampling (no mixing across depth edges), RGB by area
  averaging (like a camera's pixel footprint);
- reference (7 ch): RGB/255, ``Reference.roc_map`` (ROC in C / s), mask; plus the valid mask;
- query (8 ch): RGB/255, mask, the masked depth points minus their median divided by the REFERENCE
  scale s, valid.
"Valid" is ``camera.object_depth_mask`` (mask pixels whose depth is on the object, not on the background a
loose mask bleeds onto), the same pixels ``make_reference`` and the estimator's query points use.

Pixel convention (as camera.py): pixel centres at integer coordinates; input pixel x covers image
coordinates [u0 + x * side / N - 0.5, u0 + (x + 1) * side / N - 0.5).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from one2any_ros.core import camera
from one2any_ros.core.errors import InputError
from one2any_ros.core.reference import Reference
from one2any_ros.core.frame import View


@dataclass(frozen=True)
class CropWindow:
    """A square image window (u0, v0, side) in image pixels, resampled to ``size`` x ``size``."""

    u0: int
    v0: int
    side: int
    size: int

    @property
    def step(self) -> float:
        """Image pixels per input pixel."""
        return self.side / self.size

    def source_indices(self, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Nearest source pixel (column u, row v) of each of n cells across the window (n = size)."""
        n = self.size if n is None else n
        c = (np.arange(n) + 0.5) * (self.side / n) - 0.5  # cell centres relative to u0/v0
        off = np.floor(c + 0.5).astype(np.int64)
        return self.u0 + off, self.v0 + off

    def intrinsics(self, K: np.ndarray) -> np.ndarray:
        """Intrinsics of a camera that renders this window directly at size x size: an image pixel u maps to
        input coordinate x = (u - u0 + 0.5) / step - 0.5."""
        a = self.step
        Kc = np.array(K, dtype=np.float64, copy=True)
        Kc[0, 0] /= a
        Kc[1, 1] /= a
        Kc[0, 1] /= a
        Kc[0, 2] = (K[0, 2] - self.u0 + 0.5) / a - 0.5
        Kc[1, 2] = (K[1, 2] - self.v0 + 0.5) / a - 0.5
        return Kc

    def pixels_to_grid(self, pixels_vu: np.ndarray, grid: int) -> tuple[np.ndarray, np.ndarray]:
        """(M,2) image pixels (v, u) -> (row, col) int indices into a grid x grid map over the window, clipped."""
        cell = self.side / grid
        r = np.floor((pixels_vu[:, 0] - self.v0 + 0.5) / cell).astype(np.int64)
        c = np.floor((pixels_vu[:, 1] - self.u0 + 0.5) / cell).astype(np.int64)
        return np.clip(r, 0, grid - 1), np.clip(c, 0, grid - 1)


def crop_window(mask: np.ndarray, size: int) -> CropWindow:
    """The fixed crop rule (camera.crop_box) for a network input of size x size.

    Args:
        mask: (H, W) bool object mask, not empty.
        size: the network input's side, pixels.

    Returns:
        CropWindow: a square of ``side`` source pixels at (u0, v0), resampled to size x size.
    """
    u0, v0, side = camera.crop_box(mask)
    return CropWindow(u0, v0, side, int(size))


def crop_window_from_bbox(umin: int, umax: int, vmin: int, vmax: int, size: int, *, pad: float = 1.2) -> CropWindow:
    """The same rule as camera.crop_box from a mask's inclusive pixel bbox (for training, where the crop
    is known from the projected object before anything is rendered). Tested equal to crop_box.

    Args:
        umin: first mask column, pixels.
        umax: last mask column (inclusive), pixels.
        vmin: first mask row, pixels.
        vmax: last mask row (inclusive), pixels.
        size: the network input's side, pixels.
        pad: the square's side, x the bbox's longer side (at least 8 pixels).

    Returns:
        CropWindow.
    """
    cu = 0.5 * (umin + umax)
    cv = 0.5 * (vmin + vmax)
    side = max(int(np.ceil(pad * max(umax - umin + 1, vmax - vmin + 1))), 8)
    return CropWindow(int(round(cu - side / 2)), int(round(cv - side / 2)), side, int(size))


def crop_nearest(img: np.ndarray, win: CropWindow) -> np.ndarray:
    """(H,W[,C]) -> (size,size[,C]) by centred nearest sampling; outside the image = 0.

    Args:
        img: (H, W) or (H, W, C) array of any dtype.
        win: the crop window.

    Returns:
        (size, size) or (size, size, C) array of ``img``'s dtype.
    """
    us, vs = win.source_indices()
    h, w = img.shape[:2]
    ok_u = (us >= 0) & (us < w)
    ok_v = (vs >= 0) & (vs < h)
    out = np.zeros((win.size, win.size) + img.shape[2:], img.dtype)
    sub = img[np.clip(vs, 0, h - 1)][:, np.clip(us, 0, w - 1)]
    keep = ok_v[:, None] & ok_u[None, :]
    out[keep] = sub[keep]
    return out


def crop_rgb(rgb: np.ndarray, win: CropWindow) -> np.ndarray:
    """(H,W,3) uint8 -> (size,size,3) uint8: the window (zero-padded) resized with area averaging.

    Args:
        rgb: (H, W, 3) uint8 RGB.
        win: the crop window.

    Returns:
        (size, size, 3) uint8 RGB (linear interpolation when the window is smaller than size).
    """
    h, w = rgb.shape[:2]
    pad = np.zeros((win.side, win.side, 3), np.uint8)
    u0, v0 = win.u0, win.v0
    su0, sv0 = max(u0, 0), max(v0, 0)
    su1, sv1 = min(u0 + win.side, w), min(v0 + win.side, h)
    if su1 > su0 and sv1 > sv0:
        pad[sv0 - v0:sv1 - v0, su0 - u0:su1 - u0] = rgb[sv0:sv1, su0:su1]
    interp = cv2.INTER_AREA if win.side >= win.size else cv2.INTER_LINEAR
    return cv2.resize(pad, (win.size, win.size), interpolation=interp)


def crop_xyz(depth_m: np.ndarray, K: np.ndarray, win: CropWindow) -> np.ndarray:
    """(size,size,3) float32 camera-frame points of the window's nearest source pixels (0 where invalid).

    Args:
        depth_m: (H, W) float depth, metres, 0 = invalid.
        K: (3, 3) intrinsics, pixels.
        win: the crop window.

    Returns:
        (size, size, 3) float32 points (x, y, z), metres, in the camera.
    """
    us, vs = win.source_indices()
    z = crop_nearest(depth_m, win).astype(np.float32)
    x = (us[None, :].astype(np.float32) - np.float32(K[0, 2])) * z / np.float32(K[0, 0])
    y = (vs[:, None].astype(np.float32) - np.float32(K[1, 2])) * z / np.float32(K[1, 1])
    return np.stack([x, y, z], axis=-1)


# --- the two network inputs, from crop-sized arrays (training renders these directly) ------------------

def reference_arrays(rgb: np.ndarray, roc: np.ndarray, mask: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop-sized arrays -> (x (7,N,N) float32, valid (1,N,N) float32). rgb uint8 (N,N,3); roc (N,N,3) ROC
    (0 where invalid); mask, valid (N,N) bool (valid = camera.object_depth_mask).

    Args:
        rgb: (N, N, 3) uint8 RGB.
        roc: (N, N, 3) float ROC, reference-radius units, 0 where invalid.
        mask: (N, N) bool object mask.
        valid: (N, N) bool mask pixels with depth (``camera.object_depth_mask``).

    Returns:
        (x, valid): (7, N, N) float32 channels rgb / 255 (3), ROC (3), mask (1); and (1, N, N) float32 0/1.
    """
    x = np.concatenate([rgb.astype(np.float32) / 255.0, roc.astype(np.float32), mask[..., None].astype(np.float32)], axis=-1)
    return np.ascontiguousarray(x.transpose(2, 0, 1)), valid[None].astype(np.float32)


def query_arrays(rgb: np.ndarray, xyz: np.ndarray, mask: np.ndarray, valid: np.ndarray, scale: float) -> np.ndarray:
    """Crop-sized arrays -> x (8,N,N) float32. xyz (N,N,3) camera points, m; scale = the REFERENCE's s, m.

    Points are centred on the median of the valid ones and divided by s.

    Args:
        rgb: (N, N, 3) uint8 RGB.
        xyz: (N, N, 3) float camera points, metres.
        mask: (N, N) bool object mask.
        valid: (N, N) bool mask pixels with depth.
        scale: the reference's radius s, metres.

    Returns:
        (8, N, N) float32 channels rgb / 255 (3), mask (1), centred points / s (3, 0 where not valid), valid (1).

    Raises:
        InputError: reason "no_depth_in_mask" when ``valid`` is all False.
    """
    if not valid.any():
        raise InputError("the query crop has no valid depth inside the mask", reason="no_depth_in_mask")
    centre = np.median(xyz[valid], axis=0)
    pts = np.where(valid[..., None], (xyz - centre) / np.float32(scale), 0.0).astype(np.float32)
    x = np.concatenate([rgb.astype(np.float32) / 255.0, mask[..., None].astype(np.float32), pts,
                        valid[..., None].astype(np.float32)], axis=-1)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


# --- from full images (inference) ----------------------------------------------------------------------

def reference_input(ref: Reference, size: int) -> tuple[np.ndarray, np.ndarray, CropWindow]:
    """The reference's network input: (x (7,N,N), valid (1,N,N), window).

    Args:
        ref: the reference (its view and ROC map).
        size: N, the network input's side, pixels.

    Returns:
        (x, valid, window): (7, N, N) float32, (1, N, N) float32 0/1 and the CropWindow (``reference_arrays``).
    """
    view = ref.view
    win = crop_window(view.mask, size)
    mask = crop_nearest(view.mask, win)
    valid = crop_nearest(camera.object_depth_mask(view.depth, view.K, view.mask), win)
    roc = crop_nearest(ref.roc_map, win)
    x, v = reference_arrays(crop_rgb(view.rgb, win), roc, mask, valid)
    return x, v, win


def query_input(view: View, scale: float, size: int, valid: np.ndarray | None = None) -> tuple[np.ndarray, CropWindow]:
    """The query's network input: (x (8,N,N), window). ``scale`` = the reference's s (metres).

    Args:
        view: the query view.
        scale: the reference's radius s, metres.
        size: N, the network input's side, pixels.
        valid: (H, W) bool ``camera.object_depth_mask`` of the view when the caller already has it (the estimator's
            ``QueryContext.depth_mask``: its depth-cluster sort is most of this function's time), else None.

    Returns:
        (x, window): (8, N, N) float32 (``query_arrays``) and the CropWindow.

    Raises:
        InputError: reason "no_depth_in_mask" when the crop has no valid depth in the mask.
    """
    win = crop_window(view.mask, size)
    mask = crop_nearest(view.mask, win)
    if valid is None:
        valid = camera.object_depth_mask(view.depth, view.K, view.mask)
    xyz = crop_xyz(view.depth, view.K, win)
    return query_arrays(crop_rgb(view.rgb, win), xyz, mask, crop_nearest(valid, win), scale), win


QUERY_XY_CHANNELS = (4, 5)  # the x, y camera-frame coordinates among query_arrays' 8 channels


def roll_query_input(x: np.ndarray, k: int) -> np.ndarray:
    """The query input (8,N,N) turned by k quarter turns in the image plane (np.rot90 over the crop), its
    camera-frame points turned with it about the optical axis: what a camera rolled by k x 90 deg would have
    seen (up to the crop's off-centre principal point). The network is a CNN, not equivariant to image
    rotation, and a view pair's relative rotation has a roll component: of the four rolls one is closer to the
    reference's view (a random 105 deg rotation: ~81 deg on average), where the prediction is better.

    Args:
        x: (8, N, N) float32 query input (``query_arrays``).
        k: quarter turns, any integer (taken mod 4).

    Returns:
        (8, N, N) float32; ``x`` itself when k % 4 == 0.
    """
    k %= 4
    if k == 0:
        return x
    out = np.ascontiguousarray(np.rot90(x, k, axes=(1, 2)))
    cx, cy = QUERY_XY_CHANNELS
    X, Y = out[cx].copy(), out[cy].copy()
    # np.rot90 by one step moves the pixel (v, u) to (N-1-u, v): the new x is the old y, the new y minus the old x
    out[cx], out[cy] = {1: (Y, -X), 2: (-X, -Y), 3: (-Y, X)}[k]
    return out


def unroll_output(grid_map: np.ndarray, k: int) -> np.ndarray:
    """An output map (C,G,G) predicted on ``roll_query_input(x, k)`` back in the unrolled crop's layout. ROC
    values live in the reference object's frame, which the roll does not touch: only the layout turns.

    Args:
        grid_map: (C, G, G) output map.
        k: the roll's quarter turns, any integer.

    Returns:
        (C, G, G) array of the same dtype, C-contiguous.
    """
    return np.ascontiguousarray(np.rot90(grid_map, -(k % 4), axes=(-2, -1)))


def output_at_pixels(grid_map: np.ndarray, win: CropWindow, pixels_vu: np.ndarray) -> np.ndarray:
    """Sample an output map (C,G,G) (the network's ROC or confidence grid over the window) at image pixels
    (M,2) (v, u) by nearest cell -> (M,C).

    Args:
        grid_map: (C, G, G) output map over the window.
        win: the crop window the map covers.
        pixels_vu: (M, 2) int image pixels (row v, column u); those outside the window take the nearest edge cell.

    Returns:
        (M, C) array of the map's dtype, C-contiguous.
    """
    g = grid_map.shape[-1]
    r, c = win.pixels_to_grid(pixels_vu, g)
    return np.ascontiguousarray(grid_map[:, r, c].T)
