"""Matrix NMS (SOLOv2), batched and with fixed-size outputs.

Semantics are mmdetection's `mask_matrix_nms`: candidates sorted by score, the
top `nms_pre` kept, pairwise mask IoU from one matrix product, a candidate j is
decayed by  min_i f(iou_ij) / f(max_k iou_ki)  over higher-scored candidates i of
the same class (f = exp(-sigma * iou^2) or 1 - iou), scores below `filter_thr`
dropped, the best `max_num` returned in descending order.

The export stage replaces the `MatrixNMS` module by one custom ONNX node
"MatrixNMS" (attributes = `MatrixNMS.attributes()`) served by our TensorRT plugin,
so this file is the single definition of what that node computes.

Padding convention: a candidate whose score is <= 0 or NaN is absent (it
neither suppresses nor is returned; +Inf is an ordinary score). Callers zero the scores they would have removed,
which keeps every shape static.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segtrt import SegtrtError
from segtrt.models.solo_ops import gather_rows

KERNELS = ("gaussian", "linear")


def matrix_nms(
    masks: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    *,
    mask_threshold: float = 0.5,
    kernel: str = "gaussian",
    sigma: float = 2.0,
    nms_pre: int = 500,
    max_num: int = 100,
    filter_thr: float = 0.05,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Matrix NMS over a batch of candidate masks.

    Args:
        masks: [B, N, h, w] mask probabilities; a pixel belongs to the mask when > mask_threshold.
        scores: [B, N] candidate scores; <= 0 marks padding.
        labels: [B, N] integer class of each candidate.
        (The plugin node's input order, which the CPU twin shares; mmdetection's mask_matrix_nms
        takes labels before scores.)
        nms_pre, max_num: <= 0 means no limit (as in mmdetection).
        filter_thr: <= 0 means no score filter after the decay.

    Returns:
        count int32 [B]: kept candidates per image (at most max_num).
        keep int64 [B, M]: indices into N of the kept candidates, best first, -1 padded.
        scores [B, M]: decayed scores, 0 padded.
        labels [B, M]: their labels, -1 padded.
        M = max_num (or N when max_num <= 0).
    """
    if kernel not in KERNELS:
        raise SegtrtError(f"unknown Matrix NMS kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
    num_candidates = scores.shape[1]
    out_size = max_num if max_num > 0 else num_candidates
    top = min(nms_pre, num_candidates) if nms_pre > 0 else num_candidates
    if top == 0:  # static shape: no candidates at all
        batch = scores.shape[0]
        none = torch.full((batch, out_size), -1, dtype=torch.int64, device=scores.device)
        count = torch.zeros(batch, dtype=torch.int32, device=scores.device)
        return count, none, scores.new_zeros(batch, out_size), none.to(labels.dtype)

    # topk ranks NaN above everything; a NaN score is no candidate and must not take an nms_pre slot
    scores = torch.where(scores.isnan(), torch.full_like(scores, float("-inf")), scores)
    sorted_scores, order = scores.topk(top, dim=1)
    sorted_labels = gather_rows(labels, order)
    binary = (gather_rows(masks, order) > mask_threshold).flatten(2).to(scores.dtype)  # [B, K, hw]
    valid = sorted_scores > 0

    area = binary.sum(2)
    intersection = binary @ binary.transpose(1, 2)
    union = area.unsqueeze(2) + area.unsqueeze(1) - intersection
    # union is 0 only for two empty masks, where the overlap is 0 as well
    iou = (intersection / union.clamp(min=1)).triu(diagonal=1)
    # row i suppresses column j: i scores higher, same class, and i is a real candidate
    suppressor = (sorted_labels.unsqueeze(2) == sorted_labels.unsqueeze(1)) & valid.unsqueeze(2)
    decay_iou = iou * suppressor
    # how much each suppressor i was itself suppressed: max over its own betters
    compensate_iou = decay_iou.max(dim=1).values.unsqueeze(2)  # [B, K, 1], indexed by row i
    if kernel == "gaussian":
        ratio = torch.exp(-sigma * decay_iou**2) / torch.exp(-sigma * compensate_iou**2)
    else:
        ratio = (1 - decay_iou) / (1 - compensate_iou)
    decayed = sorted_scores * ratio.min(dim=1).values

    kept = valid & (decayed >= filter_thr) if filter_thr > 0 else valid
    ranked = min(out_size, top)
    best_scores, best = torch.where(kept, decayed, torch.full_like(decayed, -1)).topk(ranked, dim=1)
    best_kept = best_scores >= 0
    keep = torch.where(best_kept, gather_rows(order, best), torch.full_like(best, -1))
    out_scores = torch.where(best_kept, best_scores, torch.zeros_like(best_scores))
    out_labels = torch.where(best_kept, gather_rows(sorted_labels, best), torch.full_like(best, -1).to(labels.dtype))
    if ranked < out_size:
        pad = (0, out_size - ranked)
        keep, out_scores, out_labels = F.pad(keep, pad, value=-1), F.pad(out_scores, pad), F.pad(out_labels, pad, value=-1)
    count = best_kept.sum(1).to(torch.int32)
    return count, keep, out_scores, out_labels


class MatrixNMS(nn.Module):
    """`matrix_nms` with its settings held as attributes (the unit the export stage swaps)."""

    def __init__(self, mask_threshold=0.5, kernel="gaussian", sigma=2.0, nms_pre=500, max_num=100, filter_thr=0.05):
        super().__init__()
        if kernel not in KERNELS:
            raise SegtrtError(f"unknown Matrix NMS kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
        self.mask_threshold = float(mask_threshold)
        self.kernel = kernel
        self.sigma = float(sigma)
        self.nms_pre = int(nms_pre)
        self.max_num = int(max_num)
        self.filter_thr = float(filter_thr)

    def attributes(self) -> dict:
        """The settings under the names of the ONNX node's attributes."""
        return {
            "kernel": self.kernel,
            "sigma": self.sigma,
            "mask_threshold": self.mask_threshold,
            "nms_pre": self.nms_pre,
            "max_num": self.max_num,
            "filter_thr": self.filter_thr,
        }

    def forward(self, masks: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor):
        """See `matrix_nms`: returns (count, keep, scores, labels)."""
        return matrix_nms(masks, scores, labels, **self.attributes())

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in self.attributes().items())
