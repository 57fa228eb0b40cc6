"""Lighting-tolerant colour features: what the reference and the verifier compare (and the hypothesis scorer sees).

Its own module because both the reference (reference.py, the cloud's colours) and the verifier (verify.py,
every hypothesis) use it, and neither should import the other for it.
"""
from __future__ import annotations

import numpy as np


def colour_features(rgb: np.ndarray, mask: np.ndarray | None = None, *, margin: float = 0.5) -> np.ndarray:
    """Lighting-tolerant colour: chromaticity (r, g) after a grey-world balance on the object (each
    channel divided by its mean over the mask), plus brightness relative to the object's median, so two
    views under different light intensity or colour still compare. With a mask, only the mask's box
    grown by ``margin`` on each side is computed (where hypotheses land); the rest stays 0."""
    h, w = rgb.shape[:2]
    out = np.zeros((h, w, 3), np.float32)
    if mask is not None and mask.any():
        rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
        mh, mw = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
        r0, r1 = max(0, int(rows[0] - margin * mh)), min(h, int(rows[-1] + margin * mh) + 1)
        c0, c1 = max(0, int(cols[0] - margin * mw)), min(w, int(cols[-1] + margin * mw) + 1)
        sel = mask[r0:r1, c0:c1]
    else:
        r0, r1, c0, c1 = 0, h, 0, w
        sel = np.ones((h, w), bool)
    x = rgb[r0:r1, c0:c1].astype(np.float32) + 1.0
    x /= x[sel].mean(axis=0) + 1e-6
    s = x.sum(axis=2, keepdims=True)
    out[r0:r1, c0:c1, :2] = 3.0 * x[..., :2] / s
    out[r0:r1, c0:c1, 2] = 0.25 * s[..., 0] / (np.median(s[sel]) + 1e-6)
    return out
