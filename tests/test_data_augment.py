import numpy as np
import pytest

from segtrt.data.augment import TrainAugment, copy_paste, hflip, letterbox_sample
from segtrt.data.coco import boxes_from_masks


def _sample(rng, size=(60, 90), count=4):
    image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    masks = np.zeros((count, *size), np.uint8)
    for index in range(count):
        y, x = rng.integers(0, size[0] - 20), rng.integers(0, size[1] - 20)
        h, w = rng.integers(5, 20, 2)
        masks[index, y : y + h, x : x + w] = 1
    target = {"boxes": boxes_from_masks(masks), "labels": np.arange(count, dtype=np.int64), "masks": masks}
    return image, target


def test_hflip_twice_is_identity_and_boxes_follow_masks():
    image, target = _sample(np.random.default_rng(0))
    flipped_image, flipped = hflip(image, target)
    np.testing.assert_array_equal(flipped["boxes"], boxes_from_masks(flipped["masks"]))
    np.testing.assert_array_equal(flipped_image[:, 0], image[:, -1])
    back_image, back = hflip(flipped_image, flipped)
    np.testing.assert_array_equal(back_image, image)
    for key in ("boxes", "labels", "masks"):
        np.testing.assert_array_equal(back[key], target[key])


def test_letterbox_without_jitter_scales_boxes_like_deployment():
    image, target = _sample(np.random.default_rng(1), size=(60, 90))
    out_image, out = letterbox_sample(image, target, (128, 128))
    scale = 128 / 90
    assert out_image.shape == (128, 128, 3) and out["masks"].shape == (4, 128, 128)
    np.testing.assert_allclose(out["boxes"], target["boxes"] * scale, atol=1.5)
    assert (out_image[round(60 * scale) + 1 :] == 0).all()  # padding at the bottom, as deployment
    areas = out["masks"].reshape(4, -1).sum(1) / target["masks"].reshape(4, -1).sum(1)
    np.testing.assert_allclose(areas, scale**2, rtol=0.25)


@pytest.mark.parametrize("jitter", [0.5, 1.7])
def test_jittered_letterbox_keeps_image_and_masks_aligned(jitter):
    rng = np.random.default_rng(2)
    size = (64, 96)
    # Image content equals the sum of its masks, so any misalignment shows up.
    _, target = _sample(rng, size=size, count=3)
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    image = np.einsum("nhw,nc->hwc", target["masks"], colours).clip(0, 255).astype(np.uint8)
    out_image, out = letterbox_sample(image, target, (64, 64), jitter, np.random.default_rng(3))
    assert out_image.shape == (64, 64, 3)
    for mask, label in zip(out["masks"], out["labels"]):
        channel = out_image[..., label]
        inside = channel[mask.astype(bool)]
        assert (inside >= 100).mean() > 0.9
    np.testing.assert_array_equal(out["boxes"], boxes_from_masks(out["masks"]))


def test_copy_paste_occludes_exactly_and_copies_source_pixels():
    rng = np.random.default_rng(4)
    image, target = _sample(rng, size=(50, 50), count=5)
    source_image, source = _sample(rng, size=(50, 50), count=5)
    source["labels"] = source["labels"] + 10  # tells pasted instances apart
    out_image, out = copy_paste(image, target, source_image, source, np.random.default_rng(5))

    is_pasted = out["labels"] >= 10
    assert is_pasted.any() and is_pasted[-is_pasted.sum() :].all()  # pasted instances come last
    union = out["masks"][is_pasted].any(axis=0)
    np.testing.assert_array_equal(out_image[union], source_image[union])
    np.testing.assert_array_equal(out_image[~union], image[~union])

    survivors = [m for m in target["masks"] if (m & ~union).any()]
    kept = out["masks"][: len(survivors)]
    for before, after in zip(survivors, kept):
        overlap = int((before.astype(bool) & union).sum())
        assert int(after.sum()) == int(before.sum()) - overlap
        assert not (after.astype(bool) & union).any()
    np.testing.assert_array_equal(out["boxes"], boxes_from_masks(out["masks"]))


def test_copy_paste_drops_fully_occluded_instances():
    image = np.zeros((20, 20, 3), np.uint8)
    small = np.zeros((1, 20, 20), np.uint8)
    small[0, 5:8, 5:8] = 1
    big = np.zeros((1, 20, 20), np.uint8)
    big[0, 2:15, 2:15] = 1
    target = {"boxes": boxes_from_masks(small), "labels": np.array([0]), "masks": small}
    source = {"boxes": boxes_from_masks(big), "labels": np.array([3]), "masks": big}
    _, out = copy_paste(image, target, np.full_like(image, 9), source, np.random.default_rng(0))
    assert out["labels"].tolist() == [3]
    np.testing.assert_array_equal(out["masks"], big)


def test_copy_paste_onto_an_image_without_instances():
    # A jittered crop can leave a training image with no instance; pasting onto it must still work.
    image, _ = _sample(np.random.default_rng(3))
    source_image, source = _sample(np.random.default_rng(4))
    empty = {"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64),
             "masks": np.zeros((0, *image.shape[:2]), np.uint8)}
    _, out = copy_paste(image, empty, source_image, source, np.random.default_rng(0))
    assert 1 <= len(out["labels"]) <= len(source["labels"])
    np.testing.assert_array_equal(out["boxes"], boxes_from_masks(out["masks"]))


def test_train_augment_is_deterministic_per_rng():
    samples = [_sample(np.random.default_rng(i)) for i in range(3)]
    augment = TrainAugment((64, 64), copy_paste_probability=1.0)
    first = augment.sample(samples, 0, np.random.default_rng(9))
    second = augment.sample(samples, 0, np.random.default_rng(9))
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1]["masks"], second[1]["masks"])
    assert first[0].shape == (64, 64, 3) and first[1]["masks"].shape[1:] == (64, 64)
