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


def upsampled_mask_boxes(probs: torch.Tensor, size, threshold: float, band: int = 8, chunk: int = 4) -> torch.Tensor:
    """Boxes of `resize_bilinear(probs, size) > threshold` without upsampling the masks.

    probs [B, D, h, w] -> [B, D, 4] x1 y1 x2 y2 in pixels of `size` (x2, y2 exclusive; empty masks give
    a zero box), the same as `masks_to_boxes(resize_bilinear(probs, size) > threshold)`, which at
    800x1216 costs a quarter of a SOLOv2 graph's time. Bilinear interpolation is linear between samples:
    - the largest upsampled value between two neighbouring columns is one of two samples (`_gap_peaks`);
    - so per block of `chunk` columns, interpolating the low-resolution rows' block maxima bounds every
      full-size row's largest value from above: rows the bound calls empty are empty, and its box
      contains the true one;
    - the true edges are then found exactly among the `band` full-size rows inside each bound.
    Exact unless an edge lies more than `band` rows inside its bound (then the bound is kept: never a
    smaller box) and for float rounding exactly at the threshold. Needs integer scales (stride 4 does).
    """
    height, width = size
    if height % probs.shape[-2] or width % probs.shape[-1]:
        return masks_to_boxes(resize_bilinear(probs, size) > threshold)
    y1, y2, found = _edges(probs, height, width, threshold, band, chunk)
    x1, x2, _ = _edges(probs.transpose(-1, -2), width, height, threshold, band, chunk)
    return torch.stack([x1, y1, x2, y2], -1).to(torch.float32) * found.unsqueeze(-1)


def _edges(probs: torch.Tensor, out_rows: int, out_cols: int, threshold: float, band: int, chunk: int):
    """First and one-past-last full-size rows ([B, D]) where the masks probs [B, D, h, w], upsampled to
    out_rows x out_cols, exceed `threshold`, and whether any row does (bool [B, D])."""
    low, high, fraction = _sample_table(probs.shape[-2], out_rows)
    gaps = _gap_peaks(probs, out_cols)  # [B, D, h, w - 1]
    pad = -gaps.shape[-1] % chunk
    blocks = F.pad(gaps, (0, pad)).unflatten(-1, (-1, chunk)).amax(-1)  # [B, D, h, blocks]
    weight = fraction[:, None]
    bound = ((blocks[..., low, :] * (1 - weight) + blocks[..., high, :] * weight).amax(-1)) > threshold
    rows = torch.arange(out_rows, device=probs.device)
    first_bound = torch.where(bound, rows, out_rows).amin(-1)
    last_bound = torch.where(bound, rows, -1).amax(-1)
    steps = torch.arange(band, device=probs.device)
    first = _first_exceeding(probs, (first_bound.unsqueeze(-1) + steps).clamp(max=out_rows - 1),
                             low, high, fraction, out_cols, threshold)
    last = _first_exceeding(probs, (last_bound.unsqueeze(-1) - steps).clamp(min=0),
                            low, high, fraction, out_cols, threshold)
    # A bound no longer than the band, with no row exceeding in it, holds an empty mask.
    found = bound.any(-1) & ((first < band) | (last_bound - first_bound >= band))
    return first_bound + first, last_bound - last + 1, found


def _first_exceeding(probs, candidate_rows, low, high, fraction, out_cols: int, threshold: float):
    """Index k of the first of the candidate full-size rows [B, D, K] whose upsampled maximum exceeds
    the threshold (K when none does)."""
    band = candidate_rows.shape[-1]

    def gather(index):
        return probs.gather(2, index.unsqueeze(-1).expand(*index.shape, probs.shape[-1]))

    weight = fraction[candidate_rows].unsqueeze(-1)
    rows = gather(low[candidate_rows]) * (1 - weight) + gather(high[candidate_rows]) * weight  # [B, D, K, w]
    exceeds = _gap_peaks(rows, out_cols).amax(-1) > threshold
    return torch.where(exceeds, torch.arange(band, device=probs.device), band).amin(-1)


def _gap_peaks(rows: torch.Tensor, out_len: int) -> torch.Tensor:
    """[..., n] -> [..., n - 1]: the largest of the half-pixel linear samples (out_len, an integer multiple
    of n) that fall between each pair of neighbouring values, the clamped edge samples in the end gaps.

    A sample is linear in its fraction, so a gap's largest sample is the one with the smallest or the
    largest fraction, and with an integer scale every gap holds the same fractions.
    """
    n = rows.shape[-1]
    if n == 1:  # one value, no gap: every sample is that value
        return rows
    source = (torch.arange(out_len, dtype=torch.float64) + 0.5) * n / out_len - 0.5
    inside = source[(source >= 0) & (source < n - 1)]  # samples not clamped to an edge value
    fractions = (inside - inside.floor()).tolist()
    left, right = rows[..., :-1], rows[..., 1:]
    peaks = torch.maximum(left * (1 - min(fractions)) + right * min(fractions),
                          left * (1 - max(fractions)) + right * max(fractions))
    # the clamped edge samples (the first and last values themselves) belong to the end gaps
    first = torch.maximum(peaks[..., :1], rows[..., :1])
    last = torch.maximum(peaks[..., -1:], rows[..., -1:])
    if n == 2:
        return torch.maximum(first, last)
    return torch.cat([first, peaks[..., 1:-1], last], -1)


def _sample_table(n: int, out_len: int):
    """Where each of out_len half-pixel samples of n values falls: low and high indices and the fraction
    (ONNX Resize linear, coordinate_transformation_mode half_pixel, edges clamped)."""
    source = ((torch.arange(out_len, dtype=torch.float64) + 0.5) * n / out_len - 0.5).clamp(0, n - 1)
    low = source.floor().long()
    high = (low + 1).clamp(max=n - 1)
    return low, high, (source - low).to(torch.float32)


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes of boolean masks [..., H, W] -> [..., 4] x1 y1 x2 y2 in pixels (x2, y2 exclusive).

    Empty masks give a zero box. Static-shape min/max, no nonzero(), so it exports.
    """
    height, width = masks.shape[-2:]
    rows = masks.any(-1)
    cols = masks.any(-2)
    ys = torch.arange(height, device=masks.device, dtype=torch.float32)
    xs = torch.arange(width, device=masks.device, dtype=torch.float32)
    big = float(max(height, width))
    x1 = torch.where(cols, xs, big).amin(-1)
    y1 = torch.where(rows, ys, big).amin(-1)
    x2 = torch.where(cols, xs + 1, 0.0).amax(-1)
    y2 = torch.where(rows, ys + 1, 0.0).amax(-1)
    boxes = torch.stack([x1, y1, x2, y2], -1)
    return boxes * rows.any(-1, keepdim=True)
