import numpy as np
import pytest

from segtrt import SegtrtError
from segtrt.runtime.postprocess import detections_to_instances
from segtrt.runtime.preprocess import Preprocess, letterbox


def test_letterbox_keeps_aspect_and_pads_bottom_right():
    image = np.full((100, 50, 3), 200, np.uint8)
    padded, scale = letterbox(image, (192, 192))
    assert padded.shape == (192, 192, 3)
    assert scale == pytest.approx(1.92)
    assert (padded[:, :96] == 200).all()  # 50 * 1.92 = 96 columns of content
    assert (padded[:, 96:] == 0).all()


def test_letterboxed_detections_map_back_to_the_original_image():
    original = (120, 80)
    mask = np.zeros((120, 80), bool)
    mask[30:90, 20:60] = True
    letterboxed, scale = letterbox(np.repeat(mask[:, :, None].astype(np.uint8), 3, axis=2), (192, 192))
    box = np.array([20.0, 30.0, 60.0, 90.0])
    outputs = {  # one detection as a model with image-frame masks at full input resolution returns it
        "num_detections": np.array([1]), "boxes": (box * scale)[None, None].astype(np.float32),
        "scores": np.ones((1, 1), np.float32), "labels": np.zeros((1, 1), np.int32),
        "masks": letterboxed[None, None, :, :, 0].astype(np.float32),
    }
    (instances,) = detections_to_instances(outputs, "image", (192, 192), scale, original)
    np.testing.assert_allclose(instances["boxes"][0], box, rtol=1e-6)
    back = instances["masks"][0]
    assert back.shape == original
    assert (back & mask).sum() / (back | mask).sum() > 0.97


def test_preprocess_serialises_and_rejects_bad_values():
    config = Preprocess(input_size=(256, 320))
    assert Preprocess.from_dict(config.to_dict()) == config
    with pytest.raises(SegtrtError, match="multiple of 32"):
        Preprocess(input_size=(200, 200))
    with pytest.raises(SegtrtError, match="channel_order"):
        Preprocess(channel_order="RBG")
