"""The PyTorch reference backend: a segtrt model's deployable forward behind the runtime's Backend interface.

It returns exactly the outputs an exported graph returns, so every comparison
(eval, parity, export --check) scores PyTorch through the same loop and
post-processing as ONNX Runtime or TensorRT.
"""

from __future__ import annotations

import numpy as np

from segtrt.models import deployable_outputs
from segtrt.runtime.backends import Backend
from segtrt.runtime.model_info import ModelInfo
from segtrt.runtime.preprocess import SIZE_DIVISOR, Preprocess

FLAVOUR = "pytorch"


def model_info(model, class_names, preprocess: Preprocess, flavour: str = FLAVOUR, outputs=None) -> ModelInfo:
    """The ModelInfo of a model's deployable forward; `outputs` (its contract arrays) are computed when not given.

    A model without a fixed input size (imported models, whose largest input would make this probe slow) is
    probed at a small size; its image-frame mask_size is then given at its largest input.
    """
    if outputs is None:
        probe = preprocess.input_size if preprocess.fixed_size else (2 * SIZE_DIVISOR, 2 * SIZE_DIVISOR)
        outputs = deployable_outputs(model, np.zeros((1, 3, *probe), np.float32))
    mask_size = tuple(int(size) for size in outputs["masks"].shape[-2:])
    if model.mask_frame == "image" and not preprocess.fixed_size:
        mask_size = tuple(size // model.mask_stride for size in preprocess.input_size)
    return ModelInfo(
        kind=model.kind,
        flavour=flavour,
        class_names=tuple(class_names),
        preprocess=preprocess,
        max_detections=int(outputs["boxes"].shape[1]),
        mask_size=mask_size,
        mask_frame=model.mask_frame,
    )


class TorchBackend(Backend):
    """An eval-mode segtrt model in PyTorch on the CPU; any batch size."""

    name = FLAVOUR
    batch_size = None

    def __init__(self, model, class_names, preprocess: Preprocess, threads: int | None = None):
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.model = model.eval()
        self.info = model_info(self.model, class_names, preprocess)

    @classmethod
    def from_checkpoint(cls, path, threads: int | None = None) -> "TorchBackend":
        from segtrt.models.checkpoint import load_checkpoint

        model, meta = load_checkpoint(path)
        return cls(model, meta["class_names"], meta["preprocess"], threads)

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        return deployable_outputs(self.model, images)
