"""Pasting: each model's mask goes back to the original image by the inverse of the
operation that made its training target, so a ground-truth mask survives the round trip."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import paste_masks_in_image
from torchvision.ops import roi_align

from segtrt.models.solo_targets import resize_masks
from segtrt.runtime.postprocess import paste_box_masks, paste_image_masks, paste_mmdet_masks, paste_torchvision_masks
from segtrt.runtime.preprocess import ImageGeometry

# (centre x, centre y, radius) of discs in original pixels: small, medium and large, off the pixel grid
DISCS = [(20.3, 30.7, 4.2), (60.6, 22.1, 6.5), (35.5, 70.25, 11.3), (70.1, 65.9, 24.8)]
HEIGHT = WIDTH = 100


def _discs(scale: float) -> torch.Tensor:
    """The DISCS rendered at `scale` (pixel centres at i + 0.5, as a letterbox resize maps them): [n, H, W]."""
    size = round(HEIGHT * scale)
    centres = torch.arange(size, dtype=torch.float32) + 0.5
    rows, columns = centres[:, None], centres[None, :]
    return torch.stack([((columns - x * scale) ** 2 + (rows - y * scale) ** 2 <= (r * scale) ** 2).float()
                        for x, y, r in DISCS])


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a & b).sum(axis=(1, 2)) / (a | b).sum(axis=(1, 2))


@pytest.mark.parametrize("scale", [1.0, 2.0, 0.8])
def test_box_masks_invert_the_roi_align_that_pooled_them(scale):
    truth = _discs(1.0).numpy() > 0
    boxes = torch.tensor([[x - r, y - r, x + r, y + r] for x, y, r in DISCS])
    # the training target: the mask at input size pooled on the input-pixel box, as roi_heads does
    pooled = roi_align(_discs(scale)[:, None], list((boxes * scale)[:, None]), (28, 28), 1.0)[:, 0]
    pasted = paste_box_masks(pooled.numpy(), boxes.numpy(), scale, (HEIGHT, WIDTH))
    assert _iou(pasted, truth).min() >= 0.88
    if scale == 1.0:  # torchvision's paste rounds its box to whole pixels and loses the small disc
        torchvision_rule = paste_masks_in_image(pooled[:, None], boxes, (HEIGHT, WIDTH))[:, 0].numpy() >= 0.5
        assert _iou(torchvision_rule, truth)[0] < _iou(pasted, truth)[0] - 0.1
    if scale == 2.0:  # the letterbox's half-pixel shift matters
        unshifted = paste_box_masks(pooled.numpy(), boxes.numpy(), 1.0, (HEIGHT, WIDTH))
        assert _iou(unshifted, truth).mean() < _iou(pasted, truth).mean() - 0.03


def test_box_masks_paste_only_near_their_box_and_skip_empty_boxes():
    masks = np.ones((2, 28, 28), np.float32)
    boxes = np.array([[10.2, 20.2, 30.6, 50.6], [40.0, 40.0, 40.0, 60.0]], np.float32)
    pasted = paste_box_masks(masks, boxes, 1.0, (HEIGHT, WIDTH))
    rows, columns = np.nonzero(pasted[0])
    assert rows.min() >= 19 and rows.max() <= 51 and columns.min() >= 9 and columns.max() <= 31
    assert pasted[0, 22:49, 12:29].all()
    assert not pasted[1].any()


def test_soft_stride4_targets_survive_the_image_paste_better_than_rounded_ones():
    truth = _discs(1.0)
    boxes = np.array([[x - r, y - r, x + r, y + r] for x, y, r in DISCS], np.float32)
    soft = resize_masks(truth, (HEIGHT // 4, WIDTH // 4))
    rounded = (F.interpolate(truth[:, None], size=(HEIGHT // 4, WIDTH // 4), mode="bilinear")[:, 0] >= 0.5).float()
    assert ((soft > 0) & (soft < 1)).any()
    paste = lambda masks: paste_image_masks(masks.numpy(), boxes, 1.0, (HEIGHT, WIDTH), (HEIGHT, WIDTH))
    soft_iou, rounded_iou = _iou(paste(soft), truth.numpy() > 0), _iou(paste(rounded), truth.numpy() > 0)
    assert soft_iou.min() >= 0.75
    assert soft_iou.mean() > rounded_iou.mean() + 0.02


def test_image_masks_paste_like_interpolate_inside_the_box():
    masks = torch.rand(3, 32, 48, generator=torch.Generator().manual_seed(1))
    full = F.interpolate(masks[None], size=(128, 192), mode="bilinear", align_corners=False)[0] > 0.5
    boxes = np.array([[0, 0, 192, 128], [10.0, 20.0, 60.0, 100.0], [100, 5, 191, 60]], np.float32)
    actual = paste_image_masks(masks.numpy(), boxes, 1.0, (128, 192), (128, 192))
    for mask, box, expected in zip(actual, boxes.astype(int), full.numpy()):
        inside = np.zeros_like(expected)
        inside[box[1] : box[3], box[0] : box[2]] = True
        np.testing.assert_array_equal(mask[inside], expected[inside])
        margin = np.zeros_like(expected)
        margin[max(box[1] - 1, 0) : box[3] + 1, max(box[0] - 1, 0) : box[2] + 1] = True
        assert not mask[~margin].any()  # only the box (and its 1-pixel margin) is computed


def test_torchvision_paste_rule_is_torchvisions():
    masks = torch.rand(4, 28, 28, generator=torch.Generator().manual_seed(2))
    boxes = torch.tensor([[10.3, 20.7, 60.2, 45.1], [-3.0, 5.5, 20.0, 99.9], [70.5, 70.5, 71.2, 71.9],
                          [0.0, 0.0, 100.0, 100.0]])
    expected = paste_masks_in_image(masks[:, None], boxes, (HEIGHT, WIDTH))[:, 0].numpy()
    got = paste_torchvision_masks(masks.numpy(), boxes.numpy(), (HEIGHT, WIDTH))
    settled = np.abs(expected - 0.5) > 1e-5
    np.testing.assert_array_equal(got[settled], (expected > 0.5)[settled])
    assert settled.mean() > 0.999


@pytest.mark.parametrize("original", [(300, 451), (451, 300), (120, 80)])
def test_mmdet_paste_rule_is_mmdetections_two_step_resize(original):
    """mmdetection (SOLOv2Head._predict_by_feat_single): up to the padded input, crop, to the original, > 0.5."""
    input_hw, resized = (320, 448), None
    scale = min(448 / max(original), 320 / min(original))
    resized = (int(original[0] * scale + 0.5), int(original[1] * scale + 0.5))
    if resized[0] > input_hw[0]:
        input_hw = input_hw[::-1]
    logits = F.interpolate(torch.randn(3, 1, 10, 14, generator=torch.Generator().manual_seed(3)) * 4,
                           size=(input_hw[0] // 4, input_hw[1] // 4), mode="bilinear")[:, 0]
    masks = logits.sigmoid()
    upsampled = F.interpolate(masks[None], size=input_hw, mode="bilinear", align_corners=False)[:, :, :resized[0], :resized[1]]
    expected = F.interpolate(upsampled, size=original, mode="bilinear", align_corners=False)[0].numpy()
    boxes = []
    for mask in upsampled[0] > 0.5:  # the model's boxes: of the upsampled masks, in input pixels
        rows, columns = np.nonzero(mask.numpy())
        boxes.append([columns.min(), rows.min(), columns.max() + 1, rows.max() + 1])
    geometry = ImageGeometry(resized[0] / original[0], resized[1] / original[1], resized, input_hw)
    in_original = np.array(boxes, np.float64) / ([geometry.scale_x, geometry.scale_y] * 2)
    got = paste_mmdet_masks(masks.numpy(), in_original, geometry, original)
    settled = np.abs(expected - 0.5) > 1e-5
    np.testing.assert_array_equal(got[settled], (expected > 0.5)[settled])
    assert (expected > 0.5).sum() > 1000
