"""segtrt.ops.matrix_nms against a NumPy Matrix NMS written from the SOLOv2 paper and mmdetection's semantics."""

import numpy as np
import pytest

from segtrt import SegtrtError, ops
from segtrt.ops import _native


def reference_matrix_nms(masks, labels, scores, kernel="gaussian", sigma=2.0, nms_pre=-1, max_num=-1, filter_thr=-1.0):
    """Matrix NMS in matrix form, float64 (SOLOv2 paper, Fig. 5; cuts and return order as mmdetection).

    For candidates sorted by score: decay_j = min_i f(iou_ij) / f(max_k iou_ki), over higher-scored same-class
    i and k; f(x) = exp(-sigma x^2) or 1 - x. Returns (scores, labels, input indices), highest score first.
    """
    order = np.argsort(-scores, kind="stable")
    if nms_pre > 0:
        order = order[:nms_pre]
    flat = masks[order].reshape(len(order), -1).astype(np.float64)
    sorted_scores = scores[order].astype(np.float64)
    sorted_labels = labels[order]
    inter = flat @ flat.T
    area = flat.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = inter / (area[:, None] + area[None, :] - inter)
    higher_same_class = np.triu(sorted_labels[:, None] == sorted_labels[None, :], k=1)
    decay_iou = np.where(higher_same_class, iou, 0.0)
    compensate_iou = decay_iou.max(axis=0, initial=0.0)[:, None]
    if kernel == "gaussian":
        ratio = np.exp(-sigma * decay_iou**2) / np.exp(-sigma * compensate_iou**2)
    else:
        ratio = (1 - decay_iou) / (1 - compensate_iou)
    decayed = sorted_scores * ratio.min(axis=0, initial=np.inf)
    keep = decayed >= filter_thr if filter_thr > 0 else np.ones(len(order), bool)
    decayed, sorted_labels, order = decayed[keep], sorted_labels[keep], order[keep]
    final = np.argsort(-decayed, kind="stable")
    if max_num > 0:
        final = final[:max_num]
    return decayed[final], sorted_labels[final], order[final]


def blobs(rng, count, size=24, classes=3):
    """Overlapping rectangles (so suppression matters), distinct scores, random labels in [0, classes)."""
    masks = np.zeros((count, size, size), bool)
    for mask in masks:
        y, x = rng.integers(0, size // 2, 2)
        h, w = rng.integers(3, size // 2, 2)
        mask[y:y + h, x:x + w] = True
    labels = rng.integers(0, classes, count)
    scores = rng.permutation(np.linspace(0.05, 0.95, count)).astype(np.float32)
    return masks, labels, scores


def assert_same(result, expected):
    scores, labels, keep = result
    np.testing.assert_array_equal(keep, expected[2])
    np.testing.assert_array_equal(labels, expected[1])
    np.testing.assert_allclose(scores, expected[0], rtol=0, atol=1e-6)  # equal infinities pass


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"kernel": "gaussian", "sigma": 0.5},
        {"kernel": "linear"},
        {"nms_pre": 12},
        {"max_num": 5},
        {"nms_pre": 20, "max_num": 8, "filter_thr": 0.1},
        {"kernel": "linear", "filter_thr": 0.3},
    ],
    ids=str,
)
@pytest.mark.parametrize("classes", [1, 3, 40])
def test_matches_reference(options, classes):
    rng = np.random.default_rng(classes)
    masks, labels, scores = blobs(rng, 30, classes=classes)
    result = ops.matrix_nms(masks, scores, labels, **options)
    expected = reference_matrix_nms(masks, labels, scores, **options)
    assert_same(result, expected)
    assert len(result[0]) > 0


def test_suppression_actually_happens():
    masks, labels, scores = blobs(np.random.default_rng(5), 30, classes=1)
    decayed, _, _ = ops.matrix_nms(masks, scores, labels)
    assert decayed.sum() < 0.9 * scores.sum()


def test_empty_input():
    scores, labels, keep = ops.matrix_nms(np.zeros((0, 8, 8), bool), np.zeros(0, np.float32), np.zeros(0, int))
    assert scores.shape == labels.shape == keep.shape == (0,)


def test_filter_thr_removing_everything():
    masks, labels, scores = blobs(np.random.default_rng(2), 10)
    scores_out, labels_out, keep = ops.matrix_nms(masks, scores, labels, filter_thr=0.99)
    assert keep.shape == (0,) and scores_out.shape == (0,) and labels_out.shape == (0,)


@pytest.mark.parametrize(
    ("kwargs", "attribute"),
    [({"kernel": "box"}, "kernel"), ({"sigma": -1.0}, "sigma"), ({"nms_pre": -5}, None)],
)
def test_bad_attributes_are_rejected_naming_the_attribute(kwargs, attribute):
    masks, labels, scores = blobs(np.random.default_rng(0), 4)
    if attribute is None:
        # mmdetection treats every non-positive cut as "no cut", so does the twin.
        assert_same(ops.matrix_nms(masks, scores, labels, **kwargs), reference_matrix_nms(masks, labels, scores))
        return
    with pytest.raises(SegtrtError, match=attribute):
        ops.matrix_nms(masks, scores, labels, **kwargs)


def test_plugin_validation_runs_without_tensorrt():
    _native.validate_matrix_nms_attributes("gaussian", 2.0, 0.5, 500, 100, 0.05)
    for bad, attribute in [
        ({"max_num": -1}, "max_num"),  # the plugin's outputs are padded to max_num, so it must be set
        ({"nms_pre": 0}, "nms_pre"),
        ({"mask_threshold": 1.5}, "mask_threshold"),
        ({"kernel": "Gaussian"}, "kernel"),
    ]:
        arguments = {"kernel": "gaussian", "sigma": 2.0, "mask_threshold": 0.5, "nms_pre": 500, "max_num": 100,
                     "filter_thr": 0.05, **bad}
        with pytest.raises(SegtrtError, match=attribute):
            _native.validate_matrix_nms_attributes(**arguments)


def test_non_binary_masks_are_rejected():
    with pytest.raises(SegtrtError, match="binary"):
        ops.matrix_nms(np.full((2, 4, 4), 0.7), [0.9, 0.8], [0, 0])


def without(masks, labels, scores, dropped, **options):
    """The reference on the inputs minus the candidates `dropped`, with indices into the full inputs."""
    kept = np.setdiff1d(np.arange(len(scores)), dropped)
    ref_scores, ref_labels, ref_keep = reference_matrix_nms(masks[kept], labels[kept], scores[kept], **options)
    return ref_scores, ref_labels, kept[ref_keep]


@pytest.mark.parametrize("options", [{}, {"nms_pre": 12}, {"kernel": "linear", "max_num": 6}], ids=str)
def test_nan_scores_are_dropped(options):
    masks, labels, scores = blobs(np.random.default_rng(7), 30, classes=2)
    scores[[0, 9, 21]] = np.nan
    assert_same(ops.matrix_nms(masks, scores, labels, **options), without(masks, labels, scores, [0, 9, 21], **options))


def test_infinite_score_is_an_ordinary_score():
    masks, labels, scores = blobs(np.random.default_rng(8), 20, classes=1)
    scores[4] = np.inf
    result = ops.matrix_nms(masks, scores, labels)
    assert result[2][0] == 4 and result[0][0] == np.inf
    assert_same(result, reference_matrix_nms(masks, labels, scores))


@pytest.mark.parametrize("filter_thr", [-1.0, 0.0, 0.2])
def test_padding_candidates_are_never_kept(filter_thr):
    """The SOLO graphs pad to nms_pre with score 0 and empty masks: no filter must not keep them (0/0 IoU)."""
    masks, labels, scores = blobs(np.random.default_rng(9), 20, classes=1)
    padded_masks = np.concatenate([masks, np.zeros((20, *masks.shape[1:]), bool)])
    padded_labels = np.concatenate([labels, np.zeros(20, labels.dtype)])
    padded_scores = np.concatenate([scores, np.zeros(20, np.float32)])
    result = ops.matrix_nms(padded_masks, padded_scores, padded_labels, filter_thr=filter_thr)
    assert_same(result, reference_matrix_nms(masks, labels, scores, filter_thr=filter_thr))


def test_empty_masks_do_not_overlap():
    masks = np.zeros((3, 6, 6), bool)
    scores, labels, keep = ops.matrix_nms(masks, np.array([0.9, 0.8, 0.7], np.float32), np.zeros(3, int))
    np.testing.assert_array_equal(keep, [0, 1, 2])
    np.testing.assert_array_equal(scores, np.array([0.9, 0.8, 0.7], np.float32))
