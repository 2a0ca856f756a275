"""The three segmentation models behind one constructor.

Every model follows the same contract (see docs in each class): `loss(images,
targets)` for training and `forward(images)` for the fixed-shape deployable pass,
whose outputs are the exported graph's (README "Output contract"; `mask_frame`
says what a mask row spans). Images are pre-processed RGB float32 [B, 3, H, W] in 0..255,
normalised inside the model, or already normalised where the pre-processing normalises
before resizing (torchvision's order: Preprocess.normalise). `predict` turns the
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
    default ImageNet's), or takes it normalised where `preprocess` normalises before resizing: the
    pre-processing is the one source of them, so the ONNX metadata written from it describes what the
    graph does.
    """
    if num_classes < 1:
        raise SegtrtError(f"num_classes must be at least 1, got {num_classes}")
    if backbone not in BACKBONES:
        raise SegtrtError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
    normalisation = dict(zip(("mean", "std"), preprocess.model_normalisation)) if preprocess is not None else {}
    return model_class(kind)(num_classes=num_classes, backbone=backbone, **normalisation, **options)


def check_normalisation(model, preprocess) -> None:
    """SegtrtError unless the model normalises as `preprocess` says (before it is recorded): with its mean and
    std, or not at all where the pre-processing normalises."""
    expected = preprocess.model_normalisation
    if (model.mean, model.std) != expected:
        raise SegtrtError(
            f"the model {_normalisation_text(model.mean, model.std)}, the pre-processing says it "
            f"{_normalisation_text(*expected)}; build the model with build_model(..., preprocess=...)"
        )


def normalisation_numbers(mean, std) -> tuple:
    """A model's (mean, std) as float tuples, or (None, None) where its input comes normalised."""
    if (mean is None) != (std is None):
        raise SegtrtError("a model takes both mean and std, or neither (its input comes normalised)")
    if mean is None:
        return None, None
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def _normalisation_text(mean, std) -> str:
    return "takes normalised input" if mean is None else f"normalises with mean {mean} / std {std}"


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
