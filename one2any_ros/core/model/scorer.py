"""The learned hypothesis scorer: a small CNN that looks at the query next to the reference rendered under a pose
hypothesis and says how right the pose looks, lent by the learned backend to the final ranking
(docs/hypothesis_scorer.md, "Where it acts").

Why: on validation objects beyond 60 deg the geometric verifier (depth + colour agreement, free space) picks a
wrong candidate where a right one is among the refined five for about 1 query in 6 (front-onto-front flips
that fit the visible surface equally well), and every per-pixel signal of the ROC network was at chance there.
A comparison image of the whole crop (where the texture lands, where the silhouette is left uncovered, where
the rendered surface is in front of or behind the observed one) is a pattern a CNN can learn from many
training pools, the way FoundationPose ranks its hypotheses.

Input per hypothesis, on a G x G grid over the query crop (``camera.crop_box``), 11 channels:
query colour features (3, ``colour.colour_features``), query depth relative to its median / diameter (1), query
mask (1); the reference cloud placed by the hypothesis and splatted into the same grid, nearest point wins:
its colour features (3), its relative depth (1), coverage (1), depth difference to the query clipped to +-1 (1).
The verifier's score of the hypothesis enters as a 12th constant channel and again before the head.

The splatting is written by hand (a z-buffer by ``np.argsort`` + fancy-index assignment): no library here renders
a coloured point cloud into a small grid without an OpenGL context, and it is cheap (docs/architecture.md, Choices
measured in the code, "Hypothesis scorer").
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from one2any_ros.core.errors import CheckpointError
from one2any_ros.core.geometry import subsample, transform_points
from one2any_ros.core.model.checkpoint import checkpoint_paths, load_state_into, read_description, save_tensors, write_description
from one2any_ros.core.model.inputs import crop_nearest, crop_window
from one2any_ros.core.strict_config import from_dict_strict

SCORER_FORMAT = "one2any_hypothesis_scorer"
SCORER_VERSION = 1
SCORER_ARCHITECTURE = "comparison_cnn"
DEFAULT_SCORER = Path(__file__).resolve().parent / "default_scorer.safetensors"
IMAGE_CHANNELS = 11
REFERENCE_POINTS = 2500  # reference cloud points splatted per hypothesis (once-per-reference subsample)


@dataclass(frozen=True)
class ScorerConfig:
    grid: int = 32  # comparison image side (cells over the query crop)
    widths: tuple[int, ...] = (32, 64, 64, 96, 128)  # conv widths; strides 1, 2, 1, 2, 2
    hidden: int = 64

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ScorerConfig":
        return from_dict_strict(cls, d, "scorer architecture fields",
                                lambda k, v: tuple(int(w) for w in v) if k == "widths" else v)


class HypothesisScorer(nn.Module):
    """(B, 11, G, G) comparison images + (B,) verifier scores -> (B,) logits (higher = more likely right)."""

    STRIDES = (1, 2, 1, 2, 2)

    def __init__(self, cfg: ScorerConfig = ScorerConfig()) -> None:
        super().__init__()
        if len(cfg.widths) != len(self.STRIDES):
            raise ValueError(f"scorer needs {len(self.STRIDES)} conv widths, got {len(cfg.widths)}")
        self.cfg = cfg
        layers, c_in = [], IMAGE_CHANNELS + 1
        for w, s in zip(cfg.widths, self.STRIDES):
            layers += [nn.Conv2d(c_in, w, 3, s, 1), nn.GroupNorm(8, w), nn.ReLU()]
            c_in = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(2 * c_in + 1, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, 1))

    def forward(self, images: torch.Tensor, base_score: torch.Tensor) -> torch.Tensor:
        b = base_score.to(images.dtype)
        x = torch.cat([images, b[:, None, None, None].expand(-1, 1, *images.shape[2:])], 1)
        h = self.features(x)
        return self.head(torch.cat([h.mean((2, 3)), h.amax((2, 3)), b[:, None]], 1))[:, 0]


def listwise_loss(logits: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """-log of the softmax mass on the right hypotheses of one pool (a pool with none or only right ones has no
    ranking to learn and must be filtered out before).

    Args:
        logits: (B,) float tensor, the scorer's logits for one pool of B hypotheses.
        right: (B,) bool tensor, which hypotheses are right (at least one right and one wrong).

    Returns:
        0-d float tensor, >= 0.
    """
    return torch.logsumexp(logits, 0) - torch.logsumexp(logits[right], 0)


# --- comparison images ----------------------------------------------------------------------------------

@dataclass
class ScorerReference:
    """The reference cloud the scorer splats, subsampled once per reference."""

    points_C: np.ndarray  # (M,3) metres
    colours: np.ndarray  # (M,3) colour features
    diameter: float


def scorer_reference(points_C: np.ndarray, colour_C: np.ndarray, diameter: float) -> ScorerReference:
    """The reference cloud the scorer splats: a fixed subsample (seed 0), so a reference always gives the same.

    Args:
        points_C: (N, 3) float reference points in C, metres.
        colour_C: (N, 3) colour features of those points (``colour.colour_features``).
        diameter: object diameter, metres.

    Returns:
        ScorerReference: points_C (M, 3) metres and colours (M, 3) float32, M <= ``REFERENCE_POINTS``.
    """
    i = subsample(points_C, REFERENCE_POINTS, np.random.default_rng(0))
    return ScorerReference(points_C=points_C[i], colours=np.asarray(colour_C[i], np.float32), diameter=float(diameter))


@dataclass
class ScorerQuery:
    """The query half of every comparison image, computed once per frame."""

    window: Any  # inputs.CropWindow over the grid
    channels: np.ndarray  # (5, G, G): colour features (3), relative depth, mask
    rel_depth: np.ndarray  # (G, G)
    has_depth: np.ndarray  # (G, G) bool
    median_depth: float
    K: np.ndarray


def scorer_query(depth: np.ndarray, mask: np.ndarray, colour: np.ndarray, K: np.ndarray, diameter: float,
                 grid: int) -> ScorerQuery:
    """``colour``: the query's colour features over the image (``colour.colour_features(rgb, mask)``).

    Args:
        depth: (H, W) float query depth, metres, 0 = invalid.
        mask: (H, W) bool query object mask, not empty.
        colour: (H, W, 3) float32 colour features.
        K: (3, 3) intrinsics, pixels.
        diameter: object diameter, metres (relative depth is divided by it).
        grid: G, the comparison images' side, cells.

    Returns:
        ScorerQuery: channels (5, G, G) float32, rel_depth (G, G) float32, has_depth (G, G) bool, the mask's
        median depth in metres and K (3, 3) float64.
    """
    win = crop_window(mask, grid)
    qm = crop_nearest(mask, win).astype(np.float32)
    qd = crop_nearest(depth, win).astype(np.float32)
    # the window holds the whole mask (crop_box pads its bounding box), so its median needs only the window's pixels
    h, w = mask.shape
    rows, cols = slice(max(win.v0, 0), min(win.v0 + win.side, h)), slice(max(win.u0, 0), min(win.u0 + win.side, w))
    d = depth[rows, cols]
    valid = mask[rows, cols] & (d > 0)
    med = float(np.median(d[valid])) if valid.any() else float(np.median(qd[qd > 0])) if (qd > 0).any() else 1.0
    qdr = np.where(qd > 0, (qd - med) / diameter, 0.0).astype(np.float32)
    qcol = crop_nearest(colour, win).astype(np.float32, copy=False).transpose(2, 0, 1)  # the crop, not the frame, cast
    return ScorerQuery(window=win, channels=np.concatenate([qcol, qdr[None], qm[None]]).astype(np.float32),
                       rel_depth=qdr, has_depth=qd > 0, median_depth=med, K=np.asarray(K, np.float64))


def comparison_images(T_query_C: np.ndarray, ref: ScorerReference, query: ScorerQuery) -> np.ndarray:
    """(B,4,4) hypotheses -> (B, 11, G, G) float32 comparison images (module docstring).

    Args:
        T_query_C: (B, 4, 4) float hypotheses, C -> query camera, metres.
        ref: the splatted reference (M points).
        query: the frame's ``scorer_query``.

    Returns:
        (B, 11, G, G) float32: the query's 5 channels, then the reference under T: colour features (3), relative
        depth (depth - median) / diameter, coverage 0/1, and its depth difference to the query, clipped to [-1, 1].
    """
    G = query.window.size
    B = len(T_query_C)
    P = transform_points(T_query_C, ref.points_C)  # (B,M,3) query camera
    z = P[..., 2]
    zs = np.clip(z, 1e-6, None)
    K, win = query.K, query.window
    u = K[0, 0] * P[..., 0] / zs + K[0, 2]
    v = K[1, 1] * P[..., 1] / zs + K[1, 2]
    cell = win.side / G
    cc = np.floor((u - win.u0 + 0.5) / cell).astype(np.int64)
    rr = np.floor((v - win.v0 + 0.5) / cell).astype(np.int64)
    ok = (cc >= 0) & (cc < G) & (rr >= 0) & (rr < G) & (z > 0)
    lin = (np.arange(B)[:, None] * G * G + rr * G + cc)[ok]
    zo = z[ok]
    col = np.broadcast_to(ref.colours[None], P.shape)[ok]
    # the nearest point of each cell wins (z-buffering; of equal depths the last in the reference's order, as numpy
    # writes repeated indices in order): each cell's least depth by one unbuffered minimum, then only the points
    # that reach it written (a stable depth sort of all B x M points did the same at 6x the cost)
    near = np.full(B * G * G, np.inf)
    np.minimum.at(near, lin, zo)
    win_pts = np.flatnonzero(zo == near[lin])
    rz = np.zeros(B * G * G, np.float32)
    rcol = np.zeros((B * G * G, 3), np.float32)
    cov = np.zeros(B * G * G, np.float32)
    rz[lin[win_pts]] = zo[win_pts]
    rcol[lin[win_pts]] = col[win_pts]
    cov[lin[win_pts]] = 1.0
    rz, rcol, cov = rz.reshape(B, G, G), rcol.reshape(B, G, G, 3), cov.reshape(B, G, G)
    rdr = np.where(cov > 0, (rz - query.median_depth) / ref.diameter, 0.0)
    dd = np.where((cov > 0) & query.has_depth[None], np.clip(rdr - query.rel_depth[None], -1.0, 1.0), 0.0)
    return np.concatenate([np.broadcast_to(query.channels[None], (B, 5, G, G)), rcol.transpose(0, 3, 1, 2),
                           rdr[:, None], cov[:, None], dd[:, None]], axis=1).astype(np.float32)


# --- checkpoint I/O (same rules as model.checkpoint: safetensors + JSON, CheckpointError naming the file) --

def save_scorer(model: HypothesisScorer, path: str | os.PathLike, *, weight: float, training: dict | None = None,
                extra: dict | None = None) -> tuple[Path, Path]:
    """Write the scorer's tensors and JSON (architecture, the weight of its term in the ranking, training summary).

    Args:
        model: the scorer.
        path: ``X.safetensors``, ``X.json`` or the stem ``X``.
        weight: the weight of its term in the ranking, >= 0.
        training: the training summary, or None.
        extra: further top-level JSON fields, or None.

    Returns:
        (Path ``X.safetensors``, Path ``X.json``).
    """
    st_path, js_path = checkpoint_paths(path)
    state = dict(model.state_dict())
    save_tensors(state, st_path, metadata={"format": SCORER_FORMAT})
    meta = {"format": SCORER_FORMAT, "version": SCORER_VERSION,
            "architecture": {"name": SCORER_ARCHITECTURE, **model.cfg.to_dict()},
            "input": {"channels": IMAGE_CHANNELS, "reference_points": REFERENCE_POINTS,
                      "description": "model/scorer.py: query colour features, relative depth, mask | reference under T: "
                                     "colour features, relative depth, coverage, depth difference; + verifier score"},
            "weight": float(weight), "tensors": {k: list(v.shape) for k, v in state.items()}, "training": training or {}}
    write_description(st_path, js_path, meta, extra)
    return st_path, js_path


def load_scorer(path: str | os.PathLike | None = None) -> tuple[HypothesisScorer, dict[str, Any]]:
    """(scorer in eval mode on the CPU, its JSON); CheckpointError naming the file and what is wrong.

    Args:
        path: ``X.safetensors``, ``X.json`` or the stem ``X``; None = ``DEFAULT_SCORER``.

    Returns:
        (HypothesisScorer in eval mode, the parsed JSON with its "weight").

    Raises:
        CheckpointError: missing, corrupt, another format, version or architecture, or a weight that is not a
            finite number >= 0.
    """
    st_path, js_path = checkpoint_paths(DEFAULT_SCORER if path is None else path)
    meta = read_description(js_path, "scorer")
    if meta.get("format") != SCORER_FORMAT or meta.get("version") != SCORER_VERSION:
        got = (meta.get("format"), meta.get("version"))
        raise CheckpointError(f"{js_path} is not a {SCORER_FORMAT} version {SCORER_VERSION} file (got {got!r})",
                              reason="checkpoint_mismatch")
    arch = dict(meta.get("architecture") or {})
    if arch.pop("name", None) != SCORER_ARCHITECTURE:
        raise CheckpointError(f"{js_path}: scorer architecture is not {SCORER_ARCHITECTURE!r}", reason="checkpoint_mismatch")
    try:
        model = HypothesisScorer(ScorerConfig.from_dict(arch))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{js_path}: scorer architecture does not match this build: {e}", reason="checkpoint_mismatch") from e
    weight = meta.get("weight")
    if not isinstance(weight, (int, float)) or not np.isfinite(weight) or weight < 0:
        raise CheckpointError(f"{js_path}: 'weight' must be a finite number >= 0, got {weight!r}", reason="checkpoint_mismatch")
    load_state_into(model, st_path, js_path, meta, what="scorer")
    return model.eval(), meta
