import numpy as np

from segtrt.export.parity import TIE_TOLERANCE, compare_instances, mask_iou


def _detections(boxes, labels):
    masks = np.full((len(boxes), 32, 32), 0.1, np.float32)
    for mask, (x1, y1, x2, y2) in zip(masks, boxes):
        mask[y1:y2, x1:x2] = 0.9
    return {"boxes": np.array(boxes, np.float64).reshape(-1, 4), "labels": np.array(labels), "masks": masks}


def test_rows_in_another_order_are_the_same_detections():
    reference = _detections([(1, 1, 9, 9), (12, 12, 30, 30)], [0, 2])
    swapped = _detections([(12, 12, 30, 30), (1, 1, 9, 9)], [2, 0])
    result = compare_instances(reference, swapped)
    assert result == {"count_equal": True, "labels_equal": True, "box_rel": 0.0, "min_iou": 1.0, "max_prob_diff": 0.0,
                      "box_ties": 0}


def test_label_box_and_mask_differences_are_reported():
    reference = _detections([(1, 1, 9, 9), (12, 12, 30, 30)], [0, 2])
    assert not compare_instances(reference, _detections([(1, 1, 9, 9), (12, 12, 30, 30)], [0, 1]))["labels_equal"]
    moved = compare_instances(reference, _detections([(1, 1, 9, 9), (12, 12, 30, 20)], [0, 2]))
    assert moved["box_rel"] == 10 / 30 and moved["min_iou"] < 0.6
    assert not compare_instances(reference, _detections([(1, 1, 9, 9)], [0]))["count_equal"]


def test_float_noise_across_the_threshold_is_a_tie_not_a_difference():
    reference = np.full((4, 4), 0.9, np.float32)
    reference[0, :2] = 0.5 + TIE_TOLERANCE / 4  # two cells of 16 sit at the threshold
    noisy = reference.copy()
    noisy[0, :2] = 0.5 - TIE_TOLERANCE / 4
    assert mask_iou(reference, noisy) == 1.0
    flipped = reference.copy()
    flipped[0, :2] = 0.4  # a real difference of the same two cells
    assert mask_iou(reference, flipped) == 14 / 16


def test_a_mask_box_one_pixel_off_at_a_threshold_tie_is_a_tie_only_for_mask_boxes():
    reference = _detections([(1, 1, 9, 9), (12, 12, 30, 30)], [0, 2])
    moved = _detections([(1, 1, 9, 9), (12, 12, 30, 31)], [0, 2])
    moved["masks"] = reference["masks"] + TIE_TOLERANCE / 2  # same masks up to float noise
    assert compare_instances(reference, moved)["box_rel"] == 1 / 30  # regressed boxes: a real difference
    tie = compare_instances(reference, moved, boxes_from_masks=True)
    assert tie["box_ties"] == 1 and tie["box_rel"] == 0.0
    moved["masks"][1] += 0.1  # the masks differ too: no tie
    assert compare_instances(reference, moved, boxes_from_masks=True)["box_ties"] == 0
