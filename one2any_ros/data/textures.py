"""Procedural textures of the objects (data/objects.py): a palette, noise fields and printed overlays (letters,
stripes, shapes), so that an object's faces differ by texture. Deterministic in the generator given."""

from __future__ import annotations

import string

import cv2
import numpy as np

TEXTURE_SIZE = 512  # texels per side of an object's texture

# --------------------------------------------------------------------------------------------------
# textures


def random_palette(rng: np.random.Generator, k: int | None = None) -> np.ndarray:
    """(k,3) uint8 RGB colours: a random scheme (analogous, complementary or wild)."""
    k = int(rng.integers(2, 6)) if k is None else k
    h0 = rng.random()
    scheme = rng.integers(3)
    if scheme == 0:
        hues = h0 + rng.uniform(-0.08, 0.08, k)
    elif scheme == 1:
        hues = h0 + 0.5 * rng.integers(0, 2, k) + rng.uniform(-0.05, 0.05, k)
    else:
        hues = rng.random(k)
    sat = rng.uniform(0.25, 1.0, k)
    val = rng.uniform(0.2, 1.0, k)
    val[rng.integers(k)] = rng.uniform(0.75, 1.0)  # keep one light and one dark colour for contrast
    val[rng.integers(k)] = rng.uniform(0.1, 0.4)
    hsv = np.stack([(hues % 1.0) * 179, sat * 255, val * 255], axis=1).astype(np.uint8)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]


def _lut(rng: np.random.Generator, palette: np.ndarray) -> np.ndarray:
    """(256,3) uint8 colour map through the palette (smooth or posterised)."""
    k = len(palette)
    x = np.arange(256) / 255.0
    if rng.random() < 0.4:  # posterised bands
        edges = np.sort(rng.random(k - 1))
        return palette[np.searchsorted(edges, x)]
    pos = np.concatenate([[0.0], np.sort(rng.random(k - 2)), [1.0]]) if k > 2 else np.array([0.0, 1.0])
    return np.stack([np.interp(x, pos, palette[:, c]) for c in range(3)], axis=1).astype(np.uint8)


def _fbm(rng: np.random.Generator, size: int, *, base: int | None = None, octaves: int = 4) -> np.ndarray:
    """(size,size) float32 fractal value noise in [0,1]."""
    base = int(rng.integers(2, 9)) if base is None else base
    acc = np.zeros((size, size), np.float32)
    amp, tot = 1.0, 0.0
    for o in range(octaves):
        s = min(base * 2**o, size)
        acc += amp * cv2.resize(
            rng.random((s, s), dtype=np.float32), (size, size), interpolation=cv2.INTER_CUBIC
        )
        tot += amp
        amp *= float(rng.uniform(0.35, 0.6))
    acc /= tot
    lo, hi = float(acc.min()), float(acc.max())
    return (acc - lo) / max(hi - lo, 1e-6)


def _base_field(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size,size) float32 scalar field in [0,1]: noise, stripes, checker, rings, plaid or gradient."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    kind = rng.integers(6)
    th = rng.uniform(0, np.pi)
    xr = x * np.cos(th) + y * np.sin(th)
    yr = -x * np.sin(th) + y * np.cos(th)
    if kind == 0:
        return _fbm(rng, size)
    warp = _fbm(rng, size, base=3, octaves=2) * rng.uniform(0, 0.15)
    if kind == 1:  # stripes
        f = rng.uniform(2, 14)
        return 0.5 + 0.5 * np.sin(2 * np.pi * f * (xr + warp))
    if kind == 2:  # checker
        c = rng.uniform(3, 12)
        return (
            ((np.floor((xr + warp) * c) + np.floor(yr * c)) % 2) * 0.8 + 0.1 * _fbm(rng, size, octaves=2)
        ).astype(np.float32)
    if kind == 3:  # rings around a random centre
        cx, cy = rng.random(2)
        r = np.hypot(x - cx, y - cy)
        return 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(3, 10) * (r + warp))
    if kind == 4:  # plaid
        f1, f2 = rng.uniform(2, 8, 2)
        return (0.25 * (2 + np.sin(2 * np.pi * f1 * xr) + np.sin(2 * np.pi * f2 * yr))).astype(np.float32)
    return np.clip(xr / max(float(xr.max()), 1e-6) + warp, 0, 1)  # gradient


_FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
    cv2.FONT_HERSHEY_PLAIN,
)
_CHARS = string.ascii_uppercase + string.ascii_lowercase + string.digits + "#%&@"


def _colour(palette: np.ndarray, rng: np.random.Generator) -> tuple[int, int, int]:
    c = palette[rng.integers(len(palette))].astype(int)
    if rng.random() < 0.3:
        c = 255 - c
    return tuple(int(v) for v in c)


def _overlays(img: np.ndarray, rng: np.random.Generator, palette: np.ndarray) -> None:
    """Draw blobs, text, lines and labels in place: the unique features that make poses observable."""
    size = img.shape[0]
    for _ in range(int(rng.integers(2, 12))):  # blobs
        c = (int(rng.integers(size)), int(rng.integers(size)))
        ax = (int(rng.integers(size // 40, size // 6)), int(rng.integers(size // 40, size // 6)))
        th = -1 if rng.random() < 0.7 else int(rng.integers(2, 8))
        cv2.ellipse(img, c, ax, float(rng.uniform(0, 180)), 0, 360, _colour(palette, rng), th, cv2.LINE_AA)
    for _ in range(int(rng.integers(0, 5))):  # polygons and lines
        pts = rng.integers(0, size, (int(rng.integers(2, 6)), 1, 2)).astype(np.int32)
        if rng.random() < 0.5:
            cv2.fillPoly(img, [pts], _colour(palette, rng), cv2.LINE_AA)
        else:
            cv2.polylines(img, [pts], False, _colour(palette, rng), int(rng.integers(2, 10)), cv2.LINE_AA)
    if rng.random() < 0.5:  # a label patch
        x0, y0 = (int(v) for v in rng.integers(0, size * 3 // 4, 2))
        w, h = int(rng.integers(size // 6, size // 2)), int(rng.integers(size // 10, size // 3))
        cv2.rectangle(img, (x0, y0), (x0 + w, y0 + h), _colour(palette, rng), -1)
        cv2.rectangle(img, (x0, y0), (x0 + w, y0 + h), _colour(palette, rng), int(rng.integers(1, 5)))
    for _ in range(int(rng.integers(1, 7))):  # text
        txt = "".join(rng.choice(list(_CHARS), int(rng.integers(2, 9))))
        scale = float(rng.uniform(0.6, 3.5)) * size / 512
        org = (int(rng.integers(-size // 8, size * 3 // 4)), int(rng.integers(size // 10, size)))
        cv2.putText(
            img,
            txt,
            org,
            _FONTS[rng.integers(len(_FONTS))],
            scale,
            _colour(palette, rng),
            max(1, int(rng.integers(1, 5) * size / 512)),
            cv2.LINE_AA,
        )


def random_texture(
    rng: np.random.Generator, size: int = TEXTURE_SIZE, *, ring_only: bool = False, overlays: bool = True
) -> np.ndarray:
    """(size,size,3) uint8 RGB random texture. ``ring_only``: colour varies along rows only (for the
    rotationally symmetric objects, whose u coordinate is the angle)."""
    palette = random_palette(rng)
    lut = _lut(rng, palette)
    if ring_only:
        col = (
            _fbm(rng, size)[:, :1]
            if rng.random() < 0.5
            else (
                0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 10) * np.linspace(0, 1, size, dtype=np.float32))
            )[:, None]
        )
        return np.ascontiguousarray(np.broadcast_to(lut[(col * 255).astype(np.uint8)], (size, size, 3)))
    img = lut[(_base_field(rng, size) * 255).astype(np.uint8)]
    img = np.ascontiguousarray(img)
    if overlays:
        _overlays(img, rng, palette)
    if rng.random() < 0.3:  # fine grain, like print or material
        grain = cv2.resize(
            rng.normal(0, rng.uniform(3, 12), (size // 2, size // 2)).astype(np.float32),
            (size, size),
            interpolation=cv2.INTER_NEAREST,
        )
        img = np.clip(img + grain[..., None], 0, 255).astype(np.uint8)
    return img


