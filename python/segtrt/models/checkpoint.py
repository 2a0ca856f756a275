"""segtrt checkpoints: weights plus everything later stages must not re-type.

A checkpoint is a plain dict saved with torch.save and read back with
``weights_only=True`` (no pickled code runs on load):

    {"format": "segtrt-checkpoint/1", "kind", "num_classes", "backbone", "options",
     "class_names", "preprocess", "state_dict", "train_state" (optional)}
"""

from __future__ import annotations

from pathlib import Path

from segtrt import SegtrtError
from segtrt.files import atomic_write
from segtrt.runtime.preprocess import Preprocess

FORMAT = "segtrt-checkpoint/1"


def save_checkpoint(path, model, class_names, preprocess: Preprocess, train_state=None, half=False) -> None:
    """Write a checkpoint atomically. `half` stores float weights as float16 (shipped models)."""
    import torch

    from segtrt.models import check_normalisation

    check_normalisation(model, preprocess)
    state_dict = model.state_dict()
    if half:
        state_dict = {k: v.half() if v.is_floating_point() else v for k, v in state_dict.items()}
    checkpoint = {
        "format": FORMAT,
        "kind": model.kind,
        "num_classes": model.num_classes,
        "backbone": model.backbone_name,
        "options": dict(model.options),
        "class_names": list(class_names),
        "preprocess": preprocess.to_dict(),
        "state_dict": state_dict,
    }
    if train_state is not None:
        checkpoint["train_state"] = train_state
    atomic_write(path, lambda file: torch.save(checkpoint, file))


def read_checkpoint(path) -> dict:
    """The raw checkpoint dict, checked for the segtrt format."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise SegtrtError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for corrupt or foreign files
        raise SegtrtError(f"cannot read checkpoint {path}: {str(error).splitlines()[0]}") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise SegtrtError(
            f"{path} is not a segtrt checkpoint (no format {FORMAT!r}); "
            "to start from torchvision or mmdetection weights, convert them with `segtrt import`"
        )
    return checkpoint


def load_checkpoint(path, expected_kind: str | None = None):
    """Rebuild the model of a checkpoint. Returns (model in eval mode, metadata dict)."""
    from segtrt.models import build_model

    checkpoint = read_checkpoint(path)
    kind = checkpoint["kind"]
    if expected_kind is not None and kind != expected_kind:
        raise SegtrtError(f"{path} holds a {kind} model, not {expected_kind}")
    preprocess = Preprocess.from_dict(checkpoint["preprocess"])
    options = dict(checkpoint["options"])
    # Mask R-CNN checkpoints from before segtrt 0.1's one-source normalisation kept mean/std among the options
    legacy = (options.pop("image_mean", preprocess.mean), options.pop("image_std", preprocess.std))
    if (tuple(legacy[0]), tuple(legacy[1])) != (preprocess.mean, preprocess.std):
        raise SegtrtError(f"{path} is inconsistent: its model options and its pre-processing name different mean/std")
    model = build_model(kind, checkpoint["num_classes"], checkpoint["backbone"], preprocess, **options)
    state_dict = {k: v.float() if v.is_floating_point() else v for k, v in checkpoint["state_dict"].items()}
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as error:
        raise SegtrtError(f"{path} does not match a {kind} model: {str(error).splitlines()[0]}") from None
    model.eval()
    meta = {k: v for k, v in checkpoint.items() if k != "state_dict"}
    meta["preprocess"] = preprocess
    return model, meta


def strip_checkpoint(source, destination) -> int:
    """Write `source` without its training state and with float16 weights, for shipping.

    Returns the size of the written file in bytes. Loading converts the weights back to
    float32, so the stripped model computes in float32 as before.
    """
    model, meta = load_checkpoint(source)
    save_checkpoint(destination, model, meta["class_names"], meta["preprocess"], half=True)
    return Path(destination).stat().st_size
