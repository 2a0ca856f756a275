import contextlib
import dataclasses

import cv2
import numpy as np
import pytest

from segtrt import SegtrtError
from segtrt.runtime.postprocess import detections_to_instances
from segtrt.runtime.preprocess import (IMAGENET_MEAN, IMAGENET_STD, Preprocess, _fma32, bilinear_resize, letterbox,
                                      to_model_input)


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


def test_keep_ratio_rounds_as_mmcv_and_pads_zero_after_normalisation():
    preprocess = Preprocess(resize="keep_ratio", scale=(1333, 800), fixed_size=False, input_size=(1344, 1344))
    # skimage's chelsea, 300x451: mmcv gives 800x1203, so the x scale (2.66741) differs from the y scale (2.66667)
    assert preprocess.resized_size(300, 451) == (800, 1203)
    assert preprocess.resized_size(451, 300) == (1203, 800)
    image = np.random.default_rng(0).integers(0, 256, (300, 451, 3), dtype=np.uint8)
    batch, (geometry,) = to_model_input([image], preprocess)
    assert batch.shape == (1, 3, 800, 1216)  # padded to a multiple of 32 only
    assert (geometry.scale_y, geometry.scale_x) == (800 / 300, 1203 / 451) and geometry.resized_hw == (800, 1203)
    normalised = (batch[0] - np.array(IMAGENET_MEAN, np.float32)[:, None, None]) / np.array(IMAGENET_STD)[:, None, None]
    assert (normalised[:, :, 1203:] == 0).all()  # mmdetection pads after normalisation
    np.testing.assert_array_equal(batch[0, :, :800, :1203].transpose(1, 2, 0),
                                  cv2.resize(image, (1203, 800), interpolation=cv2.INTER_LINEAR))


@contextlib.contextmanager
def torch_threads(count: int):
    """torch's bilinear resize takes a different kernel on 1 thread for 3 channels (see bilinear_resize):
    the references run on 2, as torch does by default on any machine with 2 cores or more."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _torchvision_transform_tensor(image, scale):
    """torchvision's GeneralizedRCNNTransform of an RGB uint8 image (to_tensor's / 255) -> (its tensor [3, H, W],
    the resized (h, w))."""
    import torch
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    transform = GeneralizedRCNNTransform(min(scale), max(scale), [m / 255 for m in IMAGENET_MEAN],
                                         [s / 255 for s in IMAGENET_STD])
    with torch.no_grad(), torch_threads(2):
        images, _ = transform([torch.from_numpy(image).permute(2, 0, 1).float() / 255])
    return images.tensors[0].numpy(), tuple(images.image_sizes[0])


# (original (h, w), (max_size, min_size)): up- and downscaling, the same size, odd sizes, resized sizes that are
# not multiples of 32, and a full COCO-size image
TORCHVISION_CASES = [((300, 451), (512, 320)), ((480, 270), (512, 320)), ((123, 77), (512, 320)),
                     ((1000, 701), (512, 320)), ((320, 480), (512, 320)), ((50, 61), (1333, 800)),
                     ((427, 640), (1333, 800))]


@pytest.mark.parametrize("shape, scale", TORCHVISION_CASES)
def test_normalise_before_resize_gives_torchvisions_input_tensor_bit_for_bit(shape, scale):
    preprocess = Preprocess(resize="min_max", scale=scale, fixed_size=False, input_size=(1344, 1344),
                            normalise="before_resize")
    image = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
    expected, resized_hw = _torchvision_transform_tensor(image, scale)
    batch, (geometry,) = to_model_input([image], preprocess)
    assert geometry.resized_hw == resized_hw
    np.testing.assert_array_equal(batch[0], expected)  # the padding's 0 included


@pytest.mark.parametrize("shape, scale", TORCHVISION_CASES[:3])
def test_min_max_normalised_in_the_model_is_close_to_torchvisions_transform(shape, scale):
    """Files from before `normalise` (resize first, the graph normalises): torchvision's tensor to float noise."""
    preprocess = Preprocess(resize="min_max", scale=scale, fixed_size=False, input_size=(512, 512))
    image = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
    expected, resized_hw = _torchvision_transform_tensor(image, scale)
    batch, (geometry,) = to_model_input([image], preprocess)
    assert geometry.resized_hw == resized_hw and batch.shape[2:] == expected.shape[1:]
    normalised = (batch[0] - np.array(IMAGENET_MEAN, np.float32)[:, None, None]) / np.array(IMAGENET_STD)[:, None, None]
    np.testing.assert_allclose(normalised, expected, atol=2e-5)


@pytest.mark.parametrize("shape, size", [((77, 131, 3), (224, 381)), ((480, 270, 3), (161, 90)),
                                         ((64, 96, 3), (64, 96)), ((41, 29), (170, 118))])
def test_bilinear_resize_is_torchs_generic_kernel_bit_for_bit(shape, size):
    """Images (3 channels, 0..255 or normalised) and a paste's 2-D mask, up, down and to the same size."""
    import torch

    values = np.random.default_rng(2).standard_normal(shape).astype(np.float32) * 100
    tensor = torch.from_numpy(values)
    tensor = tensor.permute(2, 0, 1)[None] if values.ndim == 3 else tensor[None, None]
    with torch_threads(2):
        expected = torch.nn.functional.interpolate(tensor, size=size, mode="bilinear", align_corners=False)[0]
    expected = expected.permute(1, 2, 0).numpy() if values.ndim == 3 else expected[0].numpy()
    np.testing.assert_array_equal(bilinear_resize(values, size), expected)


def test_bilinear_resize_rounds_each_sum_once_as_an_fma():
    """(1 + 2^-12)^2 = 1 + 2^-11 + 2^-24 is a float32 midpoint; adding +-2^-80 decides its rounding, which a
    float64 sum loses (it rounds to the midpoint, then to even): _fma32 must not."""
    near_one = np.float32(1 + 2**-12)
    for tiny, expected in ((2.0**-80, 1 + 2**-11 + 2**-23), (-(2.0**-80), 1 + 2**-11)):
        got = _fma32(np.array([near_one]), np.array([near_one]), np.array([tiny], np.float32))[0]
        assert got == np.float32(expected)
    assert np.float32(np.float64(near_one) ** 2 + 2.0**-80) == np.float32(1 + 2**-11)  # the double rounding


def test_a_fixed_size_graph_gets_its_size_and_large_images_fit_it():
    preprocess = Preprocess(resize="keep_ratio", scale=(1333, 800), input_size=(800, 1344))
    image = np.zeros((300, 451, 3), np.uint8)
    portrait = np.zeros((451, 300, 3), np.uint8)
    batch, geometries = to_model_input([image, portrait], preprocess)
    assert batch.shape == (2, 3, 800, 1344)
    assert geometries[0].resized_hw == (800, 1203)  # fits: mmdetection's size
    assert geometries[1].resized_hw == (800, 532)  # 1203 rows do not fit 800: scaled down further


def test_old_metadata_reads_as_letterbox_and_new_fields_round_trip():
    old = {"input_size": [256, 256], "resize": "letterbox", "pad_value": 0, "mean": list(IMAGENET_MEAN),
           "std": list(IMAGENET_STD), "channel_order": "RGB"}
    assert Preprocess.from_dict(old) == Preprocess(input_size=(256, 256))
    imported = Preprocess(resize="min_max", scale=(1333, 800), fixed_size=False, input_size=(1344, 1344),
                          paste="torchvision")
    assert Preprocess.from_dict(imported.to_dict()) == imported
    with pytest.raises(SegtrtError, match="needs scale"):
        Preprocess(resize="keep_ratio")
    with pytest.raises(SegtrtError, match="unknown paste rule"):
        Preprocess(paste="detectron2")
    assert Preprocess.from_dict(old).normalise == "in_model"  # the graph normalises, as it always did
    torchvision = dataclasses.replace(imported, normalise="before_resize")
    assert Preprocess.from_dict(torchvision.to_dict()) == torchvision
    assert torchvision.model_normalisation == (None, None)
    assert imported.model_normalisation == (IMAGENET_MEAN, IMAGENET_STD)
    with pytest.raises(SegtrtError, match="unknown normalise step"):
        Preprocess(normalise="after_resize")
    with pytest.raises(SegtrtError, match="goes with resize 'min_max'"):
        Preprocess(normalise="before_resize")
