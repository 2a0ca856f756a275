"""Losses of SOLO and SOLOv2: sigmoid focal loss (categories) and dice loss (masks).

Both follow mmdetection's definitions (FocalLoss with use_sigmoid=True, DiceLoss with
naive_dice=False), so weights trained there and here mean the same thing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sigmoid_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Element-wise focal loss (Lin et al. 2017), not reduced.

    logits, targets: same shape; targets are 0/1 (one-hot rows, background = all zeros).
    Returns a tensor of that shape: -alpha_t (1 - p_t)^gamma log(p_t).
    """
    targets = targets.to(logits.dtype)
    probs = logits.sigmoid()
    cross_entropy = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = probs * targets + (1 - probs) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return alpha_t * (1 - p_t) ** gamma * cross_entropy


def dice_loss(probs: torch.Tensor, targets: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Per-mask dice loss 1 - 2|P∩T| / (|P|² + |T|²) on soft masks.

    probs: [N, ...] probabilities in 0..1; targets: [N, ...] 0/1 masks.
    Returns [N]. `eps` is added to each squared sum, as in mmdetection, so an
    empty prediction on an empty target gives 1, not NaN.
    """
    probs = probs.reshape(probs.shape[0], -1)
    targets = targets.reshape(targets.shape[0], -1).to(probs.dtype)
    intersection = (probs * targets).sum(1)
    pred_sq = (probs * probs).sum(1) + eps
    target_sq = (targets * targets).sum(1) + eps
    return 1 - 2 * intersection / (pred_sq + target_sq)
