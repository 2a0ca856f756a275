"""RoIAlign over a feature pyramid: each RoI is pooled from the level that suits its size.

This is the one module the export stage replaces by a custom ONNX node
"MultilevelRoIAlign" (our TensorRT plugin) with the same attributes, so its
constructor arguments are exactly the plugin's.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.ops import roi_align


class MultilevelRoIAlign(nn.Module):
    """Pool rois [B, R, 4] (input pixels) from pyramid features into [B, R, C, oh, ow].

    The level of a box of area A is k = floor(canonical_level + log2(sqrt(A) /
    canonical_scale) + 1e-6), clamped to the levels present (torchvision's
    LevelMapper). Sampling follows torchvision's roi_align (sampling_ratio points
    per bin and axis; aligned=False is torchvision's MultiScaleRoIAlign).

    In eval mode every level is pooled for every RoI and the right one is
    selected, so shapes are static and there is no data-dependent indexing (the
    plugin does the selection without the wasted work). Training, never
    exported, pools each RoI at its own level only.
    """

    def __init__(
        self,
        output_size: int,
        strides: tuple[int, ...],
        sampling_ratio: int = 2,
        aligned: bool = False,
        canonical_scale: float = 224.0,
        canonical_level: int = 4,
    ):
        super().__init__()
        self.output_size = (output_size, output_size)
        self.strides = tuple(strides)
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned
        self.canonical_scale = canonical_scale
        self.canonical_level = canonical_level
        self.first_level = round(math.log2(self.strides[0]))
        self.last_level = round(math.log2(self.strides[-1]))

    def levels(self, rois: torch.Tensor) -> torch.Tensor:
        """Pyramid index (0 = finest feature map given) of each roi [..., 4], as int64 [...]."""
        size = torch.sqrt((rois[..., 2] - rois[..., 0]) * (rois[..., 3] - rois[..., 1]))
        level = torch.floor(self.canonical_level + torch.log2(size / self.canonical_scale) + 1e-6)
        return (level.clamp(self.first_level, self.last_level) - self.first_level).to(torch.int64)

    def forward(self, features: list[torch.Tensor], rois: torch.Tensor) -> torch.Tensor:
        """features: one [B, C, H/s, W/s] map per stride (extra maps ignored); rois [B, R, 4]."""
        batch, count = rois.shape[:2]
        image_index = torch.arange(batch, dtype=rois.dtype, device=rois.device)[:, None].expand(batch, count)
        flat_rois = torch.cat((image_index.reshape(-1, 1), rois.reshape(-1, 4)), dim=1)
        levels = self.levels(flat_rois[:, 1:])
        if self.training:
            pooled = self._pool_own_level_only(features, flat_rois, levels)
        else:
            pooled = self._pool_every_level(features, flat_rois, levels)
        return pooled.reshape(batch, count, *pooled.shape[1:])

    def _pool_every_level(self, features, flat_rois, levels):
        """Static-shape form for export: pool all rois [N, 5] on every level, keep each one's own."""
        levels = levels[:, None, None, None]
        pooled = None
        for index, (feature, stride) in enumerate(zip(features, self.strides)):
            level_pooled = roi_align(
                feature, flat_rois, self.output_size, 1.0 / stride, self.sampling_ratio, self.aligned
            )
            pooled = level_pooled if pooled is None else torch.where(levels == index, level_pooled, pooled)
        return pooled

    def _pool_own_level_only(self, features, flat_rois, levels):
        """Same result, each roi pooled once: training is 4x cheaper (roi_align's backward is slow)."""
        order = torch.argsort(levels, stable=True)
        per_level = torch.bincount(levels, minlength=len(self.strides)).tolist()
        pooled = [
            roi_align(feature, level_rois, self.output_size, 1.0 / stride, self.sampling_ratio, self.aligned)
            for feature, stride, level_rois in zip(features, self.strides, flat_rois[order].split(per_level))
        ]
        # One gather back to the rois' order; scattering level by level copied the whole output per level.
        return torch.cat(pooled)[torch.argsort(order)]
