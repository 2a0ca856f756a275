import json

import cv2
import numpy as np
import pytest

from segtrt.data.coco import CocoDataset, boxes_from_masks
from segtrt.data.synth import write_dataset
from segtrt.evaluation.coco import evaluate_predictions, format_table
from segtrt.evaluation.boundary import boundary_f_score, boundary_tolerance, mask_boundary, match_instances


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    write_dataset(root, 6, seed=11, size=(192, 192), progress=False)
    return CocoDataset(root)


def _ground_truth_as_predictions(dataset, transform=lambda mask: mask):
    predictions = []
    for index in range(len(dataset)):
        image_id = dataset.image_ids[index]
        info = dataset.images[image_id]
        target = dataset.load_target(image_id, (info["height"], info["width"]))
        masks = np.array([transform(m) for m in target["masks"]]).astype(bool).reshape(target["masks"].shape)
        predictions.append({
            "image_id": image_id,
            "boxes": boxes_from_masks(masks),
            "scores": np.linspace(0.99, 0.6, len(masks)),
            "labels": target["labels"],
            "masks": masks,
        })
    return predictions


def test_ground_truth_scores_perfectly(dataset):
    metrics = evaluate_predictions(dataset.coco_api(), _ground_truth_as_predictions(dataset), dataset.category_ids)
    for kind in ("segm", "bbox"):
        for name in ("AP", "AP50", "AP75", "APs", "APm", "APl"):
            assert metrics[kind][name] == pytest.approx(1.0), (kind, name)
    assert metrics["boundary_f"] == pytest.approx(1.0)
    assert metrics["boundary_f_matches"] == sum(len(p["labels"]) for p in _ground_truth_as_predictions(dataset))
    assert "segm" in format_table(metrics)
    json.dumps(metrics)


def test_eroded_masks_lower_mask_ap_and_boundary_f(dataset):
    def erode(mask):
        return cv2.erode(mask, np.ones((7, 7), np.uint8))

    predictions = _ground_truth_as_predictions(dataset, erode)
    metrics = evaluate_predictions(dataset.coco_api(), predictions, dataset.category_ids)
    assert metrics["segm"]["AP"] < 0.8
    assert metrics["segm"]["APs"] < metrics["segm"]["APl"]  # a 3-pixel erosion hurts small objects most
    assert 0 < metrics["boundary_f"] < 0.5  # boundaries 3 px off, tolerance 2 px


def test_wrong_labels_and_no_predictions_score_zero(dataset):
    predictions = _ground_truth_as_predictions(dataset)
    for prediction in predictions:
        prediction["labels"] = (prediction["labels"] + 1) % len(dataset.class_names)
    metrics = evaluate_predictions(dataset.coco_api(), predictions, dataset.category_ids)
    assert metrics["segm"]["AP"] == 0 and metrics["bbox"]["AP"] == 0 and metrics["boundary_f"] == -1

    empty = [{"image_id": i, "boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0, int),
              "masks": np.zeros((0, 192, 192), bool)} for i in dataset.image_ids]
    metrics = evaluate_predictions(dataset.coco_api(), empty, dataset.category_ids)
    assert metrics["segm"]["AP"] == 0 and metrics["bbox"]["AP50"] == 0


def test_boundary_f_score_against_hand_computed_values():
    assert boundary_tolerance(192, 192) == 2 and boundary_tolerance(480, 640) == 6
    square = np.zeros((40, 40), np.uint8)
    square[10:30, 10:30] = 1
    boundary = mask_boundary(square)
    assert boundary.sum() == 4 * 20 - 4 and not boundary[11:29, 11:29].any()
    shifted = np.roll(square, 2, axis=1)
    assert boundary_f_score(shifted, square, tolerance=2) == 1.0
    # Shifted 3 px right (76 boundary pixels each), counting predicted pixels within 2 px of the truth:
    # top and bottom rows: 19 each (columns 13..31; column 32 is 3 px from the corner at column 29);
    # left column 13: rows 11, 12, 27, 28 (within 2 px of the top/bottom rows), 4 pixels;
    # right column 32: none (3 px from column 29).  Precision == recall by symmetry.
    shifted = np.roll(square, 3, axis=1)
    assert boundary_f_score(shifted, square, tolerance=2) == pytest.approx((19 + 19 + 4) / 76)
    assert boundary_f_score(np.zeros_like(square), square, tolerance=2) == 0.0


def test_matching_is_greedy_by_score_within_a_class():
    gt = np.zeros((2, 30, 30), bool)
    gt[0, 0:10, 0:10] = True
    gt[1, 15:30, 15:30] = True
    close = gt[0].copy()
    close[10, 0:10] = True  # IoU 10/11 with gt 0
    coarse = np.zeros((30, 30), bool)
    coarse[0:14, 0:10] = True  # IoU 10/14 with gt 0
    preds = np.stack([coarse, close, gt[1], gt[1]])
    pairs = match_instances(preds, np.array([0, 0, 0, 1]), np.array([0.9, 0.2, 0.5, 0.8]), gt, np.array([0, 1]))
    # The higher-scored coarse mask takes gt 0; prediction 2 has the wrong class for gt 1, prediction 3 matches it.
    assert sorted(pairs) == [(0, 0), (3, 1)]
