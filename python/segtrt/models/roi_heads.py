"""Mask R-CNN's second stage: box classification/regression and the class-specific mask head.

The layers are torchvision's (TwoMLPHead, FastRCNNPredictor, MaskRCNNHeads,
MaskRCNNPredictor), so torchvision weights load by name. Internally class 0 is
background, as in torchvision; the detections this module returns use 0-based
object classes (internal class - 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import roi_align

from segtrt.models.box_ops import (
    clip_boxes,
    decode_boxes,
    encode_boxes,
    is_large_enough,
    match_boxes,
    padded_batched_nms,
    sample_labels,
)
from segtrt.models.roi_align import MultilevelRoIAlign

BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
MIN_DETECTION_SIZE = 1e-2
MASK_SIZE = 28  # the mask head's output, 2x its 14x14 RoIAlign
# Training targets (torchvision's defaults).
FG_IOU = BG_IOU = 0.5
POSITIVE_FRACTION = 0.25
SMOOTH_L1_BETA = 1.0 / 9


class RoIHeads(nn.Module):
    """Detections from proposals; see `forward` for the deployable output."""

    def __init__(
        self,
        num_classes: int,
        channels: int,
        strides: tuple[int, ...],
        representation_size: int,
        mask_head_channels: int,
        score_threshold: float,
        nms_threshold: float,
        max_detections: int,
        max_candidates: int,
        samples_per_image: int,
    ):
        super().__init__()
        self.box_roi_pool = MultilevelRoIAlign(7, strides, sampling_ratio=2, aligned=False)
        self.box_head = TwoMLPHead(channels * 7 * 7, representation_size)
        self.box_predictor = FastRCNNPredictor(representation_size, num_classes + 1)
        self.mask_roi_pool = MultilevelRoIAlign(14, strides, sampling_ratio=2, aligned=False)
        self.mask_head = MaskRCNNHeads(channels, [mask_head_channels] * 4, dilation=1)
        self.mask_predictor = MaskRCNNPredictor(mask_head_channels, mask_head_channels, num_classes + 1)
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.max_detections = max_detections
        self.max_candidates = max_candidates
        self.samples_per_image = samples_per_image

    def classify(self, features, rois: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """rois [B, R, 4] -> class logits [B*R, K+1], box deltas [B*R, 4(K+1)]."""
        pooled = self.box_roi_pool(features, rois)
        return self.box_predictor(self.box_head(pooled.flatten(0, 1)))

    def mask_logits(self, features, rois: torch.Tensor) -> torch.Tensor:
        """rois [B, R, 4] -> mask logits [B*R, K+1, 28, 28]."""
        pooled = self.mask_roi_pool(features, rois)
        return self.mask_predictor(self.mask_head(pooled.flatten(0, 1)))

    def forward(self, features: list[torch.Tensor], proposals: torch.Tensor, valid: torch.Tensor, image_size):
        """features P2..P5, proposals [B, P, 4] with valid [B, P] -> the model's fixed-shape outputs.

        Returns (num_detections int32[B], boxes [B, D, 4], scores [B, D],
        labels int32[B, D] 0-based, masks [B, D, 28, 28] box-relative probabilities);
        padding rows are zero with label -1.
        """
        batch, count = proposals.shape[:2]
        class_logits, box_deltas = self.classify(features, proposals)
        boxes = clip_boxes(decode_boxes(box_deltas, proposals.reshape(-1, 4), BOX_WEIGHTS), image_size)
        scores = F.softmax(class_logits, dim=-1) * valid.reshape(-1, 1)
        # One candidate per (proposal, object class): drop the background column.
        num_classes = scores.shape[1] - 1
        boxes = boxes[:, 1:].reshape(batch, count * num_classes, 4)
        scores = scores[:, 1:].reshape(batch, count * num_classes)
        labels = torch.arange(num_classes, device=scores.device).repeat(count)
        scores = torch.where((scores > self.score_threshold) & is_large_enough(boxes, MIN_DETECTION_SIZE), scores, 0.0)
        # NMS keeps boxes in score order, so pre-selecting the best candidates changes
        # nothing unless fewer than max_detections survive among them.
        scores, top = scores.topk(min(self.max_candidates, scores.shape[1]), dim=1)
        boxes = torch.gather(boxes, 1, top[..., None].expand(-1, -1, 4))
        labels = labels[top]
        detections = [self._select(*image) for image in zip(boxes, scores, labels)]
        det_boxes, det_scores, det_labels, det_valid = (torch.stack(parts) for parts in zip(*detections))

        logits = self.mask_logits(features, det_boxes)
        # The mask of the predicted class; padding rows read class 0 and are zeroed.
        channel = (det_labels.clamp(min=0) + 1).reshape(-1, 1, 1, 1).expand(-1, 1, MASK_SIZE, MASK_SIZE)
        masks = torch.sigmoid(torch.gather(logits, 1, channel)).reshape(batch, -1, MASK_SIZE, MASK_SIZE)
        masks = masks * det_valid[..., None, None]
        num_detections = det_valid.sum(dim=1).to(torch.int32)
        return num_detections, det_boxes, det_scores, det_labels.to(torch.int32), masks

    def _select(self, boxes, scores, labels):
        """Per-class NMS of one image's candidates -> D boxes, scores, labels (-1 pad), valid."""
        index, kept = padded_batched_nms(boxes, scores, labels, self.nms_threshold, self.max_detections)
        valid = kept & (scores[index] > 0)
        return (
            boxes[index] * valid[:, None],
            scores[index] * valid,
            torch.where(valid, labels[index], -1),
            valid,
        )

    def loss(self, features, proposals: list[torch.Tensor], targets: list[dict]) -> dict[str, torch.Tensor]:
        """Box CE + smooth-L1 on `samples_per_image` sampled RoIs per image, mask BCE on the ground-truth class.

        proposals: per image [P_i, 4] (detached); the ground-truth boxes are added to them.
        """
        box_logits, box_deltas, class_targets, box_targets, positive_deltas = [], [], [], [], []
        mask_losses = []
        for image, (image_proposals, target) in enumerate(zip(proposals, targets)):
            image_features = [feature[image : image + 1] for feature in features]
            gt_boxes = target["boxes"]
            rois = torch.cat((image_proposals, gt_boxes))
            matched, match_labels = match_boxes(gt_boxes, rois, FG_IOU, BG_IOU, allow_low_quality=False)
            positive, negative = sample_labels(match_labels, self.samples_per_image, POSITIVE_FRACTION)
            sampled = torch.cat((positive, negative))
            classes = torch.zeros_like(sampled)
            classes[: positive.numel()] = target["labels"][matched[positive]] + 1
            logits, deltas = self.classify(image_features, rois[sampled][None])
            box_logits.append(logits)
            class_targets.append(classes)
            positive_classes = classes[: positive.numel()]
            deltas = deltas.reshape(deltas.shape[0], -1, 4)
            positive_deltas.append(deltas[torch.arange(positive.numel()), positive_classes])
            box_targets.append(encode_boxes(gt_boxes[matched[positive]], rois[positive], BOX_WEIGHTS))
            mask_losses.append(
                self._mask_loss(image_features, rois[positive], positive_classes, target["masks"], matched[positive])
            )
        class_targets = torch.cat(class_targets)
        box_loss = F.smooth_l1_loss(
            torch.cat(positive_deltas), torch.cat(box_targets), beta=SMOOTH_L1_BETA, reduction="sum"
        )
        return {
            "loss_classifier": F.cross_entropy(torch.cat(box_logits), class_targets),
            "loss_box_reg": box_loss / max(class_targets.numel(), 1),
            "loss_mask": torch.stack(mask_losses).sum() / max(sum(p.numel() for p in positive_deltas), 1),
        }

    def _mask_loss(self, features, rois, classes, gt_masks, matched):
        """Summed per-RoI mean BCE on each positive RoI's ground-truth class channel only."""
        logits = self.mask_logits(features, rois[None])
        if rois.shape[0] == 0:
            return logits.sum() * 0.0
        # Targets: the matched ground-truth mask resampled into the RoI (torchvision's project_masks_on_boxes).
        sources = torch.cat((matched[:, None].to(rois.dtype), rois), dim=1)
        targets = roi_align(gt_masks[:, None].to(rois.dtype), sources, (MASK_SIZE, MASK_SIZE), 1.0)[:, 0]
        picked = logits[torch.arange(rois.shape[0]), classes]
        return F.binary_cross_entropy_with_logits(picked, targets, reduction="none").mean(dim=(1, 2)).sum()
