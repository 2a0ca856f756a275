#!/usr/bin/env python3
"""How far segtrt's torch-free input tensor is from torchvision's, and how far torchvision's own boxes move
for input noise of that size (the perturbed R50 Mask R-CNN of tests/test_import.py; boxes in resized pixels).

    python benchmarks/torchvision_input_noise.py
"""
import sys
from pathlib import Path

import torch
import torchvision

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path[:0] = [str(TESTS), str(TESTS / "fixtures")]
from test_maskrcnn import _perturb_every_tensor
from test_import import _photo_like, TORCHVISION_SCALE, TORCHVISION_SHAPES
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from segtrt.runtime.preprocess import Preprocess, to_model_input, IMAGENET_MEAN, IMAGENET_STD
torch.manual_seed(0)
ref = torchvision.models.detection.MaskRCNN(_resnet_fpn_extractor(torchvision.models.resnet50(norm_layer=torchvision.ops.FrozenBatchNorm2d), 3),
    num_classes=91, max_size=TORCHVISION_SCALE[0], min_size=TORCHVISION_SCALE[1]).eval()
_perturb_every_tensor(ref)
pre = Preprocess(resize="min_max", scale=TORCHVISION_SCALE, paste="torchvision", fixed_size=False, input_size=(384, 384))
mean = torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1)
std = torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1)


def detect(tensor, image_list):
    """torchvision's boxes [N, 4] for a given normalised, padded input tensor."""
    features = ref.backbone(tensor)
    proposals, _ = ref.rpn(image_list, features)
    return ref.roi_heads(features, proposals, image_list.image_sizes)[0][0]["boxes"]


def nearest(boxes, reference):
    """For each reference box, the max-coordinate distance to the nearest box."""
    return (boxes[:, None] - reference[None]).abs().amax(-1).min(0).values


for index, shape in enumerate(TORCHVISION_SHAPES):
    image = _photo_like(shape, index)
    with torch.no_grad():
        il, _ = ref.transform([torch.from_numpy(image).permute(2, 0, 1).float() / 255])
        batch, _ = to_model_input([image], pre)
        ours = (torch.from_numpy(batch) - mean) / std
        d = (ours - il.tensors).abs()
        print(shape, "input", tuple(ours.shape), tuple(il.tensors.shape), "max abs diff", float(d.max()), "elements differing", float((d > 0).float().mean()))
        base = detect(il.tensors, il)
        print("  torchvision on segtrt's input tensor: box diff max", float(nearest(detect(ours, il), base).max()))
        for seed in range(2):
            g = torch.Generator().manual_seed(seed)
            noise = (torch.rand(il.tensors.shape, generator=g) - 0.5) * 2 * float(d.max())
            moved = nearest(detect(il.tensors + noise, il), base)
            print(f"  torchvision, input +- {float(d.max()):.1e} uniform noise (seed {seed}): box diff max {float(moved.max()):.2e} median {float(moved.median()):.2e} >1e-3: {int((moved > 1e-3).sum())}")
