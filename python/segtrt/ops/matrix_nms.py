"""Matrix NMS (SOLOv2) on CPU, through the plugin's own C++ math; mmdetection's mask_matrix_nms semantics."""

import numpy as np

from segtrt import SegtrtError
from segtrt.ops import _native


def matrix_nms(masks, scores, labels, kernel="gaussian", sigma=2.0, nms_pre=-1, max_num=-1, filter_thr=-1.0):
    """Soft-suppresses same-class overlapping masks.

    masks [N, H, W] binary (bool or 0/1), scores [N] float, labels [N] int: the plugin node's input order.
    Returns (scores [K] float32 decayed, descending; labels [K] int64; keep_indices [K] int64 into the inputs),
    in the order mmdetection's mask_matrix_nms returns them. nms_pre / max_num <= 0 and filter_thr <= 0 disable
    their cut, as in mmdetection.
    """
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise SegtrtError(f"masks must be [N, H, W], got shape {masks.shape}.")
    n = masks.shape[0]
    flat = np.ascontiguousarray(masks.reshape(n, masks.shape[1] * masks.shape[2]), dtype=np.float32)
    if not np.isin(flat, (0.0, 1.0)).all():
        raise SegtrtError("masks must be binary (bool or 0/1); threshold mask probabilities first.")
    labels_arr = np.ascontiguousarray(labels, dtype=np.int32)
    scores_arr = np.ascontiguousarray(scores, dtype=np.float32)
    if labels_arr.shape != (n,) or scores_arr.shape != (n,):
        raise SegtrtError(f"labels and scores must be [N={n}], got {labels_arr.shape} and {scores_arr.shape}.")
    # mmdetection treats every non-positive nms_pre / max_num as "no cut"; the C side wants -1 for that.
    nms_pre, max_num = (int(v) if v > 0 else -1 for v in (nms_pre, max_num))
    count = np.zeros(1, dtype=np.int32)
    keep = np.zeros(n, dtype=np.int32)
    kept_scores = np.zeros(n, dtype=np.float32)
    kept_labels = np.zeros(n, dtype=np.int32)
    _native.call(
        "segtrt_matrix_nms", _native.f32(flat), n, flat.shape[1], _native.i32(labels_arr), _native.f32(scores_arr),
        str(kernel).encode(), float(sigma), 0.5, nms_pre, max_num, float(filter_thr), _native.i32(count),
        _native.i32(keep), _native.f32(kept_scores), _native.i32(kept_labels),
    )
    k = int(count[0])
    return kept_scores[:k], kept_labels[:k].astype(np.int64), keep[:k].astype(np.int64)
