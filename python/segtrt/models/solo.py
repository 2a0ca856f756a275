"""SOLOv2 and SOLO (v1): instance segmentation by locations, mmdetection's recipe.

Both models share everything but the way a grid cell's mask is made:
- SOLOv2: the cell predicts a 1x1 kernel applied to one unified mask-feature map;
- SOLO: every cell has its own mask channel (S^2 channels per level).

The deployable `forward` has fixed-size outputs: category scores (after point NMS)
below `score_thr` are zeroed rather than removed, masks too small for their level
are zeroed, scores are rescored by maskness, and `MatrixNMS` (one module the
export stage swaps for a plugin node) keeps the best `nms_pre` rescored pairs and
returns at most `max_detections`. Two caps, two options:

- `max_candidates` = 0 (the ResNet models' default): mmdetection's rule. Every
  (cell, class) pair above `score_thr` is rescored before `nms_pre` cuts: exactly
  mmdetection's result. Cost: one mask per grid cell holding such a pair, a count
  that follows the image (a NonZero in the export; at most sum(S^2) = 3872 for
  COCO's grids), each (H/4 x W/4) float32: up to 1.0 GB and 67 G multiply-adds of
  mask products (SOLOv2, 256 kernel channels) at 800x1344, in proportion for fewer cells.
- `max_candidates` = K > 0 (the edge models' default, K = 500): the best K pairs by
  raw score go on, K masks are computed (memory and time grow with K x H/4 x W/4),
  and only they are rescored. Equal to mmdetection whenever at most K pairs pass
  `score_thr`; otherwise mmdetection ranks after rescoring, this before. K is a
  TopK: TensorRT takes K < 3840. All shapes are static.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segtrt import SegtrtError
from segtrt.models import normalisation_numbers
from segtrt.models.backbone import build_backbone
from segtrt.models.losses import dice_loss, sigmoid_focal_loss
from segtrt.models.matrix_nms import MatrixNMS
from segtrt.models.solo_heads import DecoupledSOLOHead, SOLOHead, SOLOv2Head
from segtrt.models.solo_ops import above_threshold, gather_rows, point_nms, resize_bilinear, upsampled_mask_boxes
from segtrt.models.solo_targets import assign_targets, resize_masks
from segtrt.engine.parser_support import TOPK_MAX_K
from segtrt.runtime.preprocess import IMAGENET_MEAN, IMAGENET_STD

STRIDES = [8, 8, 16, 32, 32]  # of the heads' inputs, after resize_levels

# mmdetection's configs (solov2_r50_fpn_1x_coco, solo_r50_fpn_1x_coco), for COCO-sized inputs.
COMMON_DEFAULTS = {
    "num_grids": [40, 36, 24, 16, 12],
    "scale_ranges": [[1, 96], [48, 192], [96, 384], [192, 768], [384, 2048]],
    "min_mask_area": STRIDES,  # a candidate mask needs more pixels than this (at stride 4) to count
    "pos_scale": 0.2,
    "focal_alpha": 0.25,
    "focal_gamma": 2.0,
    "cls_loss_weight": 1.0,
    "mask_loss_weight": 3.0,
    "score_thr": 0.1,
    "mask_thr": 0.5,
    "nms_pre": 500,
    "max_candidates": 0,  # pre-rescoring cap (see the module docstring); 0: every cell, mmdetection's rule
    "nms_kernel": "gaussian",
    "nms_sigma": 2.0,
    "filter_thr": 0.05,
    "max_detections": 100,
    "fpn_channels": None,
    "norm_groups": 32,
}
# The edge models see 192x192 inputs, a quarter of COCO's 800-pixel side: object
# scale ranges and the minimum mask area shrink with them.
EDGE_DEFAULTS = {
    "scale_ranges": [[1, 24], [12, 48], [24, 96], [48, 192], [96, 512]],
    "min_mask_area": [2, 2, 4, 8, 8],
    "norm_groups": 16,
    "max_candidates": 500,
}
HEAD_DEFAULTS = {
    ("solov2", "resnet50"): {"feat_channels": 512, "stacked_convs": 4, "mask_feat_channels": 128, "mask_out_channels": 256},
    ("solov2", "edge"): {"feat_channels": 128, "stacked_convs": 3, "mask_feat_channels": 64, "mask_out_channels": 64},
    # mmdetection's solo_r50_fpn_1x_coco has S^2 channels; decoupled_solo_r50_fpn_1x_coco (decoupled=True)
    # factors them. Decoupled trains far faster, which the edge model, trained from scratch, needs.
    # upsample_logits: every level's mask logits are upsampled to stride 4 before the sigmoid, in the
    # loss and at inference, so a coarse level learns where inside its cells a boundary lies (at 192x192
    # the coarsest masks are 12x12). mmdetection (False) takes the loss at the level's own stride and
    # upsamples probabilities.
    ("solo", "resnet50"): {"feat_channels": 256, "stacked_convs": 7, "decoupled": False, "upsample_logits": False},
    ("solo", "edge"): {"feat_channels": 128, "stacked_convs": 3, "decoupled": True, "upsample_logits": True},
}


def resolve_options(kind: str, backbone: str, options: dict) -> dict:
    """Defaults for (kind, backbone) updated by the user's options; unknown names are an error."""
    resolved = dict(COMMON_DEFAULTS)
    if backbone == "edge":
        resolved.update(EDGE_DEFAULTS)
    resolved.update(HEAD_DEFAULTS[(kind, "edge" if backbone == "edge" else "resnet50")])
    unknown = sorted(set(options) - set(resolved))
    if unknown:
        raise SegtrtError(f"unknown {kind} option(s) {', '.join(unknown)}; known options: {', '.join(sorted(resolved))}")
    resolved.update(options)
    return {key: _as_lists(value) for key, value in resolved.items()}


def _as_lists(value):
    """Tuples -> lists, recursively: options saved in a checkpoint read back equal."""
    if isinstance(value, (list, tuple)):
        return [_as_lists(item) for item in value]
    return value


class _SOLOBase(nn.Module):
    """What SOLO and SOLOv2 share: the pyramid, targets, losses and the deployable post-processing.

    Subclasses build `self.mask_head` and say how cells become masks
    (`_candidate_masks` for inference, `_cell_masks` for training).
    """

    kind = ""
    mask_frame = "image"  # forward's masks span the padded input, at the mask-feature stride
    mask_stride = 4

    def __init__(self, num_classes: int, backbone: str = "edge", mean=IMAGENET_MEAN, std=IMAGENET_STD, **options):
        super().__init__()
        self.num_classes = num_classes
        self.backbone_name = backbone
        self.options = resolve_options(self.kind, backbone, options)
        opts = self.options
        if not len(opts["num_grids"]) == len(opts["scale_ranges"]) == len(opts["min_mask_area"]) == len(STRIDES):
            raise SegtrtError(f"num_grids, scale_ranges and min_mask_area need {len(STRIDES)} entries, one per level")
        if not 0 <= opts["max_candidates"] < TOPK_MAX_K:
            raise SegtrtError(f"max_candidates must lie in 0..{TOPK_MAX_K - 1} (0: every cell; K is a TopK and "
                              f"TensorRT takes K < {TOPK_MAX_K}), got {opts['max_candidates']}")
        self.backbone = build_backbone(backbone, opts["fpn_channels"])
        self.mask_head = self._build_head(self.backbone.out_channels)
        self.matrix_nms = MatrixNMS(
            mask_threshold=opts["mask_thr"], kernel=opts["nms_kernel"], sigma=opts["nms_sigma"],
            nms_pre=opts["nms_pre"], max_num=opts["max_detections"], filter_thr=opts["filter_thr"],
        )
        self.mean, self.std = normalisation_numbers(mean, std)
        if self.mean is not None:
            self.register_buffer("pixel_mean", torch.tensor(self.mean).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("pixel_std", torch.tensor(self.std).view(1, 3, 1, 1), persistent=False)
        cell_min_area = [torch.full((grid**2,), float(area)) for grid, area in zip(opts["num_grids"], opts["min_mask_area"])]
        self.register_buffer("cell_min_area", torch.cat(cell_min_area), persistent=False)

    def _build_head(self, in_channels: int) -> nn.Module:
        raise NotImplementedError

    def _pyramid(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Pre-processed RGB [B, 3, H, W] (0..255, or normalised where mean is None) -> [P2, P3, P4, P5, P6]."""
        if self.mean is not None:
            images = (images - self.pixel_mean) / self.pixel_std
        return list(self.backbone(images).values())

    # ---- deployable pass -------------------------------------------------------------

    def forward(self, images: torch.Tensor):
        """Fixed-shape detections (see segtrt.models).

        Returns (num_detections int32 [B], boxes [B, D, 4], scores [B, D], labels int32 [B, D],
        masks [B, D, H/4, W/4] probabilities at the mask-feature stride: a quarter of the
        pixels to move off the GPU; boxes are those of the masks upsampled to H x W, found without
        upsampling them: see upsampled_mask_boxes).
        """
        opts = self.options
        head_outputs = self.mask_head(self._pyramid(images))
        pair_scores = self._pair_scores(head_outputs)
        if opts["max_candidates"]:
            probs, scores, labels = self._capped_candidates(head_outputs, pair_scores, opts["max_candidates"])
        else:
            probs, scores, labels = self._every_cell_candidates(head_outputs, pair_scores, opts["nms_pre"])
        count, keep, det_scores, det_labels = self.matrix_nms(probs, scores, labels)
        kept = (keep >= 0).to(probs.dtype)
        masks = gather_rows(probs, keep.clamp(min=0)) * kept[:, :, None, None]
        boxes = upsampled_mask_boxes(masks, self.mask_stride, opts["mask_thr"])
        return count, boxes, det_scores, det_labels.to(torch.int32), masks

    def candidate_pairs(self, images: torch.Tensor) -> torch.Tensor:
        """int64 [B]: the (cell, class) pairs above score_thr per image, which the every-cell rule's mask
        work follows (benchmarks and tests read it)."""
        return (self._pair_scores(self.mask_head(self._pyramid(images))) > 0).sum(1)

    def _pair_scores(self, head_outputs) -> torch.Tensor:
        """Category scores after point NMS, 0 below score_thr: [B, N * C], cell-major over the pyramid."""
        categories = head_outputs[1]  # both heads: (mask source, category logits, ...)
        batch = categories[0].shape[0]
        cell_scores = torch.cat(
            [point_nms(c.sigmoid()).permute(0, 2, 3, 1).reshape(batch, -1, self.num_classes) for c in categories], 1
        )
        pair_scores = cell_scores.flatten(1)
        return pair_scores * (pair_scores > self.options["score_thr"])

    def _capped_candidates(self, head_outputs, pair_scores: torch.Tensor, cap: int):
        """The best `cap` (cell, class) pairs of pair_scores [B, N * C] by raw score, rescored by maskness.

        Returns (mask probabilities [B, K, H/4, W/4], scores [B, K], labels [B, K]).
        """
        scores, pairs = pair_scores.topk(min(cap, pair_scores.shape[1]), dim=1)
        cells = torch.div(pairs, self.num_classes, rounding_mode="floor")
        probs = self._candidate_masks(head_outputs, cells)
        maskness, large_enough = self._maskness(probs, cells)
        return probs, scores * maskness * large_enough, pairs - cells * self.num_classes

    def _every_cell_candidates(self, head_outputs, pair_scores: torch.Tensor, nms_pre: int):
        """mmdetection's rule: every pair above score_thr rescored by its cell's mask, then the best `nms_pre`.

        Only the cells holding such a pair (in any image of the batch) get a mask: a data-dependent
        count M (NonZero in an export). Returns (mask probabilities [B, K, H/4, W/4], scores [B, K],
        labels [B, K]), K = nms_pre (N * C, every pair, where nms_pre is 0).
        """
        batch = pair_scores.shape[0]
        cell_pairs = pair_scores.reshape(batch, -1, self.num_classes)
        alive = (cell_pairs > 0).any(2).any(0)  # a NaN score is no candidate
        # cell 0 always counts, so the selection and the gather below are never empty
        alive = torch.cat([torch.ones_like(alive[:1]), alive[1:]])
        cells = alive.nonzero()[:, 0]
        cell_probs = self._candidate_masks(head_outputs, cells[None].expand(batch, -1))  # [B, M, H/4, W/4]
        maskness, large_enough = self._maskness(cell_probs, cells[None])
        rescored = (cell_pairs[:, cells] * (maskness * large_enough)[..., None]).flatten(1)
        # K zero pairs more keep TopK's K a constant (TensorRT takes no computed K, and Matrix NMS sizes its
        # work by it) however few pairs pass; their rank is clamped to a real cell, their score 0 drops them.
        top = nms_pre if nms_pre > 0 else cell_pairs.shape[1] * self.num_classes
        rescored = torch.cat([rescored, rescored.new_zeros(batch, top)], 1)
        scores, pairs = rescored.topk(top, dim=1)
        ranks = torch.div(pairs, self.num_classes, rounding_mode="floor")
        last_rank = alive.sum() - 1
        return gather_rows(cell_probs, torch.minimum(ranks, last_rank)), scores, pairs - ranks * self.num_classes

    def _maskness(self, probs: torch.Tensor, cells: torch.Tensor):
        """(maskness [B, K], 1 where the mask is larger than its level's min_mask_area [B, K]) of probs [B, K, h, w]."""
        threshold = self.options["mask_thr"]
        # ONNX Runtime's CPU session counts the area in integers (segtrt.runtime.backends.integer_counts)
        area = (probs > threshold).to(probs.dtype).sum((2, 3))
        maskness = above_threshold(probs, threshold).sum((2, 3)) / area.clamp(min=1)
        return maskness, (area > self.cell_min_area[cells]).to(probs.dtype)

    def _candidate_masks(self, head_outputs, cells: torch.Tensor) -> torch.Tensor:
        """Mask probabilities [B, K, H/4, W/4] of the grid cells [B, K] (indices over the whole pyramid)."""
        raise NotImplementedError

    # ---- training --------------------------------------------------------------------

    def loss(self, images: torch.Tensor, targets: list[dict]) -> dict:
        """{"loss_cls": focal loss on the grids, "loss_mask": dice loss on positive cells' masks}."""
        opts = self.options
        head_outputs = self.mask_head(self._pyramid(images))
        categories = head_outputs[1]  # both heads: (mask source, category logits, ...)
        grid_labels, mask_losses, num_positive = [], [], 0
        for index, target in enumerate(targets):
            gt_masks = torch.as_tensor(target["masks"], device=images.device)
            levels = assign_targets(
                torch.as_tensor(target["boxes"], dtype=torch.float32, device=images.device),
                torch.as_tensor(target["labels"], dtype=torch.int64, device=images.device),
                gt_masks,
                num_grids=opts["num_grids"], scale_ranges=opts["scale_ranges"],
                pos_scale=opts["pos_scale"], num_classes=self.num_classes,
            )
            resized = {}
            for level, level_targets in enumerate(levels):
                grid_labels.append((level, level_targets.labels))
                num_positive += int((level_targets.labels < self.num_classes).sum())
                if len(level_targets.cells) == 0:
                    continue
                probs = self._cell_masks(head_outputs, index, level, level_targets.cells)
                size = tuple(probs.shape[-2:])
                if size not in resized:
                    resized[size] = resize_masks(gt_masks, size)
                mask_losses.append(dice_loss(probs, resized[size][level_targets.objects]))

        logits = torch.cat([c.permute(0, 2, 3, 1).reshape(-1, self.num_classes) for c in categories])
        # per level, images in batch order, to match the logits' layout
        labels = torch.cat([labels for _, labels in sorted(grid_labels, key=lambda item: item[0])])
        one_hot = F.one_hot(labels, self.num_classes + 1)[:, : self.num_classes]
        focal = sigmoid_focal_loss(logits, one_hot, opts["focal_alpha"], opts["focal_gamma"]).sum()
        loss_cls = opts["cls_loss_weight"] * focal / (num_positive + 1)
        if mask_losses:
            loss_mask = opts["mask_loss_weight"] * torch.cat(mask_losses).sum() / max(num_positive, 1)
        else:
            loss_mask = logits.sum() * 0
        return {"loss_cls": loss_cls, "loss_mask": loss_mask}

    def _cell_masks(self, head_outputs, image: int, level: int, cells: torch.Tensor) -> torch.Tensor:
        """Mask probabilities [P, h, w] of one image's cells on one level (cells indexed within the level)."""
        raise NotImplementedError


class SOLOv2(_SOLOBase):
    """SOLOv2: dynamic 1x1 kernels per grid cell over one unified mask-feature map."""

    kind = "solov2"

    def _build_head(self, in_channels: int) -> nn.Module:
        opts = self.options
        return SOLOv2Head(
            self.num_classes, in_channels, opts["feat_channels"], opts["stacked_convs"],
            opts["mask_feat_channels"], opts["mask_out_channels"], opts["num_grids"], opts["norm_groups"],
        )

    def _candidate_masks(self, head_outputs, cells):
        kernels, _, mask_features = head_outputs
        batch, channels, height, width = mask_features.shape
        all_kernels = torch.cat([k.flatten(2) for k in kernels], 2).transpose(1, 2)  # [B, N, E]
        logits = gather_rows(all_kernels, cells) @ mask_features.flatten(2)  # [B, K, hw]
        return logits.sigmoid().reshape(batch, -1, height, width)

    def _cell_masks(self, head_outputs, image, level, cells):
        kernels, _, mask_features = head_outputs
        cell_kernels = kernels[level][image].flatten(1)[:, cells].t()  # [P, E]
        features = mask_features[image]
        return (cell_kernels @ features.flatten(1)).reshape(-1, *features.shape[-2:]).sigmoid()


class SOLO(_SOLOBase):
    """SOLO (v1): one mask per grid cell, from S^2 channels per level or, decoupled, from
    S column and S row channels (mask of cell (i, j) = column j x row i)."""

    kind = "solo"

    def __init__(self, num_classes: int, backbone: str = "edge", **options):
        super().__init__(num_classes, backbone, **options)
        if self.options["decoupled"]:
            # the column and row channel of every cell of the pyramid, for the deployable pass
            grids = self.options["num_grids"]
            levels = [(sum(grids[:level]), torch.arange(grid**2), grid) for level, grid in enumerate(grids)]
            columns = torch.cat([offset + cells % grid for offset, cells, grid in levels])
            rows = torch.cat([offset + cells // grid for offset, cells, grid in levels])
            self.register_buffer("cell_column", columns, persistent=False)
            self.register_buffer("cell_row", rows, persistent=False)

    def _build_head(self, in_channels: int) -> nn.Module:
        opts = self.options
        head = DecoupledSOLOHead if opts["decoupled"] else SOLOHead
        return head(
            self.num_classes, in_channels, opts["feat_channels"], opts["stacked_convs"],
            opts["num_grids"], opts["norm_groups"],
        )

    def _candidate_masks(self, head_outputs, cells):
        mask_logits = head_outputs[0]
        if not self.options["decoupled"]:
            return gather_rows(self._stride4_probabilities(mask_logits), cells)
        columns = self._stride4_probabilities([x for x, _ in mask_logits])
        rows = self._stride4_probabilities([y for _, y in mask_logits])
        return gather_rows(columns, self.cell_column[cells]) * gather_rows(rows, self.cell_row[cells])

    def _stride4_probabilities(self, mask_logits: list[torch.Tensor]) -> torch.Tensor:
        """Per-level mask logits [B, n_l, h_l, w_l] -> probabilities [B, sum n_l, H/4, W/4]."""
        size = mask_logits[0].shape[-2:]  # the finest level, stride 4
        if self.options["upsample_logits"]:
            return torch.cat([resize_bilinear(m, size) for m in mask_logits], 1).sigmoid()
        return torch.cat([resize_bilinear(m.sigmoid(), size) for m in mask_logits], 1)

    def _cell_masks(self, head_outputs, image, level, cells):
        mask_logits = head_outputs[0]
        if not self.options["decoupled"]:
            return self._training_probabilities(mask_logits[level][image, cells], mask_logits[0].shape[-2:])
        x, y = mask_logits[level]
        grid = self.options["num_grids"][level]
        size = mask_logits[0][0].shape[-2:]
        columns = self._training_probabilities(x[image, cells % grid], size)
        rows = self._training_probabilities(y[image, torch.div(cells, grid, rounding_mode="floor")], size)
        return columns * rows

    def _training_probabilities(self, logits: torch.Tensor, stride4_size) -> torch.Tensor:
        """One level's mask logits [P, h_l, w_l] -> the probabilities the loss sees: at stride 4
        with upsample_logits, else at the level's own stride."""
        if self.options["upsample_logits"]:
            logits = resize_bilinear(logits[None], stride4_size)[0]
        return logits.sigmoid()
