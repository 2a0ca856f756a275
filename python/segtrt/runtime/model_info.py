"""What an exported ONNX file says about itself, read back by every later stage.

A model's facts are one ModelInfo whichever backend runs it (ONNX Runtime,
TensorRT, PyTorch). Export writes these keys into the ONNX model's metadata_props; calibration, engine
building, evaluation and the camera runtime read them instead of asking the user
to re-type input size, normalisation or class names.

No torch here: the runtime imports this module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from segtrt import SegtrtError
from segtrt.runtime.preprocess import Preprocess

# Version of the detection-output contract (see README "Output contract").
CONTRACT = "segtrt-detections/1"
OUTPUT_NAMES = ("num_detections", "boxes", "scores", "labels", "masks")
INPUT_NAME = "images"
# Custom nodes live in this ONNX domain; the TensorRT plugins are registered with an
# empty namespace and found by op_type + plugin_version (see plugins/README.md).
PLUGIN_DOMAIN = "segtrt"
FLAVOURS = ("trt", "portable")
# What a row of the masks output spans: its own box (Mask R-CNN's 28x28), or the
# whole letterboxed input (SOLO/SOLOv2, at the mask-feature stride).
MASK_FRAMES = ("box", "image")
# Numeric formats of an ONNX file: the export is fp32; calibration writes the others (see DESIGN.md
# "Precision variants are ONNX files").
PRECISIONS = ("fp32", "fp16", "int8", "int8-cpu", "int8-mixed")


@dataclass(frozen=True)
class ModelInfo:
    """The segtrt facts recorded in an exported ONNX file."""

    kind: str
    flavour: str
    class_names: tuple[str, ...]
    preprocess: Preprocess
    max_detections: int
    mask_size: tuple[int, int]  # (h, w) of the masks output
    mask_frame: str  # one of MASK_FRAMES
    contract: str = CONTRACT
    source: str = ""  # sha256 of the checkpoint the file was exported from ("" when unknown)
    precision: str = "fp32"  # one of PRECISIONS
    # How calibration made this variant (method, images, seed, per-layer sensitivity...); {} for an export.
    calibration: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.mask_frame not in MASK_FRAMES:
            raise SegtrtError(f"mask_frame must be one of {', '.join(MASK_FRAMES)}, not {self.mask_frame!r}")
        if self.precision not in PRECISIONS:
            raise SegtrtError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")

    def to_props(self) -> dict[str, str]:
        return {
            "segtrt.contract": self.contract,
            "segtrt.kind": self.kind,
            "segtrt.flavour": self.flavour,
            "segtrt.class_names": json.dumps(list(self.class_names)),
            "segtrt.preprocess": json.dumps(self.preprocess.to_dict()),
            "segtrt.max_detections": str(self.max_detections),
            "segtrt.mask_size": json.dumps(list(self.mask_size)),
            "segtrt.mask_frame": self.mask_frame,
            **({"segtrt.source": self.source} if self.source else {}),
            "segtrt.precision": self.precision,
            **({"segtrt.calibration": json.dumps(self.calibration)} if self.calibration else {}),
        }

    @classmethod
    def from_props(cls, props: dict[str, str], source: str = "the model") -> "ModelInfo":
        if "segtrt.contract" not in props:
            raise SegtrtError(f"{source} has no segtrt metadata; export it with `segtrt export`")
        if props["segtrt.contract"] != CONTRACT:
            raise SegtrtError(
                f"{source} uses output contract {props['segtrt.contract']!r}, this segtrt reads {CONTRACT!r}; "
                "re-export it with this version"
            )
        return cls(
            kind=props["segtrt.kind"],
            flavour=props["segtrt.flavour"],
            class_names=tuple(json.loads(props["segtrt.class_names"])),
            preprocess=Preprocess.from_dict(json.loads(props["segtrt.preprocess"])),
            max_detections=int(props["segtrt.max_detections"]),
            mask_size=tuple(json.loads(props["segtrt.mask_size"])),
            mask_frame=props["segtrt.mask_frame"],
            source=props.get("segtrt.source", ""),
            precision=props.get("segtrt.precision", "fp32"),
            calibration=json.loads(props.get("segtrt.calibration", "{}")),
        )


def write_info(model, info: ModelInfo) -> None:
    """Set the segtrt metadata on an onnx.ModelProto (in place), replacing older segtrt keys."""
    kept = [p for p in model.metadata_props if not p.key.startswith("segtrt.")]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in info.to_props().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def read_info(path_or_model) -> ModelInfo:
    """The ModelInfo of an ONNX file path or onnx.ModelProto (weights are not loaded for a path)."""
    import onnx

    if isinstance(path_or_model, onnx.ModelProto):
        model, source = path_or_model, "the model"
    else:
        source = str(path_or_model)
        try:
            model = onnx.load(source, load_external_data=False)
        except FileNotFoundError:
            raise SegtrtError(f"ONNX file {source} does not exist") from None
        except Exception as error:  # protobuf raises DecodeError and friends for corrupt files
            raise SegtrtError(f"{source} is not a readable ONNX file ({type(error).__name__})") from None
    return ModelInfo.from_props({p.key: p.value for p in model.metadata_props}, source)
