#!/usr/bin/env python3
"""CPU time of torchvision-style pre-processing and mask pasting, whose bilinear resize emulates torch's
fused multiply-adds exactly (segtrt.runtime.preprocess.bilinear_resize), on 1 thread.

    python benchmarks/preprocess_cost.py

to_model_input of random photos at torchvision's 800/1333 (resize min_max, each normalise step), and
torchvision's paste of 100 random 28x28 masks with boxes of 20-220 px into an 800x1333 image; each the
mean CPU time (time.process_time) of 5 runs after one warm-up.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before NumPy loads its BLAS

import numpy as np  # noqa: E402

from segtrt.runtime.postprocess import paste_torchvision_masks  # noqa: E402
from segtrt.runtime.preprocess import NORMALISE_STEPS, Preprocess, to_model_input  # noqa: E402

SHAPES = ((480, 640), (800, 1333), (1080, 1920))
RUNS = 5


def cpu_ms(function) -> float:
    function()
    start = time.process_time()
    for _ in range(RUNS):
        function()
    return (time.process_time() - start) / RUNS * 1000


def main() -> None:
    rng = np.random.default_rng(0)
    for shape in SHAPES:
        image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        for step in NORMALISE_STEPS:
            preprocess = Preprocess(resize="min_max", scale=(1333, 800), fixed_size=False, input_size=(1344, 1344),
                                    normalise=step)
            print(f"to_model_input {shape[0]}x{shape[1]}, normalise {step}: "
                  f"{cpu_ms(lambda: to_model_input([image], preprocess)):.0f} ms CPU")
    masks = rng.random((100, 28, 28)).astype(np.float32)
    corners = rng.random((100, 2)) * 600
    boxes = np.concatenate([corners, corners + 20 + rng.random((100, 2)) * 200], 1).astype(np.float32)
    print(f"paste_torchvision_masks, 100 masks into 800x1333: "
          f"{cpu_ms(lambda: paste_torchvision_masks(masks, boxes, (800, 1333))):.0f} ms CPU")


if __name__ == "__main__":
    main()
