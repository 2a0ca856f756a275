"""Backbones with a feature pyramid (P2-P6) shared by Mask R-CNN, SOLOv2 and SOLO.

Two families:
- "resnet18", "resnet34", "resnet50", "resnet101": torchvision's ResNets + FPN with
  FrozenBatchNorm2d, so users' torchvision and mmdetection checkpoints load
  (state-dict keys are torchvision's; mmdetection's ResNet with style="pytorch" has
  the same modules and strides).
- "edge": a small ResNet-style network with trainable BatchNorm, for the models we
  train from scratch and ship (a few MB, fast on a Jetson).

Both return an OrderedDict {"0": P2, "1": P3, "2": P4, "3": P5, "pool": P6} with
strides 4, 8, 16, 32, 64 and the same channel count, torchvision's layout.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torchvision.models import resnet18, resnet34, resnet50, resnet101
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

from segtrt import SegtrtError
from segtrt.models import BACKBONES

PYRAMID_STRIDES = (4, 8, 16, 32, 64)
# name -> (constructor, C2..C5 channels)
RESNETS = {
    "resnet18": (resnet18, (64, 128, 256, 512)),
    "resnet34": (resnet34, (64, 128, 256, 512)),
    "resnet50": (resnet50, (256, 512, 1024, 2048)),
    "resnet101": (resnet101, (256, 512, 1024, 2048)),
}


def build_backbone(name: str, fpn_channels: int | None = None) -> nn.Module:
    """A backbone + FPN by name; `fpn_channels` defaults to 256 (ResNets) or 96 (edge)."""
    if name in RESNETS:
        return _resnet_fpn(name, fpn_channels or 256)
    if name == "edge":
        return EdgeBackboneWithFPN(fpn_channels or 96)
    raise SegtrtError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")


def _resnet_fpn(name: str, fpn_channels: int) -> nn.Module:
    constructor, channels = RESNETS[name]
    body = constructor(weights=None, norm_layer=FrozenBatchNorm2d)
    backbone = BackboneWithFPN(
        body,
        return_layers={"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"},
        in_channels_list=list(channels),
        out_channels=fpn_channels,
        extra_blocks=LastLevelMaxPool(),
    )
    backbone.strides = PYRAMID_STRIDES
    return backbone


class _BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection (ResNet-18 style)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class EdgeBackbone(nn.Module):
    """Small ResNet: stem to stride 4, then four stages giving C2..C5 (strides 4..32)."""

    stage_channels = (48, 96, 160, 192)
    stage_blocks = (2, 2, 2, 1)

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
            nn.Conv2d(32, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
        )
        stages = []
        in_channels = 32
        for index, (channels, blocks) in enumerate(zip(self.stage_channels, self.stage_blocks)):
            first_stride = 1 if index == 0 else 2
            layers = [_BasicBlock(in_channels, channels, first_stride)]
            layers += [_BasicBlock(channels, channels, 1) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*layers))
            in_channels = channels
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x [B, 3, H, W] -> [C2, C3, C4, C5] at strides 4, 8, 16, 32."""
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


class EdgeBackboneWithFPN(nn.Module):
    """EdgeBackbone + torchvision's FPN with a max-pooled P6, same outputs as BackboneWithFPN."""

    strides = PYRAMID_STRIDES

    def __init__(self, fpn_channels: int):
        super().__init__()
        self.body = EdgeBackbone()
        self.fpn = FeaturePyramidNetwork(
            list(EdgeBackbone.stage_channels), fpn_channels, extra_blocks=LastLevelMaxPool()
        )
        self.out_channels = fpn_channels

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        features = OrderedDict((str(i), f) for i, f in enumerate(self.body(x)))
        return self.fpn(features)
