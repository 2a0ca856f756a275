"""The one loop that runs a backend over images: pre-processing, batching, the backend, post-processing.

    for prediction in predict_images(backend, [(key, rgb_image), ...], batch_size=4):
        prediction.instances   # boxes, scores, labels, masks at the ORIGINAL image size
        prediction.outputs     # this image's graph outputs (input pixels, mask probabilities), padding cut

Every stage that runs a model (eval, parity, export --check, predict, calibration
reports, the camera) goes through here, so none can letterbox, batch or paste
differently from the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Iterable, Iterator

import numpy as np

from segtrt import SegtrtError
from segtrt.runtime.backends import Backend
from segtrt.runtime.postprocess import detections_to_instances
from segtrt.runtime.preprocess import to_model_input


@dataclass
class Prediction:
    """One image's result.

    key: what the caller gave with the image (an image id, a file path).
    image_hw: the original (h, w).
    instances: {"boxes" float32 [n, 4] x1y1x2y2, "scores" [n], "labels" int64 [n] 0-based,
        "masks" bool [n, h, w]}, in original-image pixels.
    outputs: the backend's contract outputs for this image, rows cut to its count:
        {"boxes" [n, 4] input pixels, "scores" [n], "labels" [n], "masks" [n, Hm, Wm] probabilities}.
    """

    key: Hashable
    image_hw: tuple[int, int]
    instances: dict
    outputs: dict


def predict_images(
    backend: Backend,
    images: Iterable[tuple[Hashable, np.ndarray]],
    batch_size: int = 1,
    progress: str | None = None,
    total: int | None = None,
) -> Iterator[Prediction]:
    """Run `backend` over (key, RGB uint8 image [h, w, 3]) pairs, yielding one Prediction per image in order.

    A backend with a fixed batch takes that batch whatever `batch_size` says, the
    last one padded with blank images. `progress` is the progress bar's label (None:
    no bar); `total` its length when `images` has none.
    """
    from tqdm import tqdm

    if batch_size < 1:
        raise SegtrtError(f"batch size must be at least 1, got {batch_size}")
    batch_size = backend.batch_size or batch_size
    total = total if total is not None else (len(images) if hasattr(images, "__len__") else None)
    with tqdm(total=total, desc=progress, unit="image", disable=progress is None) as bar:
        for chunk in _chunks(images, batch_size):
            yield from _predict_batch(backend, chunk)
            bar.update(len(chunk))


def _predict_batch(backend: Backend, chunk: list) -> list[Prediction]:
    keys, originals = zip(*chunk)
    batch, geometries = to_model_input(list(originals), backend.info.preprocess)
    outputs = run_batch(backend, batch)
    return to_predictions(backend.info, keys, outputs, geometries, [image.shape[:2] for image in originals])


def run_batch(backend: Backend, batch: np.ndarray) -> dict[str, np.ndarray]:
    """backend(batch) for model inputs [n, 3, H, W]; a fixed-batch backend gets blank images up to its batch,
    and the outputs are cut back to the n real rows."""
    count = len(batch)
    if backend.batch_size and count < backend.batch_size:
        blank = np.zeros((backend.batch_size - count, *batch.shape[1:]), batch.dtype)
        batch = np.concatenate([batch, blank])
    return {name: value[:count] for name, value in backend(batch).items()}


def to_predictions(info, keys, outputs: dict, scales, sizes) -> list[Prediction]:
    """One Prediction per row of a batch's contract outputs; scales (ImageGeometry, or letterbox scales) and
    sizes (h, w) per row, as to_model_input gave them and as the original images are."""
    preprocess = info.preprocess
    instances = detections_to_instances(outputs, info.mask_frame, preprocess.input_size, scales, sizes,
                                        preprocess.paste)
    predictions = []
    for index, key in enumerate(keys):
        n = len(instances[index]["labels"])
        image_outputs = {name: outputs[name][index, :n] for name in ("boxes", "scores", "labels", "masks")}
        predictions.append(Prediction(key, tuple(sizes[index]), instances[index], image_outputs))
    return predictions


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
