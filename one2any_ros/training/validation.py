"""Validation of the network during training: on a fixed set of pairs of VALIDATION objects, the loss, the ROC error
and the pose accuracy through the same RANSAC + weighted Umeyama the backend uses, per rotation bin."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from one2any_ros.core.model.network import One2AnyNet, confidence_from_log_b
from one2any_ros.core.protocol import is_hit, rotation_bin
from one2any_ros.training.losses import compute_loss


def _stack(pairs: list[dict], keys: tuple[str, ...], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.stack([p[k] for p in pairs])).to(device) for k in keys}


def pose_from_prediction(roc: np.ndarray, conf: np.ndarray, points: np.ndarray, valid: np.ndarray, scale: float,
                         diameter: float, *, threshold: float = 0.05, iterations: int = 256, seed: int = 0) -> np.ndarray | None:
    """T_query_C (4,4) from an ROC grid (3,G,G), confidence (1,G,G) and query points (3,G,G) m with valid
    (1,G,G), by the backend's RANSAC + weighted Umeyama; None with fewer than 3 valid cells."""
    from one2any_ros.core.geometry import ransac_rigid

    m = valid[0] > 0
    if m.sum() < 3:
        return None
    src = roc[:, m].T.astype(np.float64) * scale
    dst = points[:, m].T.astype(np.float64)
    w = conf[0][m].astype(np.float64) + 1e-3
    return ransac_rigid(src, dst, w, threshold=threshold * diameter, iterations=iterations, rng=np.random.default_rng(seed)).T


def validate(model: One2AnyNet, pairs: list[dict], device: torch.device, loss_cfg: dict, *, batch_size: int = 16) -> dict[str, Any]:
    """Validation loss, ROC error and pose accuracy (ADD(-S over the symmetry variants) of the reference
    cloud < 0.1 d, pose by RANSAC on the predicted ROC) overall and per rotation bin."""
    from one2any_ros.core.geometry import transform_points

    model.eval()
    keys = ("ref", "ref_valid", "query", "gt", "gt_valid") + (("gt_covisible",) if pairs and "gt_covisible" in pairs[0] else ())
    tot: dict[str, float] = {}
    seen: dict[str, int] = {}  # pairs behind each part (the matching ones skip a batch without co-visible cells)
    hits: dict[str, list[bool]] = {}
    with torch.inference_mode():
        for i in range(0, len(pairs), batch_size):
            chunk = pairs[i:i + batch_size]
            b = _stack(chunk, keys, device)
            out = model(b["ref"], b["ref_valid"], b["query"])
            _, parts = compute_loss(out, b, loss_cfg)
            for k, v in parts.items():
                tot[k] = tot.get(k, 0.0) + v * len(chunk)
                seen[k] = seen.get(k, 0) + len(chunk)
            roc = out["roc"].float().cpu().numpy()
            conf = confidence_from_log_b(out["log_b"].float()).cpu().numpy()
            for j, p in enumerate(chunk):
                T = pose_from_prediction(roc[j], conf[j], p["q_points"], p["q_points_valid"], float(p["scale"]),
                                         float(p["diameter"]), seed=i + j)
                ok = False
                if T is not None:
                    n = int(p["num_variants"])
                    pts = p["ref_points"].astype(np.float64)
                    est = transform_points(T, pts)
                    gts = transform_points(p["T_query_C"][:n], pts)  # (n,P,3)
                    add = np.linalg.norm(gts - est[None], axis=2).mean(axis=1).min()
                    ok = is_hit(add, float(p["diameter"]))
                hits.setdefault(rotation_bin(float(p["angle_deg"])), []).append(ok)
                hits.setdefault("all", []).append(ok)
    model.train()
    n = max(len(pairs), 1)
    res: dict[str, Any] = {"val_loss": tot.get("loss", 0.0) / n, "val_roc_err": tot.get("roc_err", 0.0) / n,
                           "val_pose_acc": float(np.mean(hits.get("all", [False])))}
    for k in ("roc_err_covisible", "loss_match_ce", "match_top1"):
        if k in tot:
            res[f"val_{k}"] = tot[k] / seen[k]
    for k, v in hits.items():
        if k != "all":
            res[f"val_{k}"] = float(np.mean(v))
    return res
