"""Box arithmetic for Mask R-CNN: delta coding, clipping, padded NMS, matching, sampling.

Boxes are (x1, y1, x2, y2) in input pixels. Delta coding and matching follow
torchvision's detection utilities so torchvision weights give the same boxes.
"""

from __future__ import annotations

import math

import torch
from torchvision.ops import box_iou, nms

# Largest log-scale change a regression may apply, so exp() cannot overflow (torchvision's value).
MAX_LOG_SCALE = math.log(1000.0 / 16)


def encode_boxes(targets: torch.Tensor, reference: torch.Tensor, weights: tuple) -> torch.Tensor:
    """Regression deltas [N, 4] that turn reference boxes [N, 4] into target boxes [N, 4]."""
    wx, wy, ww, wh = weights
    ref_w = reference[:, 2] - reference[:, 0]
    ref_h = reference[:, 3] - reference[:, 1]
    ref_x = reference[:, 0] + 0.5 * ref_w
    ref_y = reference[:, 1] + 0.5 * ref_h
    tgt_w = targets[:, 2] - targets[:, 0]
    tgt_h = targets[:, 3] - targets[:, 1]
    tgt_x = targets[:, 0] + 0.5 * tgt_w
    tgt_y = targets[:, 1] + 0.5 * tgt_h
    return torch.stack(
        (
            wx * (tgt_x - ref_x) / ref_w,
            wy * (tgt_y - ref_y) / ref_h,
            ww * torch.log(tgt_w / ref_w),
            wh * torch.log(tgt_h / ref_h),
        ),
        dim=1,
    )


def decode_boxes(deltas: torch.Tensor, reference: torch.Tensor, weights: tuple) -> torch.Tensor:
    """Apply deltas [N, 4k] (k boxes per reference, e.g. one per class) to reference boxes [N, 4].

    Returns boxes [N, k, 4].
    """
    wx, wy, ww, wh = weights
    deltas = deltas.reshape(deltas.shape[0], -1, 4)
    ref_w = (reference[:, 2] - reference[:, 0])[:, None]
    ref_h = (reference[:, 3] - reference[:, 1])[:, None]
    ref_x = reference[:, 0, None] + 0.5 * ref_w
    ref_y = reference[:, 1, None] + 0.5 * ref_h
    center_x = deltas[..., 0] / wx * ref_w + ref_x
    center_y = deltas[..., 1] / wy * ref_h + ref_y
    half_w = 0.5 * (torch.exp((deltas[..., 2] / ww).clamp(max=MAX_LOG_SCALE)) * ref_w)
    half_h = 0.5 * (torch.exp((deltas[..., 3] / wh).clamp(max=MAX_LOG_SCALE)) * ref_h)
    return torch.stack((center_x - half_w, center_y - half_h, center_x + half_w, center_y + half_h), dim=-1)


def clip_boxes(boxes: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Clip boxes [..., 4] to an image of size (H, W)."""
    height, width = image_size
    x = boxes[..., 0::2].clamp(0, width)
    y = boxes[..., 1::2].clamp(0, height)
    return torch.stack((x[..., 0], y[..., 0], x[..., 1], y[..., 1]), dim=-1)


def is_large_enough(boxes: torch.Tensor, min_size: float) -> torch.Tensor:
    """Bool [...]: box width and height are both at least min_size."""
    return ((boxes[..., 2] - boxes[..., 0]) >= min_size) & ((boxes[..., 3] - boxes[..., 1]) >= min_size)


def padded_batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou_threshold: float, count: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-group NMS with a fixed-size result, the export-friendly form of torchvision's batched_nms.

    boxes [N, 4], scores [N], groups [N] -> (index [count] into the N inputs in
    decreasing score order, is_kept [count] bool). Rows past the kept boxes have
    index 0 and is_kept False. Exports to one plain ONNX NonMaxSuppression plus a static slice.

    torchvision's batched_nms is scripted when traced and checks `boxes.numel() == 0` first, which
    exports as an If node around the NMS whose branches differ in shape; TensorRT then cannot use its
    native NMS layer. N is never 0 here (the inputs are fixed-size candidate lists), so this is its
    coordinate trick without the check: each group's boxes are shifted apart so that one NMS over all
    of them never lets two groups suppress each other. Eager and exported runs take this same path.
    """
    offsets = groups.to(boxes) * (boxes.max() + 1)
    kept = nms(boxes + offsets[:, None], scores, iou_threshold)
    padding = torch.full((count,), -1, dtype=kept.dtype, device=kept.device)
    index = torch.cat((kept, padding))[:count]
    return index.clamp(min=0), index >= 0


def match_boxes(
    gt_boxes: torch.Tensor, candidates: torch.Tensor, fg_iou: float, bg_iou: float, allow_low_quality: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Assign each candidate box [N, 4] to its best ground-truth box [G, 4] (torchvision's Matcher).

    Returns (matched ground-truth index [N] int64, label [N] float: 1 foreground
    (IoU >= fg_iou), 0 background (IoU < bg_iou), -1 ignored). With
    allow_low_quality, the best candidates of every ground truth are foreground
    even below fg_iou, so that no object goes without a positive.
    """
    count = candidates.shape[0]
    if gt_boxes.shape[0] == 0:
        return candidates.new_zeros(count, dtype=torch.int64), candidates.new_zeros(count)
    iou = box_iou(gt_boxes, candidates)
    best_iou, matched = iou.max(dim=0)
    labels = torch.full_like(best_iou, -1.0)
    labels[best_iou < bg_iou] = 0.0
    labels[best_iou >= fg_iou] = 1.0
    if allow_low_quality:
        best_per_gt = iou.max(dim=1).values
        labels[(iou == best_per_gt[:, None]).any(dim=0)] = 1.0
    return matched, labels


def sample_labels(labels: torch.Tensor, batch_size: int, positive_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Randomly pick up to batch_size labelled candidates, at most positive_fraction of them positive.

    labels [N] (1 / 0 / -1 as from match_boxes) -> (positive indices, negative indices).
    """
    positive = torch.where(labels == 1)[0]
    negative = torch.where(labels == 0)[0]
    num_positive = min(positive.numel(), int(batch_size * positive_fraction))
    num_negative = min(negative.numel(), batch_size - num_positive)
    positive = positive[torch.randperm(positive.numel(), device=labels.device)[:num_positive]]
    negative = negative[torch.randperm(negative.numel(), device=labels.device)[:num_negative]]
    return positive, negative
