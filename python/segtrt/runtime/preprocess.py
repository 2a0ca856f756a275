"""Pre-processing shared by training, evaluation, export and the runtime.

One resize for every stage: the image is scaled to fit the model's input size
keeping its aspect ratio, then padded at the bottom and right ("letterbox").
Mean/std normalisation happens inside the model, so it travels with the ONNX
graph; the numbers are still recorded here for the ONNX metadata.

NumPy and OpenCV only: the runtime imports this without torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from segtrt import SegtrtError

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
SIZE_DIVISOR = 32  # torchvision's and mmdetection's batch padding: 800x1344 is COCO's usual input


@dataclass(frozen=True)
class Preprocess:
    """How a raw RGB uint8 image becomes the model input [1, 3, H, W] float32 in 0..255."""

    input_size: tuple[int, int] = (192, 192)  # (H, W)
    resize: str = "letterbox"
    pad_value: int = 0
    mean: tuple[float, float, float] = field(default=IMAGENET_MEAN)
    std: tuple[float, float, float] = field(default=IMAGENET_STD)
    channel_order: str = "RGB"

    def __post_init__(self):
        if self.resize != "letterbox":
            raise SegtrtError(f"unknown resize mode {self.resize!r}; segtrt supports 'letterbox'")
        if self.channel_order not in ("RGB", "BGR"):
            raise SegtrtError(f"channel_order must be 'RGB' or 'BGR', not {self.channel_order!r}")
        height, width = self.input_size
        if height % SIZE_DIVISOR or width % SIZE_DIVISOR:
            raise SegtrtError(
                f"input size {height}x{width} must be a multiple of {SIZE_DIVISOR} (the stride of P5, the "
                "coarsest level RoIs and masks come from), e.g. 800x1344 or 192x192"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Preprocess":
        values = dict(values)
        for key in ("input_size", "mean", "std"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


def letterbox(image: np.ndarray, input_size: tuple[int, int], pad_value: int = 0) -> tuple[np.ndarray, float]:
    """Scale an image [h, w, 3] to fit input_size (H, W) and pad bottom/right.

    Returns the padded image [H, W, 3] (same dtype) and the scale applied, so that
    input-space coordinates divided by the scale give original-image coordinates.
    """
    import cv2

    if image.ndim != 3 or image.shape[2] != 3:
        raise SegtrtError(f"expected an image of shape [h, w, 3], got {list(image.shape)}")
    height, width = input_size
    scale = min(height / image.shape[0], width / image.shape[1])
    new_h = max(1, round(image.shape[0] * scale))
    new_w = max(1, round(image.shape[1] * scale))
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    padded = np.full((height, width, 3), pad_value, dtype=image.dtype)
    padded[:new_h, :new_w] = resized
    return padded, scale


def to_model_input(images: list[np.ndarray], preprocess: Preprocess) -> tuple[np.ndarray, list[float]]:
    """RGB uint8 images [h, w, 3] -> the model input [B, 3, H, W] float32 and each image's letterbox scale.

    The one place an image becomes a network input, for every backend.
    """
    padded, scales = [], []
    for image in images:
        boxed, scale = letterbox(image, preprocess.input_size, preprocess.pad_value)
        padded.append(boxed[..., ::-1] if preprocess.channel_order == "BGR" else boxed)
        scales.append(scale)
    batch = np.stack(padded).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(batch, dtype=np.float32), scales
