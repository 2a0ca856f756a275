"""Users' checkpoints from other frameworks -> segtrt checkpoints (`segtrt import`).

- mmdetection SOLO, Decoupled SOLO and SOLOv2 (ResNet-18/34/50/101 + FPN): options from
  the config (--config, else the checkpoint's own meta["cfg"]), else inferred from the
  tensor shapes with mmdetection's defaults for what the weights do not hold; classes
  from meta["dataset_meta"]["classes"] (3.x) or meta["CLASSES"] (2.x), else COCO's for
  80 classes; pre-processing: keep_ratio with the test pipeline's Resize scale, the
  data pre-processor's mean/std/colour order and pad divisor, mmdetection's paste rule.
- torchvision Mask R-CNN (maskrcnn_resnet50_fpn-style state dicts): widths inferred from
  the shapes; classes torchvision's 90 COCO labels for 91-way classifiers; pre-processing:
  torchvision's min/max-size resize (800, 1333), normalised before resizing as its transform
  does (so the model input is torchvision's own tensor), and its paste rule.

Both accept overrides (`--set KEY=VALUE`): any model option, a pre-processing field, or
class_names. Every file is read with torch.load(weights_only=True): no pickled code runs.
"""

from __future__ import annotations

import ast
import dataclasses
import math
from dataclasses import dataclass, field

from segtrt import SegtrtError
from segtrt.models.coco_classes import COCO_CLASSES, torchvision_coco_names
from segtrt.runtime.preprocess import IMAGENET_MEAN, IMAGENET_STD, SIZE_DIVISOR, Preprocess

FRAMEWORKS = ("mmdet", "torchvision")
PREPROCESS_FIELDS = tuple(f.name for f in dataclasses.fields(Preprocess))
MMDET_SCALE = (1333, 800)  # mmdetection's test Resize and torchvision's (max_size, min_size)
# ResNet (blocks per stage, bottleneck) -> depth
RESNET_DEPTHS = {((2, 2, 2, 2), False): 18, ((3, 4, 6, 3), False): 34, ((3, 4, 6, 3), True): 50,
                 ((3, 4, 23, 3), True): 101}
MMDET_HEADS = {"SOLOV2Head": ("solov2", False), "SOLOHead": ("solo", False), "DecoupledSOLOHead": ("solo", True)}


@dataclass
class Imported:
    """What an import produced: the model and everything its checkpoint records, with where each fact came from."""

    model: object
    class_names: tuple
    preprocess: Preprocess
    notes: list = field(default_factory=list)


def import_model(framework: str, path, config=None, settings: dict | None = None) -> Imported:
    """Read a foreign checkpoint (and mmdetection config) into a segtrt model. SegtrtError for bad input."""
    if framework not in FRAMEWORKS:
        raise SegtrtError(f"unknown framework {framework!r}; choose one of {', '.join(FRAMEWORKS)}")
    if framework == "torchvision" and config is not None:
        raise SegtrtError("--config is for mmdetection configs; torchvision state dicts carry no config")
    settings = dict(settings or {})
    checkpoint = _load(path, framework)
    if framework == "mmdet":
        return _import_mmdet(checkpoint, path, config, settings)
    return _import_torchvision(checkpoint, path, settings)


def parse_settings(pairs) -> dict:
    """["KEY=VALUE", ...] -> {key: value}; values are Python literals where they parse, else text."""
    settings = {}
    for pair in pairs or ():
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise SegtrtError(f"--set takes KEY=VALUE, got {pair!r}")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        settings[key.strip()] = value
    return settings


# ---- mmdetection ------------------------------------------------------------------------


def _import_mmdet(checkpoint: dict, path, config_path, settings: dict) -> Imported:
    from segtrt.models.mmdet_config import parse_config_text, read_config

    state_dict = checkpoint.get("state_dict", checkpoint)
    meta = checkpoint.get("meta", {}) if isinstance(checkpoint.get("meta"), dict) else {}
    kind, decoupled = _mmdet_architecture(state_dict, path)
    notes = []
    if config_path is not None:
        config, config_source = read_config(config_path), str(config_path)
    elif isinstance(meta.get("cfg", meta.get("config")), str):
        config, config_source = parse_config_text(meta.get("cfg", meta.get("config")), f"{path}'s meta"), "the checkpoint's meta"
    else:
        config, config_source = None, None
    backbone = f"resnet{_resnet_depth(state_dict, 'backbone.', path)}"
    inferred = _mmdet_shape_options(state_dict, kind, decoupled)
    num_classes = inferred.pop("num_classes")
    if config is None:
        options, preprocess_values = inferred, {"scale": MMDET_SCALE}
        notes.append("no config: head widths from the tensor shapes, the rest mmdetection's defaults "
                     f"(num_grids {_mmdet_default('num_grids')}, test thresholds, Resize {MMDET_SCALE})")
    else:
        options, preprocess_values, configured_classes = _mmdet_config_options(config, config_source, kind, decoupled,
                                                                               backbone)
        notes.append(f"options and pre-processing from {config_source}")
        if configured_classes is not None and configured_classes != num_classes:
            raise SegtrtError(f"{config_source} describes {configured_classes} classes, the weights in {path} have "
                              f"{num_classes}: the config does not match the checkpoint")
        for key, value in inferred.items():
            if key in options and options[key] != value:
                raise SegtrtError(f"{config_source} sets {key}={options[key]}, the weights in {path} have {value}: "
                                  "the config does not match the checkpoint")
        options = {**inferred, **options}
    if kind == "solo":
        options["decoupled"] = decoupled
        options["upsample_logits"] = False  # mmdetection upsamples probabilities
    dataset_meta = meta.get("dataset_meta") if isinstance(meta.get("dataset_meta"), dict) else {}
    names = dataset_meta.get("classes", meta.get("CLASSES"))
    class_names = _class_names(settings, names, num_classes, COCO_CLASSES, "the checkpoint's meta", notes)
    preprocess = _preprocess({"resize": "keep_ratio", "paste": "mmdet", **preprocess_values}, settings)
    options.update({key: value for key, value in settings.items() if key not in (*PREPROCESS_FIELDS, "class_names")})
    model = _build(kind, num_classes, backbone, preprocess, options)
    from segtrt.models.mmdet_keys import load_mmdet_state_dict

    try:
        load_mmdet_state_dict(model, state_dict)
    except SegtrtError as error:
        hint = f" (is {config_source} the config of these weights?)" if config_source else ""
        raise SegtrtError(f"{path}: {error}{hint}") from None
    return Imported(model, class_names, preprocess, notes)


def _mmdet_architecture(state_dict: dict, path) -> tuple[str, bool]:
    keys = list(state_dict)
    if any(key.startswith("mask_head.kernel_convs.") for key in keys):
        kind, decoupled = "solov2", False
    elif any(key.startswith("mask_head.conv_mask_list_x.") for key in keys):
        kind, decoupled = "solo", True
    elif any(key.startswith("mask_head.conv_mask_list.") for key in keys):
        kind, decoupled = "solo", False
    elif any(key.startswith("roi_head.") for key in keys):
        raise SegtrtError(f"{path} is an mmdetection two-stage model (roi_head.*, e.g. Mask R-CNN); segtrt imports "
                          "mmdetection SOLO, Decoupled SOLO and SOLOv2 (for Mask R-CNN, import torchvision weights)")
    elif any(key.startswith("roi_heads.") for key in keys):
        raise SegtrtError(f"{path} is a torchvision Mask R-CNN state dict; use --from torchvision")
    else:
        raise SegtrtError(f"{path} is not an mmdetection SOLO/SOLOv2 checkpoint (no mask_head.* SOLO keys)")
    if any("conv_offset" in key or "dcn" in key for key in keys):
        raise SegtrtError(f"{path} uses deformable convolutions (DCN), which segtrt's {kind} does not have")
    if any(key.startswith("backbone.stem.") for key in keys):
        raise SegtrtError(f"{path} has a ResNet-D / ResNeXt stem (backbone.stem.*); segtrt imports plain ResNets")
    return kind, decoupled


def _mmdet_shape_options(state_dict: dict, kind: str, decoupled: bool) -> dict:
    """The options the tensor shapes determine (num_classes among them)."""
    def shape(key):
        if key not in state_dict:
            raise SegtrtError(f"the checkpoint has no {key}: not a complete mmdetection {kind} model")
        return tuple(state_dict[key].shape)

    classifier = shape("mask_head.conv_cls.weight")
    options = {
        "num_classes": classifier[0],
        "feat_channels": classifier[1],
        "stacked_convs": _count(state_dict, "mask_head.cls_convs."),
        "fpn_channels": shape("neck.lateral_convs.0.conv.weight")[0],
    }
    if kind == "solov2":
        options["mask_out_channels"] = shape("mask_head.conv_kernel.weight")[0]
        options["mask_feat_channels"] = shape("mask_head.mask_feature_head.conv_pred.conv.weight")[1]
    elif decoupled:
        options["num_grids"] = [shape(f"mask_head.conv_mask_list_x.{i}.weight")[0]
                                for i in range(_count(state_dict, "mask_head.conv_mask_list_x."))]
    else:
        options["num_grids"] = [math.isqrt(shape(f"mask_head.conv_mask_list.{i}.weight")[0])
                                for i in range(_count(state_dict, "mask_head.conv_mask_list."))]
    return options


def _mmdet_config_options(config: dict, source: str, kind: str, decoupled: bool, backbone: str):
    """(model options, pre-processing fields, num_classes or None) from an mmdetection config."""
    from segtrt.models.mmdet_config import UNKNOWN

    model = config.get("model")
    if not isinstance(model, dict):
        raise SegtrtError(f"{source} has no literal `model = dict(...)`")
    head = model.get("mask_head", {})
    head_kind = MMDET_HEADS.get(head.get("type"))
    if head_kind is None:
        raise SegtrtError(f"{source} has mask_head type {head.get('type')!r}; segtrt imports "
                          f"{', '.join(MMDET_HEADS)}")
    if head_kind != (kind, decoupled):
        raise SegtrtError(f"{source} describes a {head.get('type')}, the weights are a "
                          f"{'decoupled ' if decoupled else ''}{kind}: the config does not match the checkpoint")
    depth = model.get("backbone", {}).get("depth")
    if depth is not None and f"resnet{depth}" != backbone:
        raise SegtrtError(f"{source} has a ResNet-{depth}, the weights a {backbone}: the config does not match")
    _require(model.get("backbone", {}), {"type": "ResNet", "style": "pytorch", "dcn": None}, source, "backbone")
    _require(model.get("neck", {}), {"type": "FPN", "start_level": 0, "num_outs": 5, "add_extra_convs": False},
             source, "neck")
    _require(head, {"cls_down_index": 0, "dcn_cfg": None}, source, "mask_head")
    feature_head = head.get("mask_feature_head", {})
    _require(feature_head, {"start_level": 0, "end_level": 3, "mask_stride": 4}, source, "mask_feature_head")
    test = model.get("test_cfg") or config.get("test_cfg") or {}
    mapping = {  # segtrt option: (config dict, key)
        "feat_channels": (head, "feat_channels"), "stacked_convs": (head, "stacked_convs"),
        "num_grids": (head, "num_grids"), "scale_ranges": (head, "scale_ranges"), "pos_scale": (head, "pos_scale"),
        "min_mask_area": (head, "strides"), "fpn_channels": (model.get("neck", {}), "out_channels"),
        "mask_feat_channels": (feature_head, "feat_channels"), "mask_out_channels": (feature_head, "out_channels"),
        "score_thr": (test, "score_thr"), "mask_thr": (test, "mask_thr"), "nms_pre": (test, "nms_pre"),
        "nms_kernel": (test, "kernel"), "nms_sigma": (test, "sigma"), "filter_thr": (test, "filter_thr"),
        "max_detections": (test, "max_per_img"),
    }
    if kind != "solov2":
        for key in ("mask_feat_channels", "mask_out_channels"):
            mapping.pop(key)
    options = {}
    for option, (section, key) in mapping.items():
        value = section.get(key)
        if value is UNKNOWN:
            raise SegtrtError(f"{source}: {key} is not a literal value; dump the config with mmengine "
                              "(Config.fromfile(...).dump('flat.py')) and pass that file")
        if value is not None:
            options[option] = _lists(value)
    norm = head.get("norm_cfg") or {}
    if norm.get("num_groups") is not None:
        options["norm_groups"] = norm["num_groups"]
    preprocess = _mmdet_preprocess(config, model.get("data_preprocessor", {}), source)
    return options, preprocess, head.get("num_classes")


def _mmdet_preprocess(config: dict, data: dict, source: str) -> dict:
    values = {"scale": MMDET_SCALE}
    for key in ("mean", "std"):
        if data.get(key) is not None:
            values[key] = tuple(float(v) for v in data[key])
    if data.get("bgr_to_rgb") is False:  # the network was trained on BGR
        values["channel_order"] = "BGR"
    if data.get("pad_size_divisor"):
        values["size_divisor"] = int(data["pad_size_divisor"])
    pipeline = config.get("test_pipeline")
    if not isinstance(pipeline, list):
        pipeline = (config.get("test_dataloader") or {}).get("dataset", {}).get("pipeline")
    resizes = [step for step in pipeline or [] if isinstance(step, dict) and step.get("type") == "Resize"]
    if resizes:
        resize = resizes[0]
        if not resize.get("keep_ratio", False):
            raise SegtrtError(f"{source}: the test Resize has keep_ratio=False; segtrt reproduces keep-ratio resizing")
        scale = resize.get("scale")
        if not (isinstance(scale, (list, tuple)) and len(scale) == 2):
            raise SegtrtError(f"{source}: the test Resize scale {scale!r} is not a (long, short) pair")
        values["scale"] = tuple(int(v) for v in scale)
    return values


def _require(section: dict, expected: dict, source: str, name: str) -> None:
    """SegtrtError unless the config section's keys, where given, have the values segtrt's model implements."""
    for key, value in expected.items():
        if key in section and section[key] != value and not (value is False and section[key] in (None, False)):
            raise SegtrtError(f"{source}: {name}.{key}={section[key]!r}; segtrt's model implements {key}={value!r}")


# ---- torchvision ------------------------------------------------------------------------


def _import_torchvision(checkpoint: dict, path, settings: dict) -> Imported:
    state_dict = checkpoint.get("model", checkpoint) if isinstance(checkpoint.get("model"), dict) else checkpoint
    keys = list(state_dict)
    if any(key.startswith("mask_head.") or key.startswith("roi_head.") for key in keys) or "state_dict" in keys:
        raise SegtrtError(f"{path} is an mmdetection checkpoint; use --from mmdet")
    if "roi_heads.box_head.fc6.weight" not in state_dict:
        if any(key.startswith("roi_heads.box_head.0.") for key in keys):
            raise SegtrtError(f"{path} is a maskrcnn_resnet50_fpn_v2 state dict (convolutional box head); segtrt "
                              "imports the v1 architecture (maskrcnn_resnet50_fpn)")
        raise SegtrtError(f"{path} is not a torchvision Mask R-CNN state dict (no roi_heads.box_head.fc6.weight)")
    if "roi_heads.mask_predictor.mask_fcn_logits.weight" not in state_dict:
        raise SegtrtError(f"{path} has no mask predictor: a Faster R-CNN, not a Mask R-CNN")
    backbone = f"resnet{_resnet_depth(state_dict, 'backbone.body.', path)}"
    num_classes = state_dict["roi_heads.box_predictor.cls_score.weight"].shape[0] - 1
    options = {
        "fpn_channels": state_dict["backbone.fpn.inner_blocks.0.0.weight"].shape[0],
        "representation_size": state_dict["roi_heads.box_head.fc6.weight"].shape[0],
        "mask_head_channels": state_dict["roi_heads.mask_predictor.conv5_mask.weight"].shape[0],
    }
    options.update({key: value for key, value in settings.items() if key not in (*PREPROCESS_FIELDS, "class_names")})
    notes = ["widths from the tensor shapes; thresholds torchvision's defaults"]
    class_names = _class_names(settings, None, num_classes, torchvision_coco_names(), "", notes)
    preprocess = _preprocess({"resize": "min_max", "paste": "torchvision", "scale": MMDET_SCALE,
                              "normalise": "before_resize"}, settings)
    model = _build("maskrcnn", num_classes, backbone, preprocess, options)
    from segtrt.models.maskrcnn import load_torchvision_state_dict

    try:
        load_torchvision_state_dict(model, state_dict)
    except SegtrtError as error:
        raise SegtrtError(f"{path}: {error}") from None
    return Imported(model, class_names, preprocess, notes)


# ---- shared -----------------------------------------------------------------------------


def _load(path, framework: str) -> dict:
    import torch

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise SegtrtError(f"checkpoint {path} does not exist") from None
    except Exception as error:  # torch raises many types for corrupt files and pickled objects
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "weights_only" in str(error) or "Unsupported global" in str(error):
            first = ("it holds pickled Python objects, which segtrt does not unpickle; save the weights alone "
                     "(torch.save(model.state_dict(), ...)" + (", or mmdetection's tools/model_converters/"
                     "publish_model.py)" if framework == "mmdet" else ")"))
        raise SegtrtError(f"cannot read {path}: {first}") from None
    if not isinstance(checkpoint, dict) or not checkpoint:
        raise SegtrtError(f"{path} holds no state dict")
    if str(checkpoint.get("format", "")).startswith("segtrt-checkpoint"):
        raise SegtrtError(f"{path} is already a segtrt checkpoint")
    return checkpoint


def _resnet_depth(state_dict: dict, prefix: str, path) -> int:
    blocks = tuple(_count(state_dict, f"{prefix}layer{stage}.") for stage in range(1, 5))
    bottleneck = f"{prefix}layer1.0.conv3.weight" in state_dict
    depth = RESNET_DEPTHS.get((blocks, bottleneck))
    if depth is None:
        raise SegtrtError(f"{path}: the backbone ({prefix}*, blocks per stage {blocks}) is not a ResNet-18/34/50/101")
    return depth


def _count(state_dict: dict, prefix: str) -> int:
    """How many numbered children `prefix<i>.` the state dict has."""
    indices = {key[len(prefix):].split(".")[0] for key in state_dict if key.startswith(prefix)}
    return len({int(index) for index in indices if index.isdigit()})


def _class_names(settings: dict, names, num_classes: int, coco: tuple, source: str, notes: list) -> tuple:
    if "class_names" in settings:
        value = settings["class_names"]
        names, source = (value.split(",") if isinstance(value, str) else list(value)), "--set class_names"
    elif names is not None:
        names = list(names)
    elif num_classes == len(coco):
        notes.append(f"classes: COCO's {num_classes}")
        return tuple(coco)
    else:
        raise SegtrtError(f"the weights have {num_classes} classes and the checkpoint names none (COCO models have "
                          f"{len(coco)}); name them with --set class_names=first,second,...")
    if len(names) != num_classes:
        raise SegtrtError(f"{source} names {len(names)} classes, the weights have {num_classes}")
    notes.append(f"classes from {source}")
    return tuple(str(name).strip() for name in names)


def _preprocess(values: dict, settings: dict) -> Preprocess:
    """The imported pre-processing with the user's overrides; no fixed size (PyTorch takes any)."""
    values = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "fixed_size": False, **values}
    values.update({key: value for key, value in settings.items() if key in PREPROCESS_FIELDS})
    if "input_size" not in settings:  # the largest padded input, either orientation
        side = int(math.ceil(max(values["scale"]) / SIZE_DIVISOR) * SIZE_DIVISOR)
        values["input_size"] = (side, side)
    try:
        return Preprocess.from_dict(values)
    except TypeError as error:
        raise SegtrtError(f"bad pre-processing setting: {error}") from None


def _build(kind: str, num_classes: int, backbone: str, preprocess: Preprocess, options: dict):
    from segtrt.models import build_model

    return build_model(kind, num_classes, backbone, preprocess, **options).eval()


def _mmdet_default(option: str):
    """segtrt's ResNet SOLO defaults are mmdetection's config values."""
    from segtrt.models.solo import COMMON_DEFAULTS

    return COMMON_DEFAULTS[option]


def _lists(value):
    return [_lists(item) for item in value] if isinstance(value, (list, tuple)) else value
