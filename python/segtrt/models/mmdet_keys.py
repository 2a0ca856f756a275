"""Load mmdetection SOLO / Decoupled SOLO / SOLOv2 (ResNet-18/34/50/101 + FPN) weights into segtrt's models.

`segtrt import --from mmdet` (segtrt.models.importers) reads the file and the config and calls this.

Build a Decoupled SOLO with the option decoupled=True; the heads keep mmdetection's names either way.

Key mapping, mmdetection -> segtrt (applied in this order, first match wins):

    backbone.<x>.num_batches_tracked         dropped (segtrt's ResNet-50 uses FrozenBatchNorm2d)
    backbone.<x>                             backbone.body.<x>    (ResNet names are torchvision's)
    neck.lateral_convs.<i>.conv.<w|b>        backbone.fpn.inner_blocks.<i>.0.<w|b>
    neck.fpn_convs.<i>.conv.<w|b>            backbone.fpn.layer_blocks.<i>.0.<w|b>
    mask_head.<x>                            mask_head.<x>        (our heads keep mmdetection's names)

mmdetection's FPN with num_outs=5 and no extra convs makes P6 by a stride-2 max
pool of P5, as torchvision's LastLevelMaxPool does, so no weights are missing.
Any other key is an error: the file is not a SOLO/SOLOv2 ResNet checkpoint.
"""

from __future__ import annotations

import re

from segtrt import SegtrtError

DROPPED = re.compile(r"^backbone\..*\.num_batches_tracked$|^backbone\.num_batches_tracked$")
RULES = [
    (re.compile(r"^backbone\.(.+)$"), r"backbone.body.\1"),
    (re.compile(r"^neck\.lateral_convs\.(\d+)\.conv\.(weight|bias)$"), r"backbone.fpn.inner_blocks.\1.0.\2"),
    (re.compile(r"^neck\.fpn_convs\.(\d+)\.conv\.(weight|bias)$"), r"backbone.fpn.layer_blocks.\1.0.\2"),
    (re.compile(r"^mask_head\.(.+)$"), r"mask_head.\1"),
]


def mmdet_key(key: str) -> str | None:
    """segtrt's name for an mmdetection key, None for keys segtrt does not keep."""
    if DROPPED.match(key):
        return None
    for pattern, replacement in RULES:
        if pattern.match(key):
            return pattern.sub(replacement, key)
    raise SegtrtError(f"mmdetection key {key!r} is not part of a SOLO/SOLOv2 ResNet model")


def mmdet_to_segtrt(state_dict: dict) -> dict:
    """Rename an mmdetection state dict (or a checkpoint dict holding one under "state_dict")."""
    if "state_dict" in state_dict and isinstance(state_dict["state_dict"], dict):
        state_dict = state_dict["state_dict"]
    mapped = {}
    for key, value in state_dict.items():
        new_key = mmdet_key(key)
        if new_key is not None:
            mapped[new_key] = value
    return mapped


def load_mmdet_state_dict(model, state_dict: dict) -> None:
    """Load mmdetection weights into a segtrt SOLO/SOLOv2 model built with a ResNet backbone.

    The model's num_classes and head options must match the mmdetection config
    (e.g. SOLOv2-R50: feat_channels 512, mask_out_channels 256, the defaults).
    """
    try:
        model.load_state_dict(mmdet_to_segtrt(state_dict), strict=True)
    except RuntimeError as error:
        lines = str(error).splitlines()
        detail = lines[1].strip() if len(lines) > 1 else lines[0]
        raise SegtrtError(
            f"mmdetection weights do not fit this {model.kind} model ({model.backbone_name}, "
            f"{model.num_classes} classes): {detail}"
        ) from None
