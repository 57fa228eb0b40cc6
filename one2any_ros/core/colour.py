"""Lighting-tolerant colour features: what the reference and the verifier compare (and the hypothesis scorer sees).

Its own module because both the reference (reference.py, the cloud's colours) and the verifier (verify.py,
every hypothesis) use it, and neither should import the other for it.
"""
from __future__ import annotations

import cv2
import numpy as np

from one2any_ros.core.camera import mask_box


def colour_features(rgb: np.ndarray, mask: np.ndarray | None = None, *, margin: float = 0.5) -> np.ndarray:
    """Lighting-tolerant colour: chromaticity (r, g) after a grey-world balance on the object (each
    channel divided by its mean over the mask), plus brightness relative to the object's median, so two
    views under different light intensity or colour still compare. With a mask, only the mask's box
    grown by ``margin`` on each side is computed (where hypotheses land); the rest stays 0.

    Args:
        rgb: (H, W, 3) uint8 RGB.
        mask: (H, W) bool object mask, or None for the whole image.
        margin: growth of the mask's box on each side, x the box's height and width.

    Returns:
        (H, W, 3) float32 features (r and g chromaticity x 3, each about 1 on grey, and brightness, about 0.75 at
        the object's median), 0 outside the computed box.
    """
    h, w = rgb.shape[:2]
    out = np.zeros((h, w, 3), np.float32)
    box = mask_box(mask) if mask is not None else (0, h, 0, w)
    if box is None:  # an empty mask: balance over the whole image
        box, mask = (0, h, 0, w), None
    r0, r1, c0, c1 = box
    mh, mw = r1 - r0, c1 - c0
    r0, r1 = max(0, int(r0 - margin * mh)), min(h, int(r1 - 1 + margin * mh) + 1)
    c0, c1 = max(0, int(c0 - margin * mw)), min(w, int(c1 - 1 + margin * mw) + 1)
    sel = None if mask is None else mask[r0:r1, c0:c1].view(np.uint8)
    x = rgb[r0:r1, c0:c1].astype(np.float32)
    mean = np.asarray(cv2.mean(x, mask=sel)[:3]) + 1.0  # the channels' means over the mask (rgb + 1)
    # per channel on contiguous planes: ~4x faster than numpy's strided (h,w,3) arithmetic on an object's box
    r, g, b = ((c + 1.0) * np.float32(1.0 / (m + 1e-6)) for c, m in zip(cv2.split(x), mean))
    s = r + g + b
    inv = np.float32(3.0) / s
    ref = np.median(s if sel is None else s[sel.view(bool)])
    out[r0:r1, c0:c1] = cv2.merge([r * inv, g * inv, s * np.float32(0.25 / (ref + 1e-6))])
    return out
