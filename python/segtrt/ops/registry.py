"""The plugin registry: each TensorRT plugin of segtrt described once.

Per plugin op type (= the TensorRT plugin's name = the ONNX node's op_type):
its version, its attribute schema (names, ONNX types and defaults as its C++
creator declares them, see plugins/*/README.md), the creator's own validation
rules (the same C++ code, reached through the CPU twin library), its inputs and
outputs, the function that serves its node on CPU (its CPU twin, padded to the
node's fixed output shapes), and where its export stand-in lives.

Readers: export (segtrt.export.plugin_nodes types and validates every node it
writes), the ONNX Runtime backend (serves trt-flavour nodes) and the TensorRT
plugin checks. No torch here: the stand-ins are named, not imported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from segtrt import SegtrtError

PLUGIN_VERSION = "1"
# The TensorRT plugin library (libsegtrt_plugins.so): this variable, else the CMake build output in the checkout.
PLUGIN_LIBRARY_ENV = "SEGTRT_PLUGIN_LIB"
# ONNX attribute types a plugin field can have (TensorRT's parser maps each to one PluginField type).
ATTRIBUTE_TYPES = ("INT", "INTS", "FLOAT", "STRING")


@dataclass(frozen=True)
class Attribute:
    name: str
    onnx_type: str  # one of ATTRIBUTE_TYPES
    default: object


@dataclass(frozen=True)
class Plugin:
    """One TensorRT plugin as segtrt's exported graphs use it."""

    op_type: str
    attributes: tuple[Attribute, ...]
    inputs: tuple[str, ...]  # element types, "float" or "int32"; a trailing "float..." repeats (feature maps)
    outputs: tuple[str, ...]
    validate: Callable[..., None]  # validate(attribute values by name, number of node inputs): SegtrtError if bad
    serve: Callable  # serve(*node inputs as NumPy, **attributes) -> node outputs, via the CPU twin
    stand_in: str  # "module:Class" of the torch module export swaps in to write this node
    # An FP16 model (segtrt calibrate --precision fp16) feeds these float inputs in FP16 (a trailing "float..."
    # input's index stands for all its repeats) and gets these float outputs in FP16 back; every other float
    # input stays FP32 (rois, scores: coordinates and thresholds need it). See plugins/*/README.md type tables.
    half_inputs: tuple[int, ...] = ()
    half_outputs: tuple[int, ...] = ()
    version: str = PLUGIN_VERSION

    def takes_half(self, index: int) -> bool:
        """Whether input `index` of a node is fed FP16 in an FP16 model (see half_inputs)."""
        last = len(self.inputs) - 1
        return (min(index, last) if self.inputs[last].endswith("...") else index) in self.half_inputs

    def defaults(self) -> dict:
        return {attribute.name: attribute.default for attribute in self.attributes}

    def resolve(self, values: dict) -> dict:
        """Attribute values with defaults filled in; an unknown name is an error."""
        unknown = sorted(set(values) - {attribute.name for attribute in self.attributes})
        if unknown:
            raise SegtrtError(
                f"{self.op_type} has no attribute(s) {', '.join(unknown)}; its attributes are "
                f"{', '.join(a.name for a in self.attributes)} (plugins/README.md)"
            )
        return {**self.defaults(), **values}


def _validate_multilevel_roi_align(values: dict, num_inputs: int) -> None:
    from segtrt.ops._native import validate_multilevel_roi_align_attributes

    validate_multilevel_roi_align_attributes(
        (values["output_height"], values["output_width"]), values["feature_strides"], values["sampling_ratio"],
        values["aligned"], values["mode"], values["canonical_scale"], values["canonical_level"],
        num_feature_maps=num_inputs - 1,
    )


def _serve_multilevel_roi_align(rois, *features, output_height, output_width, feature_strides, sampling_ratio,
                                aligned, mode, canonical_scale, canonical_level):
    from segtrt.ops.roi_align import multilevel_roi_align

    return multilevel_roi_align(
        list(features), rois, strides=list(feature_strides), output_size=(output_height, output_width),
        sampling_ratio=sampling_ratio, aligned=bool(aligned), mode=mode, canonical_scale=canonical_scale,
        canonical_level=canonical_level,
    )


def _validate_matrix_nms(values: dict, num_inputs: int) -> None:
    from segtrt.ops._native import validate_matrix_nms_attributes

    if num_inputs != 3:
        raise SegtrtError(f"MatrixNMS takes 3 inputs (masks, scores, labels), the node has {num_inputs}")
    validate_matrix_nms_attributes(
        values["kernel"], values["sigma"], values["mask_threshold"], values["nms_pre"], values["max_num"],
        values["filter_thr"],
    )


def _serve_matrix_nms(masks, scores, labels, kernel, sigma, mask_threshold, nms_pre, max_num, filter_thr):
    """Per image: binarise, run the twin, pad to max_num, as the plugin does.

    masks [B, N, h, w], scores [B, N], labels int32 [B, N] -> (count int32 [B], keep int32 [B, M] -1 padded,
    scores float32 [B, M] 0 padded, labels int32 [B, M] -1 padded), M = max_num.
    """
    from segtrt.ops.matrix_nms import matrix_nms

    batch = masks.shape[0]
    count = np.zeros(batch, np.int32)
    keep = np.full((batch, max_num), -1, np.int32)
    kept_scores = np.zeros((batch, max_num), np.float32)
    kept_labels = np.full((batch, max_num), -1, np.int32)
    for image in range(batch):
        image_scores, image_labels, image_keep = matrix_nms(
            masks[image] > mask_threshold, scores[image], labels[image], kernel=kernel, sigma=sigma,
            nms_pre=nms_pre, max_num=max_num, filter_thr=filter_thr,
        )
        n = len(image_keep)
        count[image] = n
        keep[image, :n], kept_scores[image, :n], kept_labels[image, :n] = image_keep, image_scores, image_labels
    return count, keep, kept_scores, kept_labels


PLUGINS: dict[str, Plugin] = {
    plugin.op_type: plugin
    for plugin in (
        Plugin(
            op_type="MultilevelRoIAlign",
            attributes=(
                Attribute("output_height", "INT", 7),
                Attribute("output_width", "INT", 7),
                Attribute("feature_strides", "INTS", (4, 8, 16, 32)),
                Attribute("sampling_ratio", "INT", 0),
                Attribute("aligned", "INT", 1),
                Attribute("mode", "STRING", "avg"),
                Attribute("canonical_scale", "INT", 224),
                Attribute("canonical_level", "INT", 4),
            ),
            inputs=("float", "float..."),  # rois [B, R, 4], then one feature map per stride
            outputs=("float",),
            validate=_validate_multilevel_roi_align,
            serve=_serve_multilevel_roi_align,
            stand_in="segtrt.export.plugin_nodes:PluginMultilevelRoIAlign",
            half_inputs=(1,),  # the feature maps; the rois stay FP32
            half_outputs=(0,),  # pooled features: the maps' type
        ),
        Plugin(
            op_type="MatrixNMS",
            attributes=(
                Attribute("kernel", "STRING", "gaussian"),
                Attribute("sigma", "FLOAT", 2.0),
                Attribute("mask_threshold", "FLOAT", 0.5),
                Attribute("nms_pre", "INT", -1),
                Attribute("max_num", "INT", 100),
                Attribute("filter_thr", "FLOAT", -1.0),
            ),
            inputs=("float", "float", "int32"),  # masks [B, N, h, w], scores [B, N], labels [B, N]
            outputs=("int32", "int32", "float", "int32"),  # count, keep, scores, labels
            validate=_validate_matrix_nms,
            serve=_serve_matrix_nms,
            stand_in="segtrt.export.plugin_nodes:PluginMatrixNMS",
            half_inputs=(0,),  # the masks (binarised inside); scores stay FP32, and so do the decayed scores
        ),
    )
}


def plugin(op_type: str) -> Plugin:
    """The registry entry of a plugin node's op_type, or SegtrtError naming the ones segtrt has."""
    if op_type not in PLUGINS:
        raise SegtrtError(f"unknown segtrt plugin {op_type!r}; segtrt's plugins are {', '.join(PLUGINS)}")
    return PLUGINS[op_type]


def default_plugin_library() -> Path:
    """Where segtrt looks for its TensorRT plugin library unless told (the file need not exist)."""
    return Path(os.environ.get(PLUGIN_LIBRARY_ENV, Path(__file__).parents[3] / "build" / "libsegtrt_plugins.so"))
