"""Mask R-CNN (He et al. 2017) with an export-friendly inference pass.

Backbone + FPN (P2-P6) -> region proposal network -> RoIAlign over the pyramid ->
box head (class-specific boxes, per-class NMS) -> 28x28 class-specific mask head.

Module and parameter names equal torchvision's maskrcnn_resnet50_fpn (backbone.*,
rpn.head.*, roi_heads.box_head / box_predictor / mask_head / mask_predictor.*),
so a torchvision state dict loads unchanged: see `load_torchvision_state_dict`.
"""

from __future__ import annotations

import torch
from torch import nn

from segtrt import SegtrtError
from segtrt.models import normalisation_numbers
from segtrt.models.backbone import build_backbone
from segtrt.models.roi_heads import RoIHeads
from segtrt.models.rpn import RegionProposalNetwork
from segtrt.runtime.preprocess import IMAGENET_MEAN, IMAGENET_STD

# Defaults shared by both backbones; the resnet50 values are torchvision's.
DEFAULT_OPTIONS = {
    "fpn_channels": None,  # the backbone's default: 256 (resnet50), 96 (edge)
    "representation_size": 1024,
    "mask_head_channels": 256,
    "max_detections": 100,
    "rpn_pre_nms_top_n": [2000, 1000],  # per level, (train, eval)
    "rpn_post_nms_top_n": [2000, 1000],  # (train, eval)
    "rpn_nms_threshold": 0.7,
    "box_score_threshold": 0.05,
    "box_nms_threshold": 0.5,
    "box_max_candidates": 1000,  # best (proposal, class) pairs that enter the final NMS
    "box_samples_per_image": 512,  # training RoIs per image for the box head (a quarter positive at most)
}
# The edge model is small and runs at ~192x192: narrower heads, fewer proposals.
EDGE_OPTIONS = {
    "representation_size": 256,
    "mask_head_channels": 64,
    "rpn_pre_nms_top_n": [1000, 500],
    "rpn_post_nms_top_n": [1000, 300],
    "box_samples_per_image": 128,  # a few objects per image; RoIAlign's backward dominates a CPU step
}


class MaskRCNN(nn.Module):
    """Mask R-CNN for `num_classes` object classes (no background class counted).

    Images are [B, 3, H, W] RGB float32 in 0..255 with H, W multiples of 32, normalised inside with
    mean / std; mean = std = None: the images come normalised (Preprocess.normalise "before_resize").
    See segtrt.models for the loss/forward contract.
    """

    kind = "maskrcnn"
    mask_frame = "box"  # forward's 28x28 masks each span their own box

    def __init__(self, num_classes: int, backbone: str = "edge", mean=IMAGENET_MEAN, std=IMAGENET_STD, **options):
        super().__init__()
        unknown = set(options) - set(DEFAULT_OPTIONS)
        if unknown:
            raise SegtrtError(
                f"unknown Mask R-CNN option(s) {', '.join(sorted(unknown))}; known: {', '.join(DEFAULT_OPTIONS)}"
            )
        self.options = {**DEFAULT_OPTIONS, **(EDGE_OPTIONS if backbone == "edge" else {}), **options}
        self.num_classes = num_classes
        self.backbone_name = backbone
        self.backbone = build_backbone(backbone, self.options["fpn_channels"])
        self.mean, self.std = normalisation_numbers(mean, std)
        if self.mean is not None:
            self.register_buffer("image_mean", torch.tensor(self.mean).reshape(1, 3, 1, 1), persistent=False)
            self.register_buffer("image_std", torch.tensor(self.std).reshape(1, 3, 1, 1), persistent=False)
        channels, strides = self.backbone.out_channels, tuple(self.backbone.strides)
        self.rpn = RegionProposalNetwork(
            channels,
            self.options["rpn_pre_nms_top_n"],
            self.options["rpn_post_nms_top_n"],
            self.options["rpn_nms_threshold"],
        )
        self.roi_heads = RoIHeads(
            num_classes,
            channels,
            strides[:4],  # RoIs are pooled from P2-P5; P6 only feeds the RPN
            self.options["representation_size"],
            self.options["mask_head_channels"],
            self.options["box_score_threshold"],
            self.options["box_nms_threshold"],
            self.options["max_detections"],
            self.options["box_max_candidates"],
            self.options["box_samples_per_image"],
        )

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Pyramid [P2, P3, P4, P5, P6] of normalised images."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise SegtrtError(f"expected images of shape [B, 3, H, W], got {list(images.shape)}")
        if self.mean is not None:
            images = (images - self.image_mean) / self.image_std
        return list(self.backbone(images).values())

    def forward(self, images: torch.Tensor):
        """Eval-mode deployable pass: images [B, 3, H, W] -> the fixed-shape detection tuple.

        (num_detections int32[B], boxes [B, D, 4] input pixels, scores [B, D],
        labels int32[B, D] 0-based, masks [B, D, 28, 28] box-relative probabilities).
        """
        image_size = tuple(images.shape[-2:])
        features = self.features(images)
        proposals, valid = self.rpn(features, image_size)
        return self.roi_heads(features[:4], proposals, valid, image_size)

    def loss(self, images: torch.Tensor, targets: list[dict]) -> dict[str, torch.Tensor]:
        """Training losses (RPN objectness/box, classifier, box regression, mask)."""
        image_size = tuple(images.shape[-2:])
        features = self.features(images)
        logits, deltas = self.rpn.head_outputs(features)
        anchors = self.rpn.anchors(features, image_size)
        gt_boxes = [target["boxes"].to(images.device, torch.float32) for target in targets]
        losses = self.rpn.loss(logits, deltas, anchors, gt_boxes)
        proposals, valid = self.rpn.propose(logits, deltas, anchors, image_size)
        proposals = [image_proposals[image_valid] for image_proposals, image_valid in zip(proposals, valid)]
        targets = [
            {"boxes": boxes, "labels": target["labels"].to(images.device), "masks": target["masks"].to(images.device)}
            for boxes, target in zip(gt_boxes, targets)
        ]
        losses.update(self.roi_heads.loss(features[:4], proposals, targets))
        return losses


def load_torchvision_state_dict(model: MaskRCNN, state_dict: dict) -> None:
    """Load a torchvision maskrcnn_resnet50_fpn state dict into `model`.

    The model must be built with backbone="resnet50", num_classes = torchvision's
    num_classes - 1 (torchvision counts the background), representation_size 1024
    and mask_head_channels 256 (the defaults). Names are identical, so this is
    load_state_dict with a clear error when the two models differ.
    """
    if model.backbone_name != "resnet50":
        raise SegtrtError(f"torchvision weights need backbone 'resnet50', this model has {model.backbone_name!r}")
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as error:
        detail = str(error).splitlines()[-1].strip()
        raise SegtrtError(
            f"the torchvision state dict does not fit this Mask R-CNN (is num_classes torchvision's - 1?): {detail}"
        ) from None
