"""Boundary F-score of instance masks (NumPy and OpenCV, no torch).

Definition used by segtrt (the per-object boundary measure of DAVIS, Perazzi et
al. 2016, after the BF score of Csurka et al. 2013):

* a mask's boundary is its pixels with a 3x3 neighbour outside the mask (the image
  edge counts as outside);
* precision is the share of predicted boundary pixels within `tolerance` pixels
  (Euclidean) of the ground-truth boundary, recall the converse; F = 2PR / (P + R);
* tolerance = max(1, round(0.0075 * image diagonal)): 2 px at 192x192, 6 px at 640x480;
* predictions are matched greedily (highest score first, any score, as COCOeval
  matches) to the unmatched non-crowd ground truth of the same class with the
  highest mask IoU, if that IoU is >= 0.5; the score is the mean F over matched
  pairs, so it measures how well boundaries are placed, not how many objects
  are found (AP does that). -1 when nothing matched.
"""

from __future__ import annotations

import numpy as np

BOUNDARY_TOLERANCE_FRACTION = 0.0075
MATCH_IOU_THRESHOLD = 0.5


def boundary_tolerance(height: int, width: int) -> int:
    """Tolerance in pixels for an image of the given size."""
    return max(1, round(BOUNDARY_TOLERANCE_FRACTION * float(np.hypot(height, width))))


def mask_boundary(mask: np.ndarray) -> np.ndarray:
    """Bool [h, w]: pixels of the mask with at least one 3x3 neighbour outside it."""
    import cv2

    mask = mask.astype(np.uint8)
    eroded = cv2.erode(mask, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return (mask > 0) & (eroded == 0)


def boundary_f_score(prediction: np.ndarray, ground_truth: np.ndarray, tolerance: int) -> float:
    """F-score of two masks [h, w]'s boundaries with the given pixel tolerance (0 if either is empty)."""
    predicted_boundary, true_boundary = mask_boundary(prediction), mask_boundary(ground_truth)
    if not predicted_boundary.any() or not true_boundary.any():
        return 0.0
    precision = (_distance_to(true_boundary)[predicted_boundary] <= tolerance).mean()
    recall = (_distance_to(predicted_boundary)[true_boundary] <= tolerance).mean()
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def match_instances(pred_masks, pred_labels, pred_scores, gt_masks, gt_labels) -> list[tuple[int, int]]:
    """Greedy (prediction index, ground-truth index) pairs as described in the module docstring.

    pred_masks bool [n, h, w], pred_labels [n], pred_scores [n], gt_masks bool [m, h, w], gt_labels [m].
    """
    if len(gt_masks) == 0:
        return []
    gt_flat = gt_masks.reshape(len(gt_masks), -1).astype(np.float32)
    gt_area = gt_flat.sum(axis=1)
    matched_gt = np.zeros(len(gt_masks), bool)
    pairs = []
    for index in np.argsort(-np.asarray(pred_scores), kind="stable"):
        flat = pred_masks[index].reshape(-1).astype(np.float32)
        intersection = gt_flat @ flat
        iou = intersection / np.maximum(gt_area + flat.sum() - intersection, 1)
        iou[matched_gt | (gt_labels != pred_labels[index])] = -1
        best = int(np.argmax(iou))
        if iou[best] >= MATCH_IOU_THRESHOLD:
            matched_gt[best] = True
            pairs.append((int(index), best))
    return pairs


def _distance_to(boundary: np.ndarray) -> np.ndarray:
    """Euclidean distance [h, w] from every pixel to the nearest True pixel of `boundary`."""
    import cv2

    return cv2.distanceTransform((~boundary).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
