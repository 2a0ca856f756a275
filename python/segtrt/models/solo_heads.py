"""SOLO and SOLOv2 heads, with mmdetection's module structure and parameter names.

Naming every submodule as mmdetection does (`cls_convs.0.conv`, `.gn`,
`mask_feature_head.convs_all_levels.2.conv1`, ...) makes its checkpoints load with
a prefix rename only (see mmdet_keys.py).

Both heads work on the five pyramid levels after `resize_levels` (P2 halved, P6
doubled, so strides 8, 8, 16, 32, 32) and predict, per level, a category grid
[B, C, S, S] where S = num_grids[level].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from segtrt.models.solo_ops import coordinate_features, resize_bilinear, with_coordinates

PRIOR_PROBABILITY = 0.01  # initial foreground probability of the category logits (focal loss recipe)


class ConvGN(nn.Module):
    """conv (no bias) -> GroupNorm -> ReLU, named like mmcv's ConvModule with a GN norm_cfg."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, groups: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.gn = nn.GroupNorm(groups, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.gn(self.conv(x)))


def resize_levels(features: list[torch.Tensor]) -> list[torch.Tensor]:
    """P2..P6 -> the heads' inputs: P2 resized to P3's size and P6 to P5's, others unchanged."""
    resized = list(features)
    resized[0] = resize_bilinear(features[0], features[1].shape[-2:])
    resized[-1] = resize_bilinear(features[-1], features[-2].shape[-2:])
    return resized


def upsample2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class MaskFeatModule(nn.Module):
    """SOLOv2's unified mask-feature branch: P2..P5 -> one map [B, out_channels, H/4, W/4].

    Level i goes through i (conv + 2x upsample) steps (level 0: one conv), the
    coarsest level gets CoordConv channels first, and the sum is projected by a
    1x1 ConvGN. The dynamic kernels are applied to this map.
    """

    def __init__(self, in_channels: int, feat_channels: int, out_channels: int, groups: int, num_levels: int = 4):
        super().__init__()
        self.convs_all_levels = nn.ModuleList()
        for level in range(num_levels):
            steps = nn.Sequential()
            for step in range(max(level, 1)):
                channels = feat_channels if step else in_channels + 2 * (level == num_levels - 1)
                steps.add_module(f"conv{step}", ConvGN(channels, feat_channels, 3, groups))
                if level:
                    steps.add_module(f"upsample{step}", nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.convs_all_levels.append(steps)
        self.conv_pred = ConvGN(feat_channels, out_channels, 1, groups)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """features: [P2, P3, P4, P5] (at least num_levels maps) -> [B, out_channels, H/4, W/4]."""
        last = len(self.convs_all_levels) - 1
        total = self.convs_all_levels[0](features[0])
        for level in range(1, last + 1):
            x = with_coordinates(features[level]) if level == last else features[level]
            total = total + self.convs_all_levels[level](x)
        return self.conv_pred(total)


class _CategoryBranch(nn.Module):
    """The category branch both heads share: resize to the S x S grid, stacked ConvGN, 3x3 conv to C logits."""

    def _init_category(self, num_classes, in_channels, feat_channels, stacked_convs, groups):
        self.cls_convs = nn.ModuleList(
            ConvGN(in_channels if i == 0 else feat_channels, feat_channels, 3, groups) for i in range(stacked_convs)
        )
        self.conv_cls = nn.Conv2d(feat_channels, num_classes, 3, padding=1)

    def categories(self, feature: torch.Tensor, grid: int) -> torch.Tensor:
        """[B, C_in, h, w] -> category logits [B, num_classes, grid, grid]."""
        x = resize_bilinear(feature, (grid, grid))
        for conv in self.cls_convs:
            x = conv(x)
        return self.conv_cls(x)

    def _init_weights(self, prior_layers: list[nn.Conv2d]) -> None:
        """mmdetection's init: N(0, 0.01) convs, focal-loss prior bias on the given layers."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for layer in prior_layers:
            nn.init.constant_(layer.bias, -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY))


class SOLOv2Head(_CategoryBranch):
    """Category grid + dynamic kernels per level, and the unified mask features.

    forward(P2..P6) -> (kernels: list of [B, E, S, S], category logits: list of
    [B, C, S, S], mask features [B, E, H/4, W/4]); the mask of cell (i, j) is
    sigmoid(kernels[:, :, i, j] . mask features) (a 1x1 dynamic convolution).
    """

    def __init__(self, num_classes, in_channels, feat_channels, stacked_convs, mask_feat_channels,
                 mask_out_channels, num_grids, groups):
        super().__init__()
        self.num_grids = list(num_grids)
        self._init_category(num_classes, in_channels, feat_channels, stacked_convs, groups)
        self.kernel_convs = nn.ModuleList(
            ConvGN(in_channels + 2 if i == 0 else feat_channels, feat_channels, 3, groups) for i in range(stacked_convs)
        )
        self.conv_kernel = nn.Conv2d(feat_channels, mask_out_channels, 3, padding=1)
        self.mask_feature_head = MaskFeatModule(in_channels, mask_feat_channels, mask_out_channels, groups)
        self._init_weights([self.conv_cls])

    def forward(self, features: list[torch.Tensor]):
        mask_features = self.mask_feature_head(features[:4])
        kernels, categories = [], []
        for feature, grid in zip(resize_levels(features), self.num_grids):
            # the kernel branch resizes the CoordConv channels with the features, as mmdetection does
            x = resize_bilinear(with_coordinates(feature), (grid, grid))
            for conv in self.kernel_convs:
                x = conv(x)
            kernels.append(self.conv_kernel(x))
            categories.append(self.categories(feature, grid))
        return kernels, categories, mask_features


class SOLOHead(_CategoryBranch):
    """SOLO (v1): category grid + S^2 mask channels per level (one per grid cell).

    forward(P2..P6) -> (mask logits: list of [B, S^2, h_l, w_l] at strides
    4, 4, 8, 16, 16, category logits: list of [B, C, S, S]).
    """

    def __init__(self, num_classes, in_channels, feat_channels, stacked_convs, num_grids, groups):
        super().__init__()
        self.num_grids = list(num_grids)
        self._init_category(num_classes, in_channels, feat_channels, stacked_convs, groups)
        self.mask_convs = nn.ModuleList(
            ConvGN(in_channels + 2 if i == 0 else feat_channels, feat_channels, 3, groups) for i in range(stacked_convs)
        )
        self.conv_mask_list = nn.ModuleList(nn.Conv2d(feat_channels, grid**2, 1) for grid in self.num_grids)
        self._init_weights([self.conv_cls, *self.conv_mask_list])

    def forward(self, features: list[torch.Tensor]):
        masks, categories = [], []
        for feature, grid, conv_mask in zip(resize_levels(features), self.num_grids, self.conv_mask_list):
            x = with_coordinates(feature)
            for conv in self.mask_convs:
                x = conv(x)
            masks.append(conv_mask(upsample2(x)))
            categories.append(self.categories(feature, grid))
        return masks, categories


class DecoupledSOLOHead(_CategoryBranch):
    """Decoupled SOLO (v1): a level's S^2 mask channels factor into S column and S row channels.

    forward(P2..P6) -> (mask logits: list of (x [B, S, h_l, w_l], y [B, S, h_l, w_l]) at
    strides 4, 4, 8, 16, 16, category logits: list of [B, C, S, S]). The mask of cell
    (i, j) is sigmoid(x[:, j]) * sigmoid(y[:, i]). Each channel learns from every object
    centred in its column (row), not only from those centred in its cell, which is why it
    trains in a fraction of SOLOHead's iterations; the x (y) branch sees only the x (y)
    CoordConv channel, as mmdetection's DecoupledSOLOHead.
    """

    def __init__(self, num_classes, in_channels, feat_channels, stacked_convs, num_grids, groups):
        super().__init__()
        self.num_grids = list(num_grids)
        self._init_category(num_classes, in_channels, feat_channels, stacked_convs, groups)
        self.mask_convs_x, self.mask_convs_y = (
            nn.ModuleList(
                ConvGN(in_channels + 1 if i == 0 else feat_channels, feat_channels, 3, groups)
                for i in range(stacked_convs)
            )
            for _ in range(2)
        )
        self.conv_mask_list_x, self.conv_mask_list_y = (
            nn.ModuleList(nn.Conv2d(feat_channels, grid, 3, padding=1) for grid in self.num_grids) for _ in range(2)
        )
        self._init_weights([self.conv_cls, *self.conv_mask_list_x, *self.conv_mask_list_y])

    def forward(self, features: list[torch.Tensor]):
        masks, categories = [], []
        for level, (feature, grid) in enumerate(zip(resize_levels(features), self.num_grids)):
            coordinates = coordinate_features(feature)
            x = torch.cat([feature, coordinates[:, :1]], 1)
            y = torch.cat([feature, coordinates[:, 1:]], 1)
            for conv_x, conv_y in zip(self.mask_convs_x, self.mask_convs_y):
                x, y = conv_x(x), conv_y(y)
            masks.append((self.conv_mask_list_x[level](upsample2(x)), self.conv_mask_list_y[level](upsample2(y))))
            categories.append(self.categories(feature, grid))
        return masks, categories
