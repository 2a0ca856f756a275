"""Small export-friendly tensor operations shared by the SOLO heads and Matrix NMS."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gather_rows(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Pick rows per image: values [B, N, ...], index [B, K] in 0..N-1 -> [B, K, ...].

    Written as one flat Gather (not torch.gather with an index expanded to the
    full row size) so the exported graph stays small.
    """
    batch, rows = values.shape[:2]
    offsets = torch.arange(batch, device=index.device).unsqueeze(1) * rows
    flat = values.reshape((batch * rows,) + values.shape[2:])
    return flat[(index + offsets).reshape(-1)].reshape(index.shape + values.shape[2:])


def resize_bilinear(maps: torch.Tensor, size) -> torch.Tensor:
    """[B, C, h, w] -> [B, C, *size], bilinear with half-pixel centres (ONNX Resize, align_corners=False)."""
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


def coordinate_features(feature: torch.Tensor) -> torch.Tensor:
    """CoordConv channels for a feature map [B, C, H, W] -> [B, 2, H, W] (x then y, in -1..1).

    Depends only on the (static) shape, so an export folds it to a constant.
    """
    batch, _, height, width = feature.shape
    ys = torch.linspace(-1, 1, height, device=feature.device, dtype=feature.dtype)
    xs = torch.linspace(-1, 1, width, device=feature.device, dtype=feature.dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y]).unsqueeze(0).expand(batch, 2, height, width)


def with_coordinates(feature: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, C + 2, H, W] with the CoordConv channels appended."""
    return torch.cat([feature, coordinate_features(feature)], 1)


def point_nms(scores: torch.Tensor) -> torch.Tensor:
    """Keep a grid cell's score only where it is the maximum of its 2x2 neighbourhood.

    scores [B, C, S, S] probabilities -> same shape, non-maxima set to 0
    (SOLO's replacement for box NMS on the category grid).
    """
    local_max = F.max_pool2d(scores, 2, stride=1, padding=1)[:, :, :-1, :-1]
    return scores * (local_max == scores)


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes of boolean masks [..., H, W] -> [..., 4] x1 y1 x2 y2 in pixels (x2, y2 exclusive).

    Empty masks give a zero box. Static-shape min/max, no nonzero(), so it exports.
    """
    height, width = masks.shape[-2:]
    rows = masks.any(-1)
    cols = masks.any(-2)
    ys = torch.arange(height, device=masks.device, dtype=torch.float32)
    xs = torch.arange(width, device=masks.device, dtype=torch.float32)
    # "no pixel" sentinels from the shape itself, so that a graph exported with a dynamic size keeps them right
    x1 = torch.where(cols, xs, xs[-1] + 1).amin(-1)
    y1 = torch.where(rows, ys, ys[-1] + 1).amin(-1)
    x2 = torch.where(cols, xs + 1, 0.0).amax(-1)
    y2 = torch.where(rows, ys + 1, 0.0).amax(-1)
    boxes = torch.stack([x1, y1, x2, y2], -1)
    return boxes * rows.any(-1, keepdim=True)
