"""The evaluation protocol's shared definitions, in one place: the rotation bins, the 0.1 d criterion, the bins
a learned model must win in, and the latency stages the bench reports (docs/architecture.md, "The one-reference
evaluation protocol"). Evaluation, training validation, the scorer, promotion, the demos and the bench all read
them from here, so a number in one report means the same as in another.
"""
from __future__ import annotations

import numpy as np

# Rotation difference reference -> query (deg): [lo, hi), the last bin closed at 180.
ROTATION_BINS: tuple[tuple[str, float, float], ...] = (
    ("0-30", 0.0, 30.0), ("30-60", 30.0, 60.0), ("60-90", 60.0, 90.0), ("90-120", 90.0, 120.0), ("120-180", 120.0, 180.0),
)
BIN_NAMES: tuple[str, ...] = tuple(name for name, _, _ in ROTATION_BINS)

# Where learning has to add something over the training-free search: a bundled network or scorer must not lose
# there (one2any_ros.training.promote, one2any_ros.training.train_scorer).
DECISIVE_BINS: tuple[str, ...] = ("60-90", "90-120")

# ADD(-S) @ 0.1 d: a pose is right when its error is under this fraction of the object's diameter (BOP / LINEMOD).
HIT_FRACTION = 0.1

# Latency stages of one estimate, in pipeline order (one2any bench, tools/make_benchmarks_doc.py). "network",
# "ransac" and "grid" are the learned backend's parts of "hypotheses" (the decoder's forward pass, RANSAC on its
# ROC, the classic grid pooled with it; with a second core the network and RANSAC run beside the grid, so "hypotheses"
# is the longer of the two, not their sum: core/background.py); "anchored" is tracking's ask for the network and its
# RANSAC alone (``track_network_every``); "rerank" is its hypothesis scorer on the refined candidates.
STAGES: tuple[str, ...] = ("decode", "prepare", "network", "ransac", "grid", "hypotheses", "anchored", "verify",
                           "sweep", "refine", "rerank", "total")


def rotation_bin(angle_deg: float) -> str:
    """The bin name of a rotation difference in degrees (anything outside [0, 180), NaN included, goes to the
    last bin).

    Args:
        angle_deg: rotation difference, degrees.

    Returns:
        one of ``BIN_NAMES`` (e.g. "30-60").
    """
    for name, lo, hi in ROTATION_BINS:
        if lo <= angle_deg < hi:
            return name
    return BIN_NAMES[-1]


def is_hit(err: float | np.ndarray, diameter: float | np.ndarray = 1.0) -> bool | np.ndarray:
    """The ADD(-S) @ 0.1 d criterion: ``err < HIT_FRACTION * diameter``, both in the same unit (errors already
    divided by the diameter: leave ``diameter`` at 1). An infinite or NaN error (a failed estimate) is a miss.
    Scalars give a bool, arrays an elementwise bool array.

    Args:
        err: scalar or (N,) float ADD(-S) errors (inf or NaN for a failed estimate).
        diameter: scalar or (N,) float object diameters, in the errors' unit.

    Returns:
        bool for scalars, else a bool array of the broadcast shape.
    """
    e = np.asarray(err, np.float64)
    with np.errstate(invalid="ignore"):
        hit = np.isfinite(e) & (e < HIT_FRACTION * np.asarray(diameter, np.float64))
    return bool(hit) if hit.ndim == 0 else hit
