"""Pre-processing shared by training, evaluation, export and the runtime.

Three resize modes, recorded in every checkpoint and ONNX file and read back by every stage:

- "letterbox" (segtrt's own models): scale to fit `input_size` keeping the aspect
  ratio (round-half-even sizes), pad bottom/right with `pad_value` (0..255, before
  normalisation) to exactly `input_size`.
- "keep_ratio" (mmdetection's test-time Resize): scale to fit `scale` = (long, short)
  edge limits with mmcv's `int(x * s + 0.5)` rounding, OpenCV INTER_LINEAR on the
  uint8 image, pad bottom/right to a multiple of `size_divisor` with 0 *after*
  normalisation (the mean before it).
- "min_max" (torchvision's GeneralizedRCNNTransform): scale s = min(min_size / short
  side, max_size / long side) with `scale` = (max_size, min_size), sizes floor(x * s)
  (so 77 * (320 / 77) gives 319), bilinear (half-pixel, no antialias) on the float image, batch
  padding to a multiple of `size_divisor` with 0 after normalisation.

With `fixed_size` (always for letterbox) every batch is padded to `input_size`, the
size a fixed-shape graph takes; a keep_ratio/min_max image larger than that is
scaled down further to fit, which then differs from the source framework. Without
it, a batch is padded to the smallest multiple of `size_divisor` holding its images,
as the frameworks do, and `input_size` is the largest such size.

`paste` names the rule that brings masks back to the original image (see
segtrt.runtime.postprocess): segtrt's own, or the source framework's.

`normalise` says where mean/std normalisation happens (NORMALISE_STEPS):
- "in_model" (segtrt's and mmdetection's order, and every file written before the field
  existed): inside the model, after resize and padding, so it travels with the ONNX graph;
  the model input is in 0..255.
- "before_resize" (torchvision's GeneralizedRCNNTransform, min_max only): here, on the
  float32 image in torchvision's arithmetic, (image / 255 - mean / 255) / (std / 255) with
  each number rounded to float32, then resized and padded with 0; the model takes this
  normalised input as it is. Normalising first is what makes the input torchvision's own
  tensor, bit for bit: resizing first rounds differently (up to 2 ulp), which the perturbed
  random-weight Mask R-CNN of tests/test_import.py turned into box differences of 2.3e-3 px.
`mean` and `std` are in 0..255 either way, as the ONNX metadata records them.

NumPy and OpenCV only: the runtime imports this without torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from segtrt import SegtrtError

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
SIZE_DIVISOR = 32  # torchvision's and mmdetection's batch padding: 800x1344 is COCO's usual input
RESIZE_MODES = ("letterbox", "keep_ratio", "min_max")
PASTE_RULES = ("segtrt", "mmdet", "torchvision")
NORMALISE_STEPS = ("in_model", "before_resize")


@dataclass(frozen=True)
class Preprocess:
    """How a raw RGB uint8 image becomes the model input [1, 3, H, W] float32 (0..255, or normalised: see
    `normalise`)."""

    input_size: tuple[int, int] = (192, 192)  # (H, W): the fixed input, or the largest one without fixed_size
    resize: str = "letterbox"  # one of RESIZE_MODES
    pad_value: int = 0  # letterbox only; the other modes pad with 0 after normalisation
    mean: tuple[float, float, float] = field(default=IMAGENET_MEAN)
    std: tuple[float, float, float] = field(default=IMAGENET_STD)
    channel_order: str = "RGB"
    scale: tuple[int, int] | None = None  # keep_ratio / min_max: (long, short) edge limits, e.g. (1333, 800)
    size_divisor: int = SIZE_DIVISOR  # keep_ratio / min_max padding
    fixed_size: bool = True  # pad every batch to input_size (a fixed-shape graph)
    paste: str = "segtrt"  # one of PASTE_RULES
    normalise: str = "in_model"  # one of NORMALISE_STEPS: where (x - mean) / std happens

    def __post_init__(self):
        if self.resize not in RESIZE_MODES:
            raise SegtrtError(f"unknown resize mode {self.resize!r}; segtrt supports {', '.join(RESIZE_MODES)}")
        if self.paste not in PASTE_RULES:
            raise SegtrtError(f"unknown paste rule {self.paste!r}; segtrt supports {', '.join(PASTE_RULES)}")
        if self.normalise not in NORMALISE_STEPS:
            raise SegtrtError(
                f"unknown normalise step {self.normalise!r}; segtrt supports {', '.join(NORMALISE_STEPS)}")
        if self.normalise == "before_resize" and self.resize != "min_max":
            raise SegtrtError(f"normalise 'before_resize' is torchvision's order and goes with resize 'min_max', "
                              f"not {self.resize!r}")
        if self.channel_order not in ("RGB", "BGR"):
            raise SegtrtError(f"channel_order must be 'RGB' or 'BGR', not {self.channel_order!r}")
        if self.resize == "letterbox":
            if self.scale is not None or not self.fixed_size:
                raise SegtrtError("letterbox pads to input_size: it takes no scale and needs fixed_size")
        elif self.scale is None or len(self.scale) != 2 or min(self.scale) < 1:
            raise SegtrtError(f"resize {self.resize!r} needs scale = (long, short) edge limits, got {self.scale}")
        if self.size_divisor < 1 or SIZE_DIVISOR % self.size_divisor and self.size_divisor % SIZE_DIVISOR:
            raise SegtrtError(f"size_divisor must divide or be a multiple of {SIZE_DIVISOR}, got {self.size_divisor}")
        height, width = self.input_size
        if height % SIZE_DIVISOR or width % SIZE_DIVISOR:
            raise SegtrtError(
                f"input size {height}x{width} must be a multiple of {SIZE_DIVISOR} (the stride of P5, the "
                "coarsest level RoIs and masks come from), e.g. 800x1344 or 192x192"
            )

    @property
    def model_normalisation(self) -> tuple:
        """(mean, std) the model normalises its input with, or (None, None): the input comes normalised."""
        return (self.mean, self.std) if self.normalise == "in_model" else (None, None)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Preprocess":
        values = dict(values)
        for key in ("input_size", "mean", "std", "scale"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """The (h, w) an image of height x width is resized to, before padding (and before any fit to
        a fixed input_size: see fit_size)."""
        if self.resize == "letterbox":
            return _fit(height, width, self.input_size)
        long_edge, short_edge = max(self.scale), min(self.scale)
        if self.resize == "keep_ratio":  # mmcv.rescale_size: Python floats, int(x * s + 0.5)
            factor = min(long_edge / max(height, width), short_edge / min(height, width))
            return int(height * factor + 0.5), int(width * factor + 0.5)
        # torchvision's _resize_image_and_masks (eager): a Python float factor, F.interpolate's floor(x * s)
        factor = min(short_edge / min(height, width), long_edge / max(height, width))
        return math.floor(height * factor), math.floor(width * factor)

    def fit_size(self, height: int, width: int) -> tuple[int, int]:
        """resized_size, scaled down further when a fixed input_size cannot hold it."""
        resized = self.resized_size(height, width)
        if self.resize == "letterbox" or not self.fixed_size:
            return resized
        if resized[0] <= self.input_size[0] and resized[1] <= self.input_size[1]:
            return resized
        return _fit(height, width, self.input_size)

    def padded_size(self, sizes) -> tuple[int, int]:
        """The batch input (H, W) holding resized images of the given (h, w) sizes."""
        if self.fixed_size:
            return tuple(self.input_size)
        divisor = self.size_divisor
        return tuple(int(math.ceil(max(size[axis] for size in sizes) / divisor) * divisor) for axis in (0, 1))


@dataclass(frozen=True)
class ImageGeometry:
    """Where an original image sits in the model input, for pasting results back.

    scale_y, scale_x: input pixels per original pixel along each axis (the resized size is rounded
    per axis, so they differ slightly); resized_hw: the image's (h, w) in the input, before padding;
    input_hw: the padded input (H, W) of its batch.
    """

    scale_y: float
    scale_x: float
    resized_hw: tuple[int, int]
    input_hw: tuple[int, int]

    @classmethod
    def uniform(cls, scale: float, original_hw, input_hw) -> "ImageGeometry":
        """The geometry of a letterbox scale alone (one scale for both axes, as older callers give)."""
        resized = tuple(max(1, round(size * scale)) for size in original_hw)
        return cls(float(scale), float(scale), resized, tuple(input_hw))


def _fit(height: int, width: int, box: tuple[int, int]) -> tuple[int, int]:
    scale = min(box[0] / height, box[1] / width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def letterbox(image: np.ndarray, input_size: tuple[int, int], pad_value: int = 0) -> tuple[np.ndarray, float]:
    """Scale an image [h, w, 3] to fit input_size (H, W) and pad bottom/right.

    Returns the padded image [H, W, 3] (same dtype) and the scale applied, so that
    input-space coordinates divided by the scale give original-image coordinates.
    """
    import cv2

    _check_image(image)
    height, width = input_size
    scale = min(height / image.shape[0], width / image.shape[1])
    new_h, new_w = _fit(image.shape[0], image.shape[1], input_size)
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    padded = np.full((height, width, 3), pad_value, dtype=image.dtype)
    padded[:new_h, :new_w] = resized
    return padded, scale


def resize_image(image: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """An RGB uint8 image [h, w, 3] resized to size (h', w') as `mode` resizes -> float32 [h', w', 3] 0..255."""
    import cv2

    _check_image(image)
    if mode == "min_max":  # torch's bilinear on the float image, not OpenCV's fixed-point uint8 path
        return bilinear_resize(image.astype(np.float32), size)
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR).astype(np.float32)


def bilinear_resize(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """values [h, w, ...] float32 -> [h', w', ...], bit for bit as torch's F.interpolate(mode="bilinear",
    align_corners=False, antialias=False) computes it in its generic CPU kernel on x86 with FMA (AVX2,
    AVX-512): half-pixel centres, float32 positions and weights, edges clamped, each input row interpolated
    as fma(v0, w0, v1 * w1) and the two rows combined the same way. (torch takes its vectorised
    channels-last kernel instead for an output with h' + w' <= 128, or for 3 channels on 1 thread: that
    one rounds differently, by an ulp here and there.)"""
    def axis(out_length, in_length):
        ratio = np.float32(in_length) / np.float32(out_length)
        centres = np.arange(out_length, dtype=np.float32) + np.float32(0.5)
        position = np.maximum(_fma32(ratio, centres, np.float32(-0.5)), np.float32(0))
        lower = np.minimum(position.astype(np.int64), in_length - 1)
        upper = np.minimum(lower + 1, in_length - 1)
        weight = (position - lower).astype(np.float32)
        return lower, upper, np.float32(1) - weight, weight

    y0, y1, wy0, wy1 = axis(size[0], values.shape[0])
    x0, x1, wx0, wx1 = axis(size[1], values.shape[1])
    extra = (None,) * (values.ndim - 2)
    wx0, wx1 = (w[(None, slice(None), *extra)] for w in (wx0, wx1))
    wy0, wy1 = (w[(slice(None), None, *extra)] for w in (wy0, wy1))
    rows, where = np.unique(np.concatenate((y0, y1)), return_inverse=True)  # each input row interpolated once
    picked = values[rows]
    across = _fma32(picked[:, x0], wx0, picked[:, x1] * wx1)
    return _fma32(across[where[: size[0]]], wy0, across[where[size[0]:]] * wy1)


def _fma32(a, b, c) -> np.ndarray:
    """a * b + c for float32 a, b, c (arrays that broadcast), rounded once to float32 as an FMA instruction
    rounds it.

    The float64 product of two float32 numbers is exact, so only the float64 sum rounds before float32 does.
    Two roundings differ from one only where the float64 sum is inexact and lands on a float32 midpoint (or
    in float32's subnormal range): those few are redone exactly, as the sum's round-to-odd value (TwoSum gives
    its exact error), whose float32 rounding is the correctly rounded result (Boldo and Melquiond, "Emulation
    of FMA and correctly rounded sums", IEEE Trans. Computers 2008).
    """
    product = np.multiply(a, b, dtype=np.float64)
    total = product + c
    bits = total.view(np.int64)
    suspect = (bits & 0x1FFFFFFF) == 0x10000000  # float32's 23 fraction bits, then a 1, then 28 zeros
    suspect |= (bits & 0x7FF0000000000000) < (1023 - 126) << 52
    if suspect.any():
        product, addend, rounded = product[suspect], np.broadcast_to(c, total.shape)[suspect], total[suspect]
        virtual = rounded - product
        error = (product - (rounded - virtual)) + (addend - virtual)
        even = (rounded.view(np.int64) & 1) == 0
        total[suspect] = np.where(even & (error != 0), np.nextafter(rounded, np.copysign(np.inf, error)), rounded)
    return total.astype(np.float32)


def normalise_before_resize(image: np.ndarray, preprocess: Preprocess) -> np.ndarray:
    """An RGB uint8 image [h, w, 3] -> float32 (image / 255 - mean / 255) / (std / 255), op for op as
    torchvision's GeneralizedRCNNTransform.normalize computes it on a to_tensor image (each number float32;
    mean / 255 of ImageNet's numbers gives torchvision's 0.485, ...). Channels stay RGB: to_model_input
    reorders them afterwards, so the numbers are taken in RGB order."""
    mean, std = ((np.asarray(numbers, np.float64) / 255).astype(np.float32)
                 for numbers in (preprocess.mean, preprocess.std))
    if preprocess.channel_order == "BGR":
        mean, std = mean[::-1], std[::-1]
    return (image.astype(np.float32) / np.float32(255) - mean) / std


def to_model_input(images: list[np.ndarray], preprocess: Preprocess) -> tuple[np.ndarray, list[ImageGeometry]]:
    """RGB uint8 images [h, w, 3] -> the model input [B, 3, H, W] float32 and each image's ImageGeometry.

    The one place an image becomes a network input, for every backend.
    """
    for image in images:
        _check_image(image)
    sizes = [preprocess.fit_size(*image.shape[:2]) for image in images]
    input_hw = preprocess.padded_size(sizes)
    normalised_here = preprocess.normalise == "before_resize"
    if preprocess.resize == "letterbox":
        batch = np.full((len(images), *input_hw, 3), preprocess.pad_value, np.float32)
    elif normalised_here:
        batch = np.zeros((len(images), *input_hw, 3), np.float32)
    else:  # 0 after the model's normalisation
        batch = np.empty((len(images), *input_hw, 3), np.float32)
        mean = np.asarray(preprocess.mean, np.float32)
        batch[...] = mean[::-1] if preprocess.channel_order == "BGR" else mean
    geometries = []
    for index, (image, size) in enumerate(zip(images, sizes)):
        if normalised_here:
            resized = bilinear_resize(normalise_before_resize(image, preprocess), size)
        else:
            resized = resize_image(image, size, preprocess.resize)
        batch[index, : size[0], : size[1]] = resized
        scale_y, scale_x = size[0] / image.shape[0], size[1] / image.shape[1]
        geometries.append(ImageGeometry(scale_y, scale_x, size, input_hw))
    if preprocess.channel_order == "BGR":
        batch = batch[..., ::-1]
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2)), geometries


def _check_image(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3:
        raise SegtrtError(f"expected an image of shape [h, w, 3], got {list(image.shape)}")
