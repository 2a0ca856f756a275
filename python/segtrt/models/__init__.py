"""The three segmentation models behind one constructor.

Every model follows the same contract (see docs in each class): `loss(images,
targets)` for training and `forward(images)` for the fixed-shape deployable pass,
whose outputs are the exported graph's (README "Output contract"; `mask_frame`
says what a mask row spans). Images are letterboxed RGB float32 in 0..255,
[B, 3, H, W]; normalisation happens inside the model. `predict` turns the
deployable outputs into instances with the post-processing every exported backend
uses, so PyTorch is scored exactly like ONNX Runtime or TensorRT.
"""

from __future__ import annotations

import importlib

import numpy as np

from segtrt import SegtrtError

# kind -> (module, class name); imported on demand so torch loads only when needed.
MODELS = {
    "maskrcnn": ("segtrt.models.maskrcnn", "MaskRCNN"),
    "solov2": ("segtrt.models.solo", "SOLOv2"),
    "solo": ("segtrt.models.solo", "SOLO"),
}
BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "edge")  # see segtrt.models.backbone


def model_class(kind: str):
    if kind not in MODELS:
        raise SegtrtError(f"unknown model {kind!r}; choose one of {', '.join(MODELS)}")
    module_name, class_name = MODELS[kind]
    return getattr(importlib.import_module(module_name), class_name)


def build_model(kind: str, num_classes: int, backbone: str = "edge", preprocess=None, **options):
    """A freshly initialised model of the given kind (see MODELS).

    The model normalises its input with `preprocess`'s mean and std (segtrt.runtime.preprocess.Preprocess;
    default ImageNet's): the pre-processing is the one source of them, so the ONNX metadata written
    from it describes what the graph does.
    """
    if num_classes < 1:
        raise SegtrtError(f"num_classes must be at least 1, got {num_classes}")
    if backbone not in BACKBONES:
        raise SegtrtError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
    normalisation = {"mean": preprocess.mean, "std": preprocess.std} if preprocess is not None else {}
    return model_class(kind)(num_classes=num_classes, backbone=backbone, **normalisation, **options)


def check_normalisation(model, preprocess) -> None:
    """SegtrtError unless the model normalises with `preprocess`'s mean and std (before they are recorded)."""
    if (model.mean, model.std) != (tuple(preprocess.mean), tuple(preprocess.std)):
        raise SegtrtError(
            f"the model normalises with mean {model.mean} / std {model.std}, the pre-processing says "
            f"{tuple(preprocess.mean)} / {tuple(preprocess.std)}; build the model with build_model(..., preprocess=...)"
        )


def deployable_outputs(model, images) -> dict[str, np.ndarray]:
    """The deployable forward (eval mode, no autograd) on images [B, 3, H, W] -> the contract's arrays by name."""
    import torch

    from segtrt.runtime.model_info import OUTPUT_NAMES

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            outputs = model(torch.as_tensor(images))
    finally:
        model.train(was_training)
    return {name: output.cpu().numpy() for name, output in zip(OUTPUT_NAMES, outputs)}


def predict(model, images, scales=1.0, original_sizes=None) -> list[dict]:
    """Instances per image {"boxes", "scores", "labels", "masks" bool [n, h, w]} in original pixels.

    images: pre-processed [B, 3, H, W]; scales and original_sizes: each image's letterbox
    scale or ImageGeometry (segtrt.runtime.preprocess.to_model_input) and (h, w), by default
    the input itself. Masks are pasted by segtrt's rule.
    """
    from segtrt.runtime.postprocess import detections_to_instances

    input_hw = tuple(images.shape[-2:])
    original_sizes = [input_hw] * len(images) if original_sizes is None else original_sizes
    return detections_to_instances(deployable_outputs(model, images), model.mask_frame, input_hw, scales, original_sizes)


def seeded_model(kind: str, num_classes: int, backbone: str = "edge", **options):
    """Seeded random weights whose classifier is biased so that detections exist (tests, parity benchmarks).

    Random SOLO mask channels start at a 1 % prior; they are scaled up so that their
    masks are varied and sizeable.
    """
    import torch

    torch.manual_seed(0)
    model = build_model(kind, num_classes, backbone, **options).eval()
    with torch.no_grad():
        if kind == "maskrcnn":  # background lowest
            model.roi_heads.box_predictor.cls_score.bias.copy_(torch.linspace(-3.0, 1.0, num_classes + 1))
        else:
            model.mask_head.conv_cls.bias.fill_(0.0)
        if kind == "solo" and model.options["decoupled"]:
            for conv in (*model.mask_head.conv_mask_list_x, *model.mask_head.conv_mask_list_y):
                conv.weight.mul_(100)
                conv.bias.fill_(1.0)
    return model
