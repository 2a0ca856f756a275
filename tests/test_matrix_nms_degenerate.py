"""Degenerate Matrix NMS input has one meaning in the portable graph (models/matrix_nms.py) and in the plugin's
CPU twin (served through the plugin registry's MatrixNMS serving function, the plugin's contract): NaN scores and padding (score 0,
empty masks) are never kept nor counted, and do not take nms_pre slots; +Inf is an ordinary score."""

import numpy as np
import pytest
import torch

from segtrt.models.matrix_nms import matrix_nms
from segtrt.ops.registry import plugin


def candidates(seed, batch=2, count=24, pad=16, size=20):
    rng = np.random.default_rng(seed)
    masks = np.zeros((batch, count + pad, size, size), np.float32)
    scores = np.zeros((batch, count + pad), np.float32)
    labels = np.zeros((batch, count + pad), np.int32)
    for b in range(batch):
        for i in range(count):
            y, x = rng.integers(0, size // 2, 2)
            h, w = rng.integers(3, size // 2, 2)
            masks[b, i, y:y + h, x:x + w] = 0.9
        scores[b, :count] = rng.permutation(np.linspace(0.1, 0.9, count))
        labels[b, :count] = rng.integers(0, 2, count)
    return masks, scores, labels


@pytest.mark.parametrize(
    "settings",
    [
        {"nms_pre": 30, "max_num": 40, "filter_thr": -1.0},
        {"nms_pre": 30, "max_num": 40, "filter_thr": 0.0},
        {"nms_pre": 18, "max_num": 20, "filter_thr": 0.05},
        {"kernel": "linear", "nms_pre": 40, "max_num": 40, "filter_thr": -1.0},
    ],
    ids=str,
)
def test_graph_and_twin_agree_on_nan_padding_and_inf(settings):
    masks, scores, labels = candidates(3)
    scores[0, [2, 11]] = np.nan
    scores[1, 5] = np.inf
    options = {"kernel": "gaussian", "sigma": 2.0, "mask_threshold": 0.5, **settings}
    count, keep, kept_scores, kept_labels = (t.numpy() for t in matrix_nms(
        torch.from_numpy(masks), torch.from_numpy(scores), torch.from_numpy(labels), **options))
    twin = plugin("MatrixNMS").serve(masks, scores, labels, **options)
    np.testing.assert_array_equal(count, twin[0])
    np.testing.assert_array_equal(keep, twin[1])
    np.testing.assert_array_equal(kept_labels, twin[3])
    np.testing.assert_allclose(kept_scores, twin[2], rtol=0, atol=1e-6)
    kept_inputs = [scores[b, keep[b, :count[b]]] for b in range(len(count))]
    assert all((s > 0).all() for s in kept_inputs)  # NaN and padding compare false
    assert (keep[np.arange(keep.shape[1]) >= count[:, None]] == -1).all()
    if settings["filter_thr"] <= 0:  # nothing filtered: every real candidate is kept, the padding never
        assert count.tolist() == [22, 24]
