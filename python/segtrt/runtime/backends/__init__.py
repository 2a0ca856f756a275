"""One backend interface behind every command that runs a model.

A backend knows its ModelInfo (input size, letterbox, classes, mask frame) and
runs one batch in the contract's input layout, returning the contract's outputs
as NumPy arrays. eval, parity, export --check and predict all drive backends
through `segtrt.runtime.inference.predict_images`, so a new backend (TensorRT
engines) plugs in by implementing `__call__`.

Backends: OnnxRuntimeBackend (here, no torch), TensorRTBackend (segtrt.engine.backend: engines
from `segtrt build`), TorchBackend (segtrt.models.backend: the PyTorch reference, the one backend
that imports torch).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segtrt import SegtrtError
from segtrt.runtime.model_info import ModelInfo

CHECKPOINT_SUFFIXES = (".pt", ".pth")
ENGINE_SUFFIXES = (".engine", ".plan")
PROVIDERS = ("cpu", "cuda", "tensorrt")  # ONNX Runtime execution providers, by flag


class Backend:
    """A model that maps images [B, 3, H, W] float32 (to_model_input's, as info.preprocess says) to the
    contract's outputs.

    Attributes: info (ModelInfo), name (shown in reports), batch_size (the fixed batch
    the model takes, or None for any batch).
    """

    info: ModelInfo
    name: str
    batch_size: int | None = None

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """{"num_detections" int32 [B], "boxes" [B, D, 4], "scores" [B, D], "labels" int32 [B, D], "masks" [B, D, Hm, Wm]}."""
        raise NotImplementedError


def open_backend(path, provider: str = "cpu", threads: int | None = None) -> Backend:
    """The backend for a model file: a segtrt checkpoint (PyTorch), an exported ONNX file (ONNX Runtime) or a
    TensorRT engine from `segtrt build` (its sidecar verified first)."""
    path = Path(path)
    if not path.exists():
        raise SegtrtError(f"model file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        from segtrt.runtime.backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, provider, threads)
    if suffix in CHECKPOINT_SUFFIXES:
        if provider != "cpu":
            raise SegtrtError(f"a checkpoint runs in PyTorch on the CPU here; --provider {provider} is for ONNX files")
        try:
            import torch  # noqa: F401  (checked here, so that a Jetson without it gets one sentence)
        except ImportError as error:
            raise SegtrtError(
                f"running checkpoint {path} needs PyTorch ({error}); export it to ONNX on a machine with PyTorch "
                "(`segtrt export`) and run the .onnx file here"
            ) from None
        from segtrt.models.backend import TorchBackend

        return TorchBackend.from_checkpoint(path, threads)
    if suffix in ENGINE_SUFFIXES:  # --provider names ONNX Runtime providers: an engine always runs in TensorRT
        from segtrt.engine.backend import TensorRTBackend

        return TensorRTBackend(path)
    raise SegtrtError(f"{path}: unknown model file type {suffix!r}; give a .pt checkpoint, an .onnx file or a "
                      "TensorRT .engine/.plan built by `segtrt build`")


def add_backend_arguments(parser) -> None:
    """The options every command that runs a model shares."""
    parser.add_argument("--provider", choices=PROVIDERS, default="cpu",
                        help="ONNX Runtime execution provider for .onnx files (default cpu)")
    parser.add_argument("--threads", type=int, help="CPU threads for the backend (default: all cores)")
