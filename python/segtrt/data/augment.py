"""Training augmentations that keep image, boxes and masks consistent.

A sample is (image RGB uint8 [h, w, 3], target) with target
{"boxes": float32 [n, 4], "labels": int64 [n], "masks": uint8 [n, h, w]}.
Boxes are always recomputed from the transformed masks, so they can never drift
from them.

The resize is `segtrt.runtime.preprocess.letterbox`, the function deployment uses: at a
jitter of 1 a training image is exactly what the deployed model sees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segtrt.data.coco import boxes_from_masks
from segtrt.runtime.preprocess import letterbox

MIN_INSTANCE_PIXELS = 4  # instances cropped to fewer pixels are dropped


def hflip(image: np.ndarray, target: dict) -> tuple[np.ndarray, dict]:
    """Mirror left-right."""
    width = image.shape[1]
    boxes = target["boxes"].copy()
    boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
    flipped = dict(target, boxes=boxes, masks=np.ascontiguousarray(target["masks"][:, :, ::-1]))
    return np.ascontiguousarray(image[:, ::-1]), flipped


def letterbox_sample(image, target, input_size, jitter: float = 1.0, rng=None) -> tuple[np.ndarray, dict]:
    """Letterbox to `input_size` scaled by `jitter`, then pad or crop to `input_size`.

    jitter < 1 shrinks the content and pads it (bottom/right, as deployment does);
    jitter > 1 enlarges it and takes a random crop (rng) inside the image content.
    Returns image [H, W, 3] and target with masks [n, H, W].
    """
    height, width = input_size
    canvas = (max(1, round(height * jitter)), max(1, round(width * jitter)))
    resized, scale = letterbox(image, canvas)
    masks = _letterbox_masks(target["masks"], canvas)
    content_h = round(image.shape[0] * scale)
    content_w = round(image.shape[1] * scale)
    top = int(rng.integers(0, max(0, content_h - height) + 1)) if rng is not None else 0
    left = int(rng.integers(0, max(0, content_w - width) + 1)) if rng is not None else 0
    resized = _crop_or_pad(resized, top, left, height, width)
    masks = _crop_or_pad(masks.transpose(1, 2, 0), top, left, height, width).transpose(2, 0, 1)
    return resized, _with_masks(target, masks)


def copy_paste(image, target, source_image, source_target, rng) -> tuple[np.ndarray, dict]:
    """Paste a random non-empty subset of the source's instances over the image (same size).

    Pasted pixels replace the image's; existing masks lose the pasted area and
    instances left with no pixels are dropped. Pasted instances come last.
    Both samples are letterboxed to the same input size but jittered independently,
    so a pasted object may cover the other's padding: harmless, and simpler than
    tracking content regions.
    """
    if len(source_target["masks"]) == 0:
        return image, target
    chosen = rng.random(len(source_target["masks"])) < 0.5
    chosen[rng.integers(len(chosen))] = True
    pasted_masks = source_target["masks"][chosen]
    pasted = pasted_masks.any(axis=0)

    out_image = image.copy()
    out_image[pasted] = source_image[pasted]
    kept_masks = target["masks"] * ~pasted
    keep = kept_masks.any(axis=(1, 2))
    masks = np.concatenate([kept_masks[keep], pasted_masks]).astype(np.uint8)
    labels = np.concatenate([target["labels"][keep], source_target["labels"][chosen]])
    return out_image, dict(target, boxes=boxes_from_masks(masks), labels=labels, masks=masks)


@dataclass(frozen=True)
class TrainAugment:
    """The training recipe: flip, scale jitter + letterbox, copy-paste from another sample."""

    input_size: tuple[int, int]
    scale_range: tuple[float, float] = (0.75, 1.25)
    flip_probability: float = 0.5
    copy_paste_probability: float = 0.5

    def sample(self, dataset, index: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        """Augmented (image [H, W, 3], target) for dataset[index]; all randomness from rng."""
        image, target = self._single(dataset, index, rng)
        if rng.random() < self.copy_paste_probability and len(dataset) > 1:
            other = int(rng.integers(len(dataset) - 1))
            other += other >= index  # any sample but this one
            source_image, source_target = self._single(dataset, other, rng)
            image, target = copy_paste(image, target, source_image, source_target, rng)
        return image, target

    def _single(self, dataset, index, rng):
        image, target = dataset[index]
        if rng.random() < self.flip_probability:
            image, target = hflip(image, target)
        return letterbox_sample(image, target, self.input_size, rng.uniform(*self.scale_range), rng)


def _letterbox_masks(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Masks [n, h, w] through the same letterbox as images (bilinear, then >= 0.5) -> [n, H, W]."""
    out = np.zeros((len(masks), *size), np.uint8)
    for start in range(0, len(masks), 3):  # letterbox takes 3-channel images: three masks per call
        group = masks[start : start + 3]
        stacked = np.zeros((*masks.shape[1:], 3), np.uint8)
        stacked[..., : len(group)] = group.transpose(1, 2, 0) * 255
        resized, _ = letterbox(stacked, size)
        out[start : start + len(group)] = (resized[..., : len(group)] >= 128).transpose(2, 0, 1)
    return out


def _crop_or_pad(array: np.ndarray, top: int, left: int, height: int, width: int) -> np.ndarray:
    """Window [top:top+height, left:left+width] of array [h, w, c], zero-padded where it runs past the end."""
    window = array[top : top + height, left : left + width]
    out = np.zeros((height, width, array.shape[2]), array.dtype)
    out[: window.shape[0], : window.shape[1]] = window
    return out


def _with_masks(target: dict, masks: np.ndarray) -> dict:
    """Target with new masks, boxes recomputed from them, tiny instances dropped."""
    keep = masks.sum(axis=(1, 2)) >= MIN_INSTANCE_PIXELS
    masks = np.ascontiguousarray(masks[keep])
    return dict(target, boxes=boxes_from_masks(masks), labels=target["labels"][keep], masks=masks)
