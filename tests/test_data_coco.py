import json

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from segtrt import SegtrtError
from segtrt.data.coco import CocoDataset, boxes_from_masks


def _write_set(root, annotations, categories=None, size=(40, 60)):
    (root / "images").mkdir(parents=True, exist_ok=True)
    image = np.zeros((*size, 3), np.uint8)
    image[..., 0] = 200  # red in RGB
    cv2.imwrite(str(root / "images" / "a.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    coco = {
        "images": [{"id": 5, "file_name": "a.png", "height": size[0], "width": size[1]}],
        "annotations": annotations,
        "categories": categories or [{"id": 3, "name": "cat"}, {"id": 9, "name": "dog"}],
    }
    (root / "annotations.json").write_text(json.dumps(coco))
    return root


def _square(y0, y1, x0, x1, size=(40, 60)):
    mask = np.zeros(size, np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def test_polygon_rle_and_crowd_annotations(tmp_path):
    compressed = mask_utils.encode(np.asfortranarray(_square(20, 30, 40, 55)))
    compressed["counts"] = compressed["counts"].decode()
    uncompressed_mask = _square(0, 5, 0, 5)
    # Uncompressed RLE: column-major run lengths starting with zeros.
    flat = uncompressed_mask.flatten(order="F")
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    counts = np.diff(np.concatenate([[0], changes])).tolist()
    annotations = [
        {"id": 1, "image_id": 5, "category_id": 9, "segmentation": [[10, 10, 20, 10, 20, 20, 10, 20]], "iscrowd": 0},
        {"id": 2, "image_id": 5, "category_id": 3, "segmentation": compressed, "iscrowd": 0},
        {"id": 3, "image_id": 5, "category_id": 3, "segmentation": {"size": [40, 60], "counts": counts}, "iscrowd": 0},
        {"id": 4, "image_id": 5, "category_id": 9, "segmentation": compressed, "iscrowd": 1},
    ]
    dataset = CocoDataset(_write_set(tmp_path, annotations))
    assert dataset.class_names == ["cat", "dog"]
    image, target = dataset[0]
    assert image.shape == (40, 60, 3) and image[0, 0].tolist() == [200, 0, 0]
    assert target["labels"].tolist() == [1, 0, 0]  # crowd left out; id 3 -> 0, id 9 -> 1
    np.testing.assert_array_equal(target["masks"][1], _square(20, 30, 40, 55))
    np.testing.assert_array_equal(target["masks"][2], uncompressed_mask)
    assert target["masks"][0][10:20, 10:20].all() and target["masks"][0].sum() < 13 * 13
    np.testing.assert_array_equal(target["boxes"][1], [40, 20, 55, 30])
    assert target["masks"].dtype == np.uint8 and target["boxes"].dtype == np.float32


def test_boxes_from_masks_are_tight_and_zero_when_empty():
    masks = np.stack([_square(3, 7, 10, 12), np.zeros((40, 60), np.uint8)])
    np.testing.assert_array_equal(boxes_from_masks(masks), [[10, 3, 12, 7], [0, 0, 0, 0]])


def test_bad_inputs_raise_one_clear_error(tmp_path):
    with pytest.raises(SegtrtError, match="does not exist"):
        CocoDataset(tmp_path / "nowhere")
    root = _write_set(tmp_path / "ok", [])
    with pytest.raises(SegtrtError, match="empty"):
        CocoDataset(root, skip_empty=True)
    assert len(CocoDataset(root)) == 1  # an image without instances is fine for evaluation

    (root / "annotations.json").write_text("{not json")
    with pytest.raises(SegtrtError, match="not valid JSON"):
        CocoDataset(root)
    (root / "annotations.json").write_text(json.dumps({"images": []}))
    with pytest.raises(SegtrtError, match="not a COCO annotation file"):
        CocoDataset(root)

    root = _write_set(tmp_path / "missing", [])
    (root / "images" / "a.png").unlink()
    with pytest.raises(SegtrtError, match="missing"):
        CocoDataset(root)

    root = _write_set(tmp_path / "corrupt", [])
    (root / "images" / "a.png").write_bytes(b"not a png")
    with pytest.raises(SegtrtError, match="corrupt"):
        CocoDataset(root)[0]

    bad_category = [{"id": 1, "image_id": 5, "category_id": 77, "segmentation": [], "iscrowd": 0}]
    with pytest.raises(SegtrtError, match="category id 77"):
        CocoDataset(_write_set(tmp_path / "cat", bad_category))
