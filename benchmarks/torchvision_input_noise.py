#!/usr/bin/env python3
"""How far segtrt's torch-free input tensor is from torchvision's, and how far torchvision's own boxes move
for input noise of that size: the perturbed R50 Mask R-CNN of tests/test_import.py, boxes in resized pixels.

    python benchmarks/torchvision_input_noise.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path[:0] = [str(TESTS), str(TESTS / "fixtures")]

from test_import import TORCHVISION_SCALE, TORCHVISION_SHAPES, _photo_like, torchvision_reference  # noqa: E402

from segtrt.runtime.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess, to_model_input  # noqa: E402

NOISE_SEEDS = (0, 1)


def detect(reference, tensor, image_list) -> torch.Tensor:
    """torchvision's boxes [N, 4] for a given normalised, padded input tensor."""
    features = reference.backbone(tensor)
    proposals, _ = reference.rpn(image_list, features)
    return reference.roi_heads(features, proposals, image_list.image_sizes)[0][0]["boxes"]


def nearest(boxes: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    """For each expected box, the max-coordinate distance to the nearest of `boxes`."""
    return (boxes[:, None] - expected[None]).abs().amax(-1).min(0).values


def main() -> None:
    reference = torchvision_reference()
    preprocess = Preprocess(resize="min_max", scale=TORCHVISION_SCALE, paste="torchvision", fixed_size=False,
                            input_size=(TORCHVISION_SCALE[0], TORCHVISION_SCALE[0]))
    mean = torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1)
    for index, shape in enumerate(TORCHVISION_SHAPES):
        image = _photo_like(shape, index)
        with torch.no_grad():
            image_list, _ = reference.transform([torch.from_numpy(image).permute(2, 0, 1).float() / 255])
            batch, _ = to_model_input([image], preprocess)
            ours = (torch.from_numpy(batch) - mean) / std  # what segtrt's graph normalises its input to
            difference = (ours - image_list.tensors).abs()
            bound = float(difference.max())
            print(f"{shape}: input differs by {bound:.2e} at most, in {float((difference > 0).float().mean()):.0%}"
                  " of the values")
            expected = detect(reference, image_list.tensors, image_list)
            moved = nearest(detect(reference, ours, image_list), expected)
            print(f"  torchvision fed segtrt's input: boxes move {float(moved.max()):.2e} px at most")
            for seed in NOISE_SEEDS:
                noise = torch.rand(ours.shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1
                moved = nearest(detect(reference, image_list.tensors + noise * bound, image_list), expected)
                print(f"  torchvision fed its input +- {bound:.1e} uniform noise (seed {seed}): boxes move "
                      f"{float(moved.max()):.2e} px at most, median {float(moved.median()):.2e}, "
                      f"{int((moved > 1e-3).sum())} of {len(moved)} above 1e-3 px")


if __name__ == "__main__":
    main()
