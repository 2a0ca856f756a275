"""RoIAlign and multi-level (FPN) RoIAlign on CPU, through the plugin's own C++ math."""

import ctypes

import numpy as np

from segtrt import SegtrtError
from segtrt.ops import _native


def _pair(output_size) -> tuple[int, int]:
    return (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)


def roi_align(x, rois, batch_indices, output_size=(7, 7), spatial_scale=1.0, sampling_ratio=0, aligned=True,
              mode="avg") -> np.ndarray:
    """torchvision.ops.roi_align semantics (mode "max" as ONNX RoiAlign).

    x [N, C, H, W], rois [R, 4] (x1, y1, x2, y2 before spatial_scale), batch_indices [R] -> [R, C, oh, ow] float32.
    """
    x = _native.float32(x, "x", 4)
    rois = _native.float32(rois, "rois", 2)
    batch_indices = np.ascontiguousarray(batch_indices, dtype=np.int32)
    if rois.shape[1] != 4 or batch_indices.shape != (rois.shape[0],):
        raise SegtrtError(f"rois must be [R, 4] with batch_indices [R], got {rois.shape} and {batch_indices.shape}.")
    if rois.shape[0] and (batch_indices.min() < 0 or batch_indices.max() >= x.shape[0]):
        raise SegtrtError(f"batch_indices must lie in [0, {x.shape[0]}), got {batch_indices.min()}..{batch_indices.max()}.")
    oh, ow = _pair(output_size)
    out = np.zeros((rois.shape[0], x.shape[1], max(oh, 0), max(ow, 0)), dtype=np.float32)
    _native.call(
        "segtrt_roi_align", _native.f32(x), x.shape[1], x.shape[2], x.shape[3], _native.f32(rois),
        _native.i32(batch_indices), rois.shape[0], oh, ow, float(spatial_scale), int(sampling_ratio), int(aligned),
        str(mode).encode(), _native.f32(out),
    )
    return out


def multilevel_roi_align(features, rois, strides=(4, 8, 16, 32), output_size=(7, 7), sampling_ratio=0, aligned=True,
                         mode="avg", canonical_scale=224, canonical_level=4) -> np.ndarray:
    """The MultilevelRoIAlign plugin on CPU: each RoI pooled from the level torchvision's LevelMapper picks.

    features: list of [B, C, H_l, W_l] (stride strides[l]), rois [B, R, 4] x1y1x2y2 in input pixels
    -> [B, R, C, oh, ow] float32.
    """
    maps = [_native.float32(f, f"features[{i}]", 4) for i, f in enumerate(features)]
    rois = _native.float32(rois, "rois", 3)
    if not maps or any(m.shape[:2] != maps[0].shape[:2] for m in maps):
        raise SegtrtError("features must be a non-empty list of [B, C, H_l, W_l] maps sharing B and C.")
    batch, channels = maps[0].shape[:2]
    if rois.shape[0] != batch or rois.shape[2] != 4:
        raise SegtrtError(f"rois must be [B={batch}, R, 4], got {rois.shape}.")
    oh, ow = _pair(output_size)
    strides_arr = np.ascontiguousarray(strides, dtype=np.int32)
    pointers = (_native._f32 * len(maps))(*[_native.f32(m) for m in maps])
    heights = np.array([m.shape[2] for m in maps], dtype=np.int32)
    widths = np.array([m.shape[3] for m in maps], dtype=np.int32)
    out = np.zeros((batch, rois.shape[1], channels, max(oh, 0), max(ow, 0)), dtype=np.float32)
    _native.call(
        "segtrt_multilevel_roi_align", ctypes.cast(pointers, ctypes.POINTER(_native._f32)), _native.i32(heights),
        _native.i32(widths), len(maps), batch, channels, _native.f32(rois), rois.shape[1], _native.i32(strides_arr),
        len(strides_arr), oh, ow, int(sampling_ratio), int(aligned), str(mode).encode(), int(canonical_scale),
        int(canonical_level), _native.f32(out),
    )
    return out
