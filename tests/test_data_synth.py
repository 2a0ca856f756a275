import json

import numpy as np
from pycocotools import mask as mask_utils

from segtrt.data.synth import CLASS_NAMES, render_image, write_dataset


def test_same_seed_gives_byte_identical_annotations(tmp_path):
    first = write_dataset(tmp_path / "a", 6, seed=3, size=(96, 128), progress=False)
    second = write_dataset(tmp_path / "b", 6, seed=3, size=(96, 128), progress=False)
    other = write_dataset(tmp_path / "c", 6, seed=4, size=(96, 128), progress=False)
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other.read_bytes()
    assert (tmp_path / "a/images/000005.png").read_bytes() == (tmp_path / "b/images/000005.png").read_bytes()


def test_annotations_are_valid_coco_with_visible_masks(tmp_path):
    path = write_dataset(tmp_path, 4, seed=0, size=(96, 128), progress=False)
    coco = json.loads(path.read_text())
    assert [c["name"] for c in coco["categories"]] == list(CLASS_NAMES)
    assert len(coco["images"]) == 4 and coco["images"][0]["height"] == 96 and coco["images"][0]["width"] == 128
    masks_by_image = {}
    for annotation in coco["annotations"]:
        mask = mask_utils.decode(annotation["segmentation"])
        assert mask.shape == (96, 128)
        assert annotation["area"] == mask.sum() > 0
        x, y, w, h = annotation["bbox"]
        rows, cols = np.nonzero(mask)
        assert (x, y, x + w, y + h) == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
        masks_by_image.setdefault(annotation["image_id"], []).append(mask)
    for masks in masks_by_image.values():  # visible masks of one image never overlap
        assert np.stack(masks).sum(axis=0).max() == 1


def test_sizes_cover_small_medium_and_large_objects():
    areas, classes = [], set()
    for index in range(60):
        _, masks, labels = render_image(np.random.default_rng([7, index]), (192, 192))
        areas += list(masks.reshape(len(masks), -1).sum(axis=1))
        classes |= set(labels.tolist())
    areas = np.array(areas)
    assert (areas < 32**2).sum() >= 20
    assert ((areas >= 32**2) & (areas < 96**2)).sum() >= 20
    assert (areas >= 96**2).sum() >= 5
    assert classes == set(range(len(CLASS_NAMES)))
