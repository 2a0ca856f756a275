"""Optimisation profiles: the input shapes an engine is built for, from the ONNX file and the batch options.

The image size is never an option: it is the pre-processing's input size recorded at export (a
different size would feed the model images it was not letterboxed for). Only the batch can vary,
and only where the export left it dynamic (`segtrt export --dynamic-batch`).
"""

from __future__ import annotations

from dataclasses import dataclass

from segtrt import SegtrtError
from segtrt.engine.check import CheckedModel
from segtrt.runtime.model_info import INPUT_NAME


@dataclass(frozen=True)
class Profile:
    """One optimisation profile of one input: its smallest, typical and largest shapes."""

    input: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def to_dict(self) -> dict:
        return {"input": self.input, "min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @classmethod
    def from_dict(cls, values: dict) -> "Profile":
        return cls(values["input"], tuple(values["min"]), tuple(values["opt"]), tuple(values["max"]))

    @property
    def dynamic(self) -> bool:
        return not self.min == self.opt == self.max


def profiles_for(model: CheckedModel, min_batch: int | None = None, opt_batch: int | None = None,
                 max_batch: int | None = None) -> tuple[Profile, ...]:
    """The engine's profiles for a checked model; SegtrtError when the options do not fit the file."""
    inputs = {spec.name: spec for spec in model.inputs}
    if set(inputs) != {INPUT_NAME}:
        raise SegtrtError(f"{model.path} has inputs {', '.join(inputs)}; a segtrt model has one, {INPUT_NAME!r}")
    shape = inputs[INPUT_NAME].shape
    height, width = model.info.preprocess.input_size
    if len(shape) != 4 or shape[1] != 3:
        raise SegtrtError(f"{model.path}: input {INPUT_NAME!r} has shape {list(shape)}; a segtrt model takes "
                          "[B, 3, H, W]")
    for axis, (dim, size) in enumerate(zip(shape[2:], (height, width)), start=2):
        if isinstance(dim, int) and dim != size:
            raise SegtrtError(f"{model.path}: input dimension {axis} is {dim} but the recorded pre-processing "
                              f"resizes to {height}x{width}; re-export the model")
    batch = shape[0]
    asked = {"--min-batch": min_batch, "--opt-batch": opt_batch, "--max-batch": max_batch}
    if isinstance(batch, int):
        wrong = [f"{flag} {value}" for flag, value in asked.items() if value is not None and value != batch]
        if wrong:
            raise SegtrtError(f"{model.path} has a fixed batch of {batch}, so {', '.join(wrong)} cannot apply; "
                              "re-export with `segtrt export --dynamic-batch` (or `--batch N`)")
        low = typical = high = batch
    else:
        if max_batch is None:
            raise SegtrtError(f"{model.path} has a dynamic batch: give --max-batch (and optionally --min-batch, "
                              "--opt-batch) for its optimisation profile")
        low = 1 if min_batch is None else min_batch
        high = max_batch
        typical = high if opt_batch is None else opt_batch
        if not 1 <= low <= typical <= high:
            raise SegtrtError(f"batch sizes must satisfy 1 <= min <= opt <= max; got min {low}, opt {typical}, "
                              f"max {high}")
    return (Profile(INPUT_NAME, *((b, 3, height, width) for b in (low, typical, high))),)
