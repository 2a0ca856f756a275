import numpy as np
import pytest

from segtrt import SegtrtError
from segtrt.preprocess import Preprocess, boxes_to_original, letterbox, masks_to_original


def test_letterbox_keeps_aspect_and_pads_bottom_right():
    image = np.full((100, 50, 3), 200, np.uint8)
    padded, scale = letterbox(image, (192, 192))
    assert padded.shape == (192, 192, 3)
    assert scale == pytest.approx(1.92)
    assert (padded[:, :96] == 200).all()  # 50 * 1.92 = 96 columns of content
    assert (padded[:, 96:] == 0).all()


def test_boxes_and_masks_round_trip_to_original():
    original = (120, 80)
    scale = min(192 / 120, 192 / 80)
    boxes = np.array([[10.0, 20.0, 50.0, 100.0]])
    np.testing.assert_allclose(boxes_to_original(boxes * scale, scale, original), boxes)

    mask = np.zeros((1, 120, 80), bool)
    mask[0, 30:90, 20:60] = True
    letterboxed, _ = letterbox(np.repeat(mask[0, :, :, None].astype(np.uint8), 3, axis=2), (192, 192))
    back = masks_to_original(letterboxed[None, :, :, 0], scale, original)
    iou = (back & mask).sum() / (back | mask).sum()
    assert iou > 0.97


def test_preprocess_serialises_and_rejects_bad_values():
    config = Preprocess(input_size=(256, 320))
    assert Preprocess.from_dict(config.to_dict()) == config
    with pytest.raises(SegtrtError, match="multiple of 32"):
        Preprocess(input_size=(200, 200))
    with pytest.raises(SegtrtError, match="channel_order"):
        Preprocess(channel_order="RBG")
