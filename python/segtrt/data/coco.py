"""COCO-format instance segmentation data: users' real sets and `segtrt synth` output.

A dataset is an annotation JSON plus an image folder. `--data DIR` means
DIR/annotations.json with DIR/images/; `--data FILE.json` means that file with the
images in an `images` folder beside it, unless `--images` names another folder.

Masks may be polygons or RLE (compressed or uncompressed). Crowd regions
(iscrowd=1) are kept for evaluation, where COCOeval ignores detections on them,
but never become training targets. COCO category ids are mapped to contiguous
0-based labels in increasing id order.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np

from segtrt import SegtrtError


def resolve_paths(data, images=None) -> tuple[Path, Path]:
    """(annotation JSON, image folder) for a dataset given as a directory or a JSON file."""
    data = Path(data)
    if data.is_dir():
        annotation_file = data / "annotations.json"
    elif data.suffix == ".json" or data.exists():
        annotation_file = data
    else:
        raise SegtrtError(f"dataset {data} does not exist; pass a folder with annotations.json or a COCO JSON file")
    image_dir = Path(images) if images is not None else annotation_file.parent / "images"
    if not annotation_file.is_file():
        raise SegtrtError(f"annotation file {annotation_file} does not exist; `segtrt synth --out DIR` writes one")
    if not image_dir.is_dir():
        raise SegtrtError(f"image folder {image_dir} does not exist; pass the folder holding the images with --images")
    return annotation_file, image_dir


class CocoDataset:
    """Map-style dataset (usable by torch's DataLoader) over a COCO instance segmentation set.

    `dataset[i]` is (image RGB uint8 [h, w, 3], target) with target
    {"boxes": float32 [n, 4] x1y1x2y2 from the masks, "labels": int64 [n], "masks": uint8 [n, h, w],
    "image_id": int}. Crowd and empty annotations are left out of targets.
    """

    def __init__(self, data, images=None, skip_empty: bool = False):
        self.annotation_file, self.image_dir = resolve_paths(data, images)
        self.coco = _read_coco_json(self.annotation_file)
        categories = sorted(self.coco["categories"], key=lambda category: category["id"])
        self.category_ids = [category["id"] for category in categories]
        self.class_names = [str(category.get("name", category["id"])) for category in categories]
        self._label_of = {category_id: label for label, category_id in enumerate(self.category_ids)}

        self.images = {image["id"]: image for image in self.coco["images"]}
        self._annotations = {image_id: [] for image_id in self.images}
        for annotation in self.coco["annotations"]:
            if annotation["image_id"] not in self.images:
                raise SegtrtError(
                    f"{self.annotation_file}: annotation {annotation.get('id')} refers to image id "
                    f"{annotation['image_id']}, which is not in 'images'"
                )
            if annotation["category_id"] not in self._label_of:
                raise SegtrtError(
                    f"{self.annotation_file}: annotation {annotation.get('id')} has category id "
                    f"{annotation['category_id']}, which is not in 'categories'"
                )
            self._annotations[annotation["image_id"]].append(annotation)

        self.image_ids = sorted(self.images)
        if skip_empty:
            self.image_ids = [i for i in self.image_ids if any(not a.get("iscrowd", 0) for a in self._annotations[i])]
        if not self.image_ids:
            what = "images with non-crowd annotations" if skip_empty else "images"
            raise SegtrtError(f"{self.annotation_file} has no {what}; the dataset is empty")
        names = [self.images[i]["file_name"] for i in self.image_ids]
        missing = [name for name in names if not (self.image_dir / name).is_file()]
        if missing:
            raise SegtrtError(
                f"{len(missing)} image file(s) listed in {self.annotation_file.name} are missing from "
                f"{self.image_dir}, e.g. {missing[0]}"
            )

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int):
        image_id = self.image_ids[index]
        image = self.load_image(image_id)
        return image, self.load_target(image_id, image.shape[:2])

    def load_image(self, image_id: int) -> np.ndarray:
        """RGB uint8 [h, w, 3] of an image; raises SegtrtError if unreadable or of the wrong size."""
        from segtrt.runtime.sources import read_image

        info = self.images[image_id]
        path = self.image_dir / info["file_name"]
        image = read_image(path)
        if "height" in info and "width" in info and image.shape[:2] != (info["height"], info["width"]):
            raise SegtrtError(
                f"image {path} is {image.shape[0]}x{image.shape[1]} but the annotations say "
                f"{info['height']}x{info['width']}"
            )
        return image

    def iter_images(self, image_ids=None):
        """(image id, RGB image) for the given ids (default all), decoded one at a time."""
        for image_id in self.image_ids if image_ids is None else image_ids:
            yield image_id, self.load_image(image_id)

    def load_target(self, image_id: int, image_hw: tuple[int, int]) -> dict:
        """Training target of one image (crowd and empty instances left out)."""
        height, width = image_hw
        masks, labels = [], []
        for annotation in self._annotations[image_id]:
            if annotation.get("iscrowd", 0):
                continue
            mask = decode_segmentation(annotation["segmentation"], height, width, self.annotation_file)
            if mask.any():
                masks.append(mask)
                labels.append(self._label_of[annotation["category_id"]])
        masks = np.stack(masks) if masks else np.zeros((0, height, width), np.uint8)
        return {
            "boxes": boxes_from_masks(masks),
            "labels": np.array(labels, np.int64),
            "masks": masks,
            "image_id": image_id,
        }

    def coco_api(self):
        """A pycocotools COCO object over the same JSON (for COCOeval), built without console chatter."""
        from pycocotools.coco import COCO

        coco = COCO()
        coco.dataset = self.coco
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
        return coco


def decode_segmentation(segmentation, height: int, width: int, source="annotations") -> np.ndarray:
    """A polygon list, uncompressed RLE or compressed RLE -> uint8 mask [height, width]."""
    from pycocotools import mask as mask_utils

    try:
        if isinstance(segmentation, list):  # polygons [[x1, y1, x2, y2, ...], ...]
            polygons = [p for p in segmentation if len(p) >= 6]
            if not polygons:
                return np.zeros((height, width), np.uint8)
            rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
        elif isinstance(segmentation["counts"], list):  # uncompressed RLE
            rle = mask_utils.frPyObjects(segmentation, *segmentation["size"])
        else:
            rle = segmentation
        mask = mask_utils.decode(rle)
    except (TypeError, KeyError, ValueError) as error:
        raise SegtrtError(f"{source}: cannot decode a segmentation ({error})") from None
    if mask.shape != (height, width):
        raise SegtrtError(f"{source}: an RLE mask is {mask.shape[0]}x{mask.shape[1]}, its image {height}x{width}")
    return mask


def boxes_from_masks(masks: np.ndarray) -> np.ndarray:
    """Tight boxes float32 [n, 4] (x1, y1, x2, y2; x2/y2 exclusive pixel edges) of masks [n, h, w].

    Empty masks give a zero box.
    """
    boxes = np.zeros((len(masks), 4), np.float32)
    for index, mask in enumerate(masks):
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if len(rows):
            boxes[index] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return boxes


def _read_coco_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as file:
            coco = json.load(file)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SegtrtError(f"{path} is not valid JSON ({error})") from None
    required = {
        "images": ("id", "file_name"),
        "annotations": ("image_id", "category_id", "segmentation"),
        "categories": ("id",),
    }
    if not isinstance(coco, dict) or not all(isinstance(coco.get(key), list) for key in required):
        raise SegtrtError(
            f"{path} is not a COCO annotation file: it needs lists 'images', 'annotations' and 'categories'"
        )
    if not coco["categories"]:
        raise SegtrtError(f"{path} has no categories; a COCO instance set needs at least one")
    for key, fields in required.items():
        for entry in coco[key]:
            if not isinstance(entry, dict) or any(field not in entry for field in fields):
                raise SegtrtError(
                    f"{path}: every entry of '{key}' needs the fields {', '.join(fields)}; one lacks them"
                )
    return coco
