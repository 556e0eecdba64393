"""The papers' task losses, each ignoring frames whose label is missing (NaN / -1).

- VA: 1 - CCC, averaged over valence and arousal (CCC over the batch, population moments as ABAW).
- EXPR: cross-entropy with per-class weights (inverse class frequency of the training labels).
- AU: binary cross-entropy on logits with a positive weight per AU (negatives / positives).
DDAMFN adds 0.1 x its attention-divergence loss (core.models.ddamfn.attention_loss) on top.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from core.labels import AUS, EXPRESSIONS


def ccc_loss(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """1 - mean CCC over columns of (N, K) predictions and labels; rows with a NaN label are left out.

    A column with fewer than two valid rows adds nothing; with no usable column the loss is 0 (with a
    gradient path, so that a batch without VA labels still backpropagates cleanly).
    """
    terms = []
    for k in range(gt.shape[1]):
        keep = ~torch.isnan(gt[:, k])
        if keep.sum() < 2:
            continue
        x, y = pred[keep, k].float(), gt[keep, k].float()
        mx, my = x.mean(), y.mean()
        vx, vy = ((x - mx) ** 2).mean(), ((y - my) ** 2).mean()
        cov = ((x - mx) * (y - my)).mean()
        terms.append(1 - 2 * cov / (vx + vy + (mx - my) ** 2 + 1e-8))
    if not terms:
        return pred.sum() * 0.0
    return torch.stack(terms).mean()


def expr_loss(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted cross-entropy over the 8 classes; target -1 = no label. 0 when no row has a label."""
    keep = target >= 0
    if not keep.any():
        return logits.sum() * 0.0
    w = None if weights is None else weights.to(logits.device, torch.float32)
    return F.cross_entropy(logits[keep].float(), target[keep], weight=w)


def au_loss(logits: torch.Tensor, target: torch.Tensor, pos_weight: torch.Tensor | None = None) -> torch.Tensor:
    """BCE-with-logits over (N, 12), averaged over the valid (non-NaN) entries; 0 when there is none."""
    keep = ~torch.isnan(target)
    if not keep.any():
        return logits.sum() * 0.0
    pw = None if pos_weight is None else pos_weight.to(logits.device, torch.float32).expand_as(logits)
    per = F.binary_cross_entropy_with_logits(logits.float(), torch.nan_to_num(target), pos_weight=pw,
                                             reduction="none")
    return per[keep].mean()


def task_losses(out: dict, target: dict, tasks, expr_weights=None, au_pos_weight=None) -> dict:
    """Per-task losses of one batch: out/target hold va (N,2), expr (N,8)/(N,), au (N,12)."""
    losses = {}
    if "va" in tasks:
        losses["va"] = ccc_loss(out["va"], target["va"])
    if "expr" in tasks:
        losses["expr"] = expr_loss(out["expr"], target["expr"], expr_weights)
    if "au" in tasks:
        losses["au"] = au_loss(out["au"], target["au"], au_pos_weight)
    return losses


def class_weights(labels: np.ndarray) -> np.ndarray:
    """Inverse-frequency weights for the 8 expressions, mean 1 over the classes present; an absent class
    gets weight 1 (it never appears as a target, so its weight does not matter)."""
    labels = np.asarray(labels, dtype=np.float64)
    labels = labels[~np.isnan(labels) & (labels >= 0)].astype(np.int64)
    counts = np.bincount(labels, minlength=len(EXPRESSIONS)).astype(np.float64)
    weights = np.ones(len(EXPRESSIONS))
    present = counts > 0
    if present.any():
        weights[present] = counts[present].sum() / (present.sum() * counts[present])
    return weights


def pos_weights(labels: np.ndarray, max_weight: float = 100.0) -> np.ndarray:
    """Per-AU positive weights negatives / positives over valid labels (N, 12), capped; 1 for an AU with
    no positive or no negative."""
    labels = np.asarray(labels, dtype=np.float64)
    pos = np.nansum(labels == 1, axis=0).astype(np.float64)
    neg = np.nansum(labels == 0, axis=0).astype(np.float64)
    weights = np.ones(len(AUS))
    ok = (pos > 0) & (neg > 0)
    weights[ok] = np.minimum(neg[ok] / pos[ok], max_weight)
    return weights
