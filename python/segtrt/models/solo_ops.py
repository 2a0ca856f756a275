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


def above_threshold(values: torch.Tensor, threshold: float) -> torch.Tensor:
    """values where > threshold, else 0 (any shape): one ThresholdedRelu node in an export, one pass over
    the values where `values * (values > threshold)` took three (Greater, Cast, Mul).

    torch's exporter writes aten::threshold only for a threshold of 0, hence the Function."""
    return _AboveThreshold.apply(values, float(threshold))


class _AboveThreshold(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values, threshold):
        return F.threshold(values, threshold, 0.0)

    @staticmethod
    def symbolic(g, values, threshold):
        return g.op("ThresholdedRelu", values, alpha_f=threshold)


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


def upsampled_mask_boxes(probs: torch.Tensor, scale: int, threshold: float) -> torch.Tensor:
    """Boxes of `resize_bilinear(probs, (scale * h, scale * w)) > threshold`, without upsampling.

    probs [B, D, h, w] (h, w >= 2) -> [B, D, 4] x1 y1 x2 y2 in pixels of the upsampled size (x2, y2
    exclusive; empty masks give a zero box). Upsampling all D masks to the input and reducing them took a
    quarter of a SOLOv2 graph's time at 800x1216; this makes a few passes over the small masks instead.
    Bilinear interpolation is linear in each direction, so:
    - along a full-size row, the largest value between two columns is at the smallest or the largest
      sample fraction (the same in every gap for an integer scale), or is an edge value
      (`_candidate_columns`);
    - a full-size row is a pair of neighbouring small rows mixed at one of `scale` recurring fractions:
      one pass over the pairs per fraction (`_exceeding_rows`).
    Equal to the upsampled rule but for float rounding exactly at the threshold. Only tensor shapes
    flow into the graph, so a dynamic-size export stays right.
    """
    rows = _exceeding_rows(probs, scale, threshold)  # [B, D, scale * h]
    cols = _exceeding_rows(probs.transpose(-1, -2), scale, threshold)  # [B, D, scale * w]
    return _extents(rows, cols)


def _exceeding_rows(probs: torch.Tensor, scale: int, threshold: float) -> torch.Tensor:
    """bool [B, D, scale * h]: which rows of probs [B, D, h, w] upsampled `scale` times hold a value above
    `threshold`."""
    columns = _candidate_columns(probs, scale)  # [B, D, h, c]
    upper, step = columns[..., :-1, :], columns[..., 1:, :] - columns[..., :-1, :]  # each pair of rows
    row_peaks = columns.amax(-1)  # [B, D, h]: the small rows themselves (clamped edge rows)
    phases = []
    for offset in _sample_offsets(scale):  # full-size row scale * j + k lies `offset` below small row j
        if offset < 0:  # between rows j - 1 and j; the first full-size rows clamp to row 0
            pairs = (upper + (1 + offset) * step).amax(-1)
            phases.append(torch.cat([row_peaks[..., :1], pairs], -1))
        else:  # between rows j and j + 1; the last full-size rows clamp to row h - 1
            pairs = (upper + offset * step).amax(-1) if offset > 0 else row_peaks[..., :-1]
            phases.append(torch.cat([pairs, row_peaks[..., -1:]], -1))
    return torch.stack(phases, -1).flatten(-2) > threshold


def _candidate_columns(probs: torch.Tensor, scale: int) -> torch.Tensor:
    """[B, D, h, w] -> [B, D, h, 2w]: per small row, the values at the full-size columns where a
    bilinear row's maximum can lie: a sample is linear in its fraction within a gap, so the largest is
    at the smallest or largest fraction, or at a clamped edge sample (the edge value itself)."""
    fractions = [offset % 1.0 for offset in _sample_offsets(scale)]
    left, right = probs[..., :-1], probs[..., 1:]
    smallest, largest = min(fractions), max(fractions)
    return torch.cat([left * (1 - smallest) + right * smallest, left * (1 - largest) + right * largest,
                      probs[..., :1], probs[..., -1:]], -1)


def _sample_offsets(scale: int) -> list[float]:
    """Where full-size sample scale * j + k falls relative to small value j, for k in 0..scale-1
    (half-pixel centres, as ONNX Resize's half_pixel and torch's align_corners=False)."""
    return [(k + 0.5) / scale - 0.5 for k in range(scale)]


def _extents(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Boxes [..., 4] x1 y1 x2 y2 of the masks whose occupied rows [..., H] and columns [..., W] are given."""
    ys = torch.arange(rows.shape[-1], device=rows.device, dtype=torch.float32)
    xs = torch.arange(cols.shape[-1], device=cols.device, dtype=torch.float32)
    # "no pixel" sentinels from the shape itself, so that a graph exported with a dynamic size keeps them right
    x1 = torch.where(cols, xs, xs[-1] + 1).amin(-1)
    y1 = torch.where(rows, ys, ys[-1] + 1).amin(-1)
    x2 = torch.where(cols, xs + 1, 0.0).amax(-1)
    y2 = torch.where(rows, ys + 1, 0.0).amax(-1)
    return torch.stack([x1, y1, x2, y2], -1) * rows.any(-1, keepdim=True)


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes of boolean masks [..., H, W] -> [..., 4] x1 y1 x2 y2 in pixels (x2, y2 exclusive).

    Empty masks give a zero box. Static-shape min/max, no nonzero(), so it exports.
    """
    return _extents(masks.any(-1), masks.any(-2))
