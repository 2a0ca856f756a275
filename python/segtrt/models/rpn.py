"""Region proposal network: anchors on every pyramid level, objectness and box deltas per anchor.

The head is torchvision's RPNHead (so torchvision weights load by name). The
proposal step is export-friendly: a fixed top-k per level, then NMS with a fixed,
padded number of outputs and a validity flag per row.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.rpn import RPNHead

from segtrt.models.box_ops import (
    clip_boxes,
    decode_boxes,
    encode_boxes,
    is_large_enough,
    match_boxes,
    padded_batched_nms,
    sample_labels,
)

ANCHOR_SIZES = (32, 64, 128, 256, 512)  # one per level P2..P6
ASPECT_RATIOS = (0.5, 1.0, 2.0)  # height / width
RPN_BOX_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
MIN_PROPOSAL_SIZE = 1e-3
# Training targets (torchvision's defaults).
FG_IOU, BG_IOU = 0.7, 0.3
SAMPLES_PER_IMAGE, POSITIVE_FRACTION = 256, 0.5
SMOOTH_L1_BETA = 1.0 / 9


def level_anchors(size: int, stride_hw: tuple[int, int], grid_hw: tuple[int, int]) -> torch.Tensor:
    """Anchors [H*W*A, 4] of one level, ordered (row, column, aspect ratio) like the head's outputs."""
    ratios = torch.tensor(ASPECT_RATIOS)
    height_factor = torch.sqrt(ratios)
    widths = size / height_factor
    heights = size * height_factor
    base = (torch.stack((-widths, -heights, widths, heights), dim=1) / 2).round()
    grid_h, grid_w = grid_hw
    ys, xs = torch.meshgrid(
        torch.arange(grid_h, dtype=torch.float32) * stride_hw[0],
        torch.arange(grid_w, dtype=torch.float32) * stride_hw[1],
        indexing="ij",
    )
    xs, ys = xs.reshape(-1), ys.reshape(-1)
    shifts = torch.stack((xs, ys, xs, ys), dim=1)
    return (shifts[:, None, :] + base[None]).reshape(-1, 4)


def flatten_level(output: torch.Tensor, values_per_anchor: int) -> torch.Tensor:
    """Head output [B, A*v, H, W] -> [B, H*W*A, v] in anchor order."""
    batch, _, height, width = output.shape
    output = output.reshape(batch, -1, values_per_anchor, height, width)
    return output.permute(0, 3, 4, 1, 2).reshape(batch, -1, values_per_anchor)


class RegionProposalNetwork(nn.Module):
    """Proposals from pyramid features; `pre_nms_top_n` / `post_nms_top_n` are (train, eval) pairs."""

    def __init__(self, channels: int, pre_nms_top_n, post_nms_top_n, nms_threshold=0.7):
        super().__init__()
        self.head = RPNHead(channels, len(ASPECT_RATIOS))
        self.pre_nms_top_n = tuple(pre_nms_top_n)
        self.post_nms_top_n = tuple(post_nms_top_n)
        self.nms_threshold = nms_threshold

    def anchors(self, features: list[torch.Tensor], image_size: tuple[int, int]) -> list[torch.Tensor]:
        """Anchors [N_l, 4] per level; constants of the input size when exported.

        The spacing is image size // grid size per axis, as torchvision's AnchorGenerator: on
        800x1344 P6 is 13x21 and its anchors are 61 pixels apart vertically, not 64.
        """
        anchors = []
        for size, feature in zip(ANCHOR_SIZES, features):
            grid_hw = tuple(feature.shape[-2:])
            stride_hw = (image_size[0] // grid_hw[0], image_size[1] // grid_hw[1])
            anchors.append(level_anchors(size, stride_hw, grid_hw).to(feature.device))
        return anchors

    def head_outputs(self, features: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Objectness logits [B, N_l] and deltas [B, N_l, 4] per level."""
        logits, deltas = self.head(features)
        return [flatten_level(x, 1)[..., 0] for x in logits], [flatten_level(x, 4) for x in deltas]

    def forward(self, features: list[torch.Tensor], image_size: tuple[int, int]):
        """features P2..P6 -> (proposals [B, P, 4], valid [B, P] bool), P = post_nms_top_n."""
        logits, deltas = self.head_outputs(features)
        return self.propose(logits, deltas, self.anchors(features, image_size), image_size)

    def propose(self, logits, deltas, anchors, image_size):
        """Top-k per level, clip, NMS per level, keep the best post_nms_top_n (padded; see forward)."""
        phase = 0 if self.training else 1
        boxes, scores, levels = [], [], []
        for level, (level_logits, level_deltas, level_anchors_) in enumerate(zip(logits, deltas, anchors)):
            # A level's anchor count follows from the input size alone, which every export fixes (only the batch
            # may vary): taken as a Python int, K exports as a constant TopK input instead of one computed from
            # a Shape, so TensorRT's K < 3840 bound holds by construction.
            count = min(self.pre_nms_top_n[phase], int(level_logits.shape[1]))
            top_logits, top_index = level_logits.detach().topk(count, dim=1)
            top_deltas = torch.gather(level_deltas.detach(), 1, top_index[..., None].expand(-1, -1, 4))
            top_anchors = level_anchors_[top_index]
            decoded = decode_boxes(top_deltas.reshape(-1, 4), top_anchors.reshape(-1, 4), RPN_BOX_WEIGHTS)
            boxes.append(decoded.reshape(top_deltas.shape))
            scores.append(torch.sigmoid(top_logits))
            levels.append(torch.full_like(top_index, level))
        boxes = clip_boxes(torch.cat(boxes, dim=1), image_size)
        # Boxes too small to use sort last with score -1 (they cannot suppress others: no area).
        scores = torch.where(is_large_enough(boxes, MIN_PROPOSAL_SIZE), torch.cat(scores, dim=1), -1.0)
        levels = torch.cat(levels, dim=1)
        proposals, valid = [], []
        for image_boxes, image_scores, image_levels in zip(boxes, scores, levels):
            index, kept = padded_batched_nms(
                image_boxes, image_scores, image_levels, self.nms_threshold, self.post_nms_top_n[phase]
            )
            is_valid = kept & (image_scores[index] >= 0)
            proposals.append(image_boxes[index] * is_valid[:, None])
            valid.append(is_valid)
        return torch.stack(proposals), torch.stack(valid)

    def loss(self, logits, deltas, anchors, gt_boxes: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Objectness BCE and smooth-L1 box loss on 256 sampled anchors per image (half positive)."""
        anchors = torch.cat(anchors)
        logits = torch.cat(logits, dim=1)
        deltas = torch.cat(deltas, dim=1)
        sampled_logits, sampled_labels, positive_deltas, positive_targets = [], [], [], []
        for image_logits, image_deltas, boxes in zip(logits, deltas, gt_boxes):
            matched, labels = match_boxes(boxes, anchors, FG_IOU, BG_IOU, allow_low_quality=True)
            positive, negative = sample_labels(labels, SAMPLES_PER_IMAGE, POSITIVE_FRACTION)
            sampled = torch.cat((positive, negative))
            sampled_logits.append(image_logits[sampled])
            sampled_labels.append(labels[sampled])
            positive_deltas.append(image_deltas[positive])
            positive_targets.append(encode_boxes(boxes[matched[positive]], anchors[positive], RPN_BOX_WEIGHTS))
        sampled_labels = torch.cat(sampled_labels)
        num_sampled = max(sampled_labels.numel(), 1)
        box_loss = F.smooth_l1_loss(
            torch.cat(positive_deltas), torch.cat(positive_targets), beta=SMOOTH_L1_BETA, reduction="sum"
        )
        objectness_loss = F.binary_cross_entropy_with_logits(torch.cat(sampled_logits), sampled_labels)
        return {"loss_objectness": objectness_loss, "loss_rpn_box_reg": box_loss / num_sampled}
