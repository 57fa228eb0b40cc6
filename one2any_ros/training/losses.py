"""The network's training loss: SmoothL1 on the masked ROC, the minimum over the object's symmetric variants (final
output, plus ``match_weight`` x the matching-only output), plus ``conf_weight`` x a Laplace NLL of the per-pixel error
(error detached: the confidence learns to predict the error without pulling the ROC).

``noncovisible_weight`` < 1 weighs down the ROC terms on query pixels the reference camera never saw
(``training.pairs.covisible``): the matching head can only carry a reference pixel's ROC, so there the target is out
of its reach and the gradient mostly noise (at wide baselines most of the query); the confidence still learns on
every pixel that they are unreliable. ``match_ce_weight`` > 0 adds a cross-entropy on the matching head's logits
(``match_cross_entropy``): on co-visible pixels, the attention mass on the reference cells that show the pixel's
point. SmoothL1 on the attention-weighted mean alone is content with attention spread so that it averages out near
the truth; the cross-entropy asks for the right cells (the coarse matching loss of LoFTR, Sun et al., CVPR 2021).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _variant_loss(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """pred (B,3,G,G), gt (B,S,3,G,G), valid (B,1,G,G) -> (per-sample min SmoothL1 (B,), best variant (B,))."""
    l = F.smooth_l1_loss(pred[:, None].expand_as(gt), gt, beta=beta, reduction="none").sum(2)  # (B,S,G,G)
    cnt = valid.sum((1, 2, 3)).clamp_min(1.0)
    per = (l * valid).sum((2, 3)) / cnt[:, None]  # (B,S)
    best, k = per.min(dim=1)
    return best, k


def match_cross_entropy(logits: torch.Tensor, gt_roc: torch.Tensor, use: torch.Tensor, ref: torch.Tensor,
                        ref_valid: torch.Tensor, band: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The matching head's cross-entropy against the reference cells that show each query cell's surface point.

    logits (B,L,Lk) over the reference cells (-inf where invalid); gt_roc (B,3,G,G) the query's true ROC (the chosen
    symmetry variant); use (B,1,G,G) the cells to train (valid and co-visible); ref (B,7,N,N) / ref_valid (B,1,N,N)
    the reference input, whose ROC pooled at the output stride is what the cells carry (``pool_roc``, as the
    encoder does). Positives: reference cells within ``band`` (reference-radius units) of the true ROC; the loss is
    -log of the attention mass on them (several may show the point: cells are coarse). Cells with no positive are
    skipped. -> (mean loss, number of cells used, fraction whose most-attended cell is a positive)."""
    from one2any_ros.core.model.network import pool_roc

    stride = ref.shape[-1] // gt_roc.shape[-1]
    values, vvalid = pool_roc(ref[:, 3:6].float(), ref_valid.float() * ref[:, 6:7].float(), stride)
    v = values.flatten(2).transpose(1, 2)  # (B,Lk,3)
    q = gt_roc.flatten(2).transpose(1, 2)  # (B,L,3)
    pos = (torch.cdist(q, v) < band) & vvalid.flatten(1)[:, None, :].bool()  # (B,L,Lk)
    rows = use.flatten(1).bool() & pos.any(-1) & torch.isfinite(logits).any(-1)
    n = rows.sum()
    if int(n) == 0:
        zero = logits.sum() * 0.0
        return zero, n, zero.detach()
    lg = logits[rows]
    ce = torch.logsumexp(lg, -1) - torch.logsumexp(lg.masked_fill(~pos[rows], float("-inf")), -1)
    top1 = pos[rows].gather(1, lg.argmax(-1, keepdim=True)).float().mean()
    return ce.mean(), n, top1


def compute_loss(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], loss_cfg: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """The training loss and its parts (floats for logging). See the module docstring."""
    gt, valid = batch["gt"].float(), batch["gt_valid"].float()
    roc, match = out["roc"].float(), out["roc_match"].float()
    beta = float(loss_cfg.get("beta", 0.1))
    roc_valid = valid
    lam = float(loss_cfg.get("noncovisible_weight", 1.0))
    covis = batch.get("gt_covisible")
    if covis is not None and lam < 1.0:
        roc_valid = valid * (covis.float() + lam * (1.0 - covis.float()))
    l_roc, k = _variant_loss(roc, gt, roc_valid, beta)
    l_match, _ = _variant_loss(match, gt, roc_valid, beta)
    gt_best = gt[torch.arange(len(k), device=gt.device), k]
    err = (roc - gt_best).abs().mean(1, keepdim=True).detach()  # (B,1,G,G) mean |error| per coordinate
    log_b = out["log_b"].float()
    nll = err / log_b.exp() + log_b
    cnt = valid.sum().clamp_min(1.0)
    l_conf = (nll * valid).sum() / cnt
    loss = l_roc.mean() + float(loss_cfg.get("match_weight", 0.5)) * l_match.mean() + float(loss_cfg.get("conf_weight", 0.1)) * l_conf
    parts = {"loss_roc": float(l_roc.mean().detach()), "loss_match": float(l_match.mean().detach()),
             "loss_conf": float(l_conf.detach())}
    ce_w = float(loss_cfg.get("match_ce_weight", 0.0))
    if "match_logits" in out and covis is not None and "ref" in batch:  # logged even at weight 0: how well it matches
        with torch.set_grad_enabled(ce_w > 0 and torch.is_grad_enabled()):
            l_ce, n_ce, top1 = match_cross_entropy(out["match_logits"], gt_best, valid * covis.float(), batch["ref"],
                                                   batch["ref_valid"], float(loss_cfg.get("match_ce_band", 0.15)))
        if ce_w > 0:
            loss = loss + ce_w * l_ce
        if int(n_ce):
            parts["loss_match_ce"], parts["match_top1"] = float(l_ce.detach()), float(top1)
    parts["loss"] = float(loss.detach())
    with torch.no_grad():
        err_map = (roc - gt_best).norm(dim=1, keepdim=True)
        parts["roc_err"] = float((err_map * valid).sum() / cnt)
        if covis is not None:  # where matching is possible at all: the error a matching network can bring down
            cv = valid * covis.float()
            parts["roc_err_covisible"] = float((err_map * cv).sum() / cv.sum().clamp_min(1.0))
    return loss, parts
