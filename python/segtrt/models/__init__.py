"""The three segmentation models behind one constructor.

Every model follows the same contract (see docs in each class): `loss(images,
targets)` for training, `forward(images)` for the fixed-shape deployable pass, and
`predict(images)` for evaluation. Images are letterboxed RGB float32 in 0..255,
[B, 3, H, W]; normalisation happens inside the model.
"""

from __future__ import annotations

import importlib

from segtrt import SegtrtError

# kind -> (module, class name); imported on demand so torch loads only when needed.
MODELS = {
    "maskrcnn": ("segtrt.models.maskrcnn", "MaskRCNN"),
    "solov2": ("segtrt.models.solo", "SOLOv2"),
    "solo": ("segtrt.models.solo", "SOLO"),
}


def model_class(kind: str):
    if kind not in MODELS:
        raise SegtrtError(f"unknown model {kind!r}; choose one of {', '.join(MODELS)}")
    module_name, class_name = MODELS[kind]
    return getattr(importlib.import_module(module_name), class_name)


def build_model(kind: str, num_classes: int, backbone: str = "edge", **options):
    """A freshly initialised model of the given kind (see MODELS)."""
    if num_classes < 1:
        raise SegtrtError(f"num_classes must be at least 1, got {num_classes}")
    return model_class(kind)(num_classes=num_classes, backbone=backbone, **options)
