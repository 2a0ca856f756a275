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


def upsampled_mask_boxes(probs: torch.Tensor, size, threshold: float) -> torch.Tensor:
    """Boxes of `resize_bilinear(probs, size) > threshold`, without upsampling the masks.

    probs [B, D, h, w] -> [B, D, 4] x1 y1 x2 y2 in pixels of `size` (x2, y2 exclusive; empty masks give a
    zero box): `masks_to_boxes(resize_bilinear(probs, size) > threshold)`, which at 800x1216 took a
    quarter of a SOLOv2 graph's time, from a few passes over the low-resolution masks instead. Bilinear
    interpolation is linear in each direction, so per pair of neighbouring low-resolution rows:
    - along a full-size row, the largest value between two columns is at the smallest or the largest
      sample fraction (`_candidate_columns`), or is an edge value;
    - down a pair of rows, a full-size row is the pair mixed at its fraction, and with an integer scale
      only a few fractions recur: one pass over the pairs per fraction (`_exceeding_rows`).
    Equal to the upsampled rule but for float rounding exactly at the threshold. Needs integer scales
    (stride 4 gives them); other scales take the upsampled rule.
    """
    height, width = size
    low_h, low_w = probs.shape[-2:]
    if height % low_h or width % low_w or min(low_h, low_w) < 2:
        return masks_to_boxes(resize_bilinear(probs, size) > threshold)
    rows = _exceeding_rows(probs, height, width, threshold)  # [B, D, H]
    cols = _exceeding_rows(probs.transpose(-1, -2), width, height, threshold)  # [B, D, W]
    return _extents(rows, cols)


def _extents(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Boxes [..., 4] of the masks whose non-empty rows [..., H] and columns [..., W] are given."""
    ys = torch.arange(rows.shape[-1], device=rows.device, dtype=torch.float32)
    xs = torch.arange(cols.shape[-1], device=cols.device, dtype=torch.float32)
    big = float(max(rows.shape[-1], cols.shape[-1]))
    x1 = torch.where(cols, xs, big).amin(-1)
    y1 = torch.where(rows, ys, big).amin(-1)
    x2 = torch.where(cols, xs + 1, 0.0).amax(-1)
    y2 = torch.where(rows, ys + 1, 0.0).amax(-1)
    return torch.stack([x1, y1, x2, y2], -1) * rows.any(-1, keepdim=True)


def _exceeding_rows(probs: torch.Tensor, out_rows: int, out_cols: int, threshold: float) -> torch.Tensor:
    """bool [B, D, out_rows]: which rows of resize_bilinear(probs [B, D, h, w], (out_rows, out_cols))
    hold a value above `threshold`."""
    columns = _candidate_columns(probs, out_cols)  # [B, D, h, c]
    upper, step = columns[..., :-1, :], columns[..., 1:, :] - columns[..., :-1, :]  # each pair of rows
    pair, fraction = _pair_table(probs.shape[-2], out_rows)
    # With an integer scale a few fractions recur in every pair: one pass over the pairs for each.
    phases = sorted(set(fraction.tolist()))
    row_peaks = columns.amax(-1)  # [B, D, h]: fraction 0 (or 1) is the upper (or lower) row itself
    peaks = [row_peaks[..., :-1] if f == 0 else row_peaks[..., 1:] if f == 1 else (upper + f * step).amax(-1)
             for f in phases]  # each [B, D, h - 1]
    phase = torch.tensor([phases.index(f) for f in fraction.tolist()])
    return torch.stack(peaks, -2).flatten(-2)[..., phase * (probs.shape[-2] - 1) + pair] > threshold


def _candidate_columns(probs: torch.Tensor, out_cols: int) -> torch.Tensor:
    """[B, D, h, w] -> [B, D, h, 2w]: per low-resolution row, the values at the full-size columns where a
    bilinear row's maximum can lie. A sample is linear in its fraction within a gap, so its largest is
    at the smallest or largest fraction (with an integer scale every gap holds the same fractions), or
    at a clamped edge sample, which is the edge value itself."""
    width = probs.shape[-1]
    source = (torch.arange(out_cols, dtype=torch.float64) + 0.5) * width / out_cols - 0.5
    inside = source[(source >= 0) & (source < width - 1)]  # samples not clamped to an edge value
    fractions = (inside - inside.floor()).tolist()
    left, right = probs[..., :-1], probs[..., 1:]
    smallest, largest = min(fractions), max(fractions)
    return torch.cat([left * (1 - smallest) + right * smallest, left * (1 - largest) + right * largest,
                      probs[..., :1], probs[..., -1:]], -1)


def _pair_table(n: int, out_len: int):
    """For each of out_len half-pixel linear samples of n values (ONNX Resize, half_pixel, edges clamped):
    the pair of neighbours (p, p + 1) it lies between and its fraction in 0..1 from p."""
    source = ((torch.arange(out_len, dtype=torch.float64) + 0.5) * n / out_len - 0.5).clamp(0, n - 1)
    pair = source.floor().long().clamp(max=n - 2)
    return pair, (source - pair).to(torch.float32)


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes of boolean masks [..., H, W] -> [..., 4] x1 y1 x2 y2 in pixels (x2, y2 exclusive).

    Empty masks give a zero box. Static-shape min/max, no nonzero(), so it exports.
    """
    return _extents(masks.any(-1), masks.any(-2))
