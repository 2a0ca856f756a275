"""The trt flavour's custom nodes: our TensorRT plugins as single ONNX nodes.

At export, the model's `MultilevelRoIAlign` and `MatrixNMS` modules are swapped
(in place, for the duration of a `with plugin_nodes(model):` block) for modules
whose forward calls an autograd Function. The Function computes the real result
in torch, so tracing runs on, and its `symbolic` writes ONE node:

- op_type = the plugin's name, domain PLUGIN_DOMAIN ("segtrt"), `plugin_version` from
  the plugin registry and no `plugin_namespace` (the plugins are registered with namespace "");
- attributes named and typed exactly as the registry's schema of the plugin's fields
  (INT / INTS / FLOAT / STRING), because TensorRT's parser hands the creator only the
  fields it declares, and checked by the creator's own rules before the node is written;
- input and output dtypes of the plugin READMEs (labels, keep indices and counts
  INT32), with Casts around the node where the model works in int64.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from segtrt.models.matrix_nms import MatrixNMS
from segtrt.models.roi_align import MultilevelRoIAlign
from segtrt.ops.registry import plugin
from segtrt.runtime.model_info import PLUGIN_DOMAIN


def multilevel_roi_align_attributes(module: MultilevelRoIAlign) -> dict:
    """The MultilevelRoIAlign plugin's fields (plugins/multilevelRoIAlign/README.md) of a model module."""
    height, width = module.output_size
    return {
        "output_height": int(height),
        "output_width": int(width),
        "feature_strides": [int(stride) for stride in module.strides],
        "sampling_ratio": int(module.sampling_ratio),
        "aligned": int(bool(module.aligned)),
        "mode": "avg",
        "canonical_scale": int(round(module.canonical_scale)),
        "canonical_level": int(module.canonical_level),
    }


def _onnx_attributes(op_type: str, attributes: dict, num_inputs: int) -> dict:
    """Plugin fields -> torch's g.op keyword form (name_i / name_f / name_s), typed by the registry's schema.

    Raises SegtrtError for a name the plugin does not have or a value its creator would reject.
    """
    entry = plugin(op_type)
    values = entry.resolve(attributes)
    entry.validate(values, num_inputs)
    suffix = {"INT": "i", "INTS": "i", "FLOAT": "f", "STRING": "s"}
    convert = {"INT": int, "INTS": lambda v: [int(x) for x in v], "FLOAT": float, "STRING": str}
    named = {f"{a.name}_{suffix[a.onnx_type]}": convert[a.onnx_type](values[a.name]) for a in entry.attributes}
    named["plugin_version_s"] = entry.version
    return named


def _plugin_function(op_type: str, attributes: dict, compute, output_dtypes, dynamic_batch: bool):
    """An autograd Function: forward = compute(*inputs) in torch, symbolic = one plugin node.

    The node's outputs get `output_dtypes` and the shapes the traced forward produced
    (dim 0 left dynamic when `dynamic_batch`), so ONNX shape inference stays complete
    past the custom node. Built per module (a closure) because the exporter passes
    only tensors to `symbolic`.
    """
    traced_shapes = []

    class PluginNode(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *inputs):
            outputs = compute(*inputs)
            single = isinstance(outputs, torch.Tensor)
            traced_shapes[:] = [list(o.shape) for o in ((outputs,) if single else outputs)]
            return outputs

        @staticmethod
        def symbolic(g, *inputs):
            count = len(output_dtypes)
            named = _onnx_attributes(op_type, attributes, len(inputs))
            outputs = g.op(f"{PLUGIN_DOMAIN}::{op_type}", *inputs, outputs=count, **named)
            outputs = outputs if count > 1 else (outputs,)
            for value, dtype, shape in zip(outputs, output_dtypes, traced_shapes):
                sizes = [None if dynamic_batch else shape[0], *shape[1:]]
                value.setType(inputs[0].type().with_dtype(dtype).with_sizes(sizes))
            return outputs if count > 1 else outputs[0]

    return PluginNode


class PluginMultilevelRoIAlign(nn.Module):
    """Stands in for a MultilevelRoIAlign module during export: same call, one plugin node.

    Node: inputs (rois FP32 [B, R, 4], one map per stride), output [B, R, C, oh, ow].
    """

    op_type = "MultilevelRoIAlign"

    def __init__(self, original: MultilevelRoIAlign, dynamic_batch: bool = False):
        super().__init__()
        self.original = original
        # .forward, not __call__: the tracer must not see a module call inside the Function
        self.node = _plugin_function(
            self.op_type,
            multilevel_roi_align_attributes(original),
            lambda rois, *levels: original.forward(list(levels), rois),
            [torch.float32],
            dynamic_batch,
        )

    def forward(self, features: list[torch.Tensor], rois: torch.Tensor) -> torch.Tensor:
        levels = features[: len(self.original.strides)]  # the plugin takes exactly one map per stride
        return self.node.apply(rois.float(), *levels)


class PluginMatrixNMS(nn.Module):
    """Stands in for a MatrixNMS module during export: same call and dtypes, one plugin node.

    Node: inputs (masks [B, N, h, w], scores [B, N], labels INT32 [B, N]), outputs
    (count INT32 [B], keep INT32 [B, M], scores [B, M], labels INT32 [B, M]).
    """

    op_type = "MatrixNMS"

    def __init__(self, original: MatrixNMS, dynamic_batch: bool = False):
        super().__init__()
        self.original = original

        def compute(masks, scores, labels):
            count, keep, kept_scores, kept_labels = original.forward(masks, scores, labels)
            return count, keep.to(torch.int32), kept_scores, kept_labels.to(torch.int32)

        dtypes = [torch.int32, torch.int32, torch.float32, torch.int32]
        self.node = _plugin_function(self.op_type, original.attributes(), compute, dtypes, dynamic_batch)

    def forward(self, masks: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor):
        count, keep, kept_scores, kept_labels = self.node.apply(masks, scores, labels.to(torch.int32))
        return count, keep.to(torch.int64), kept_scores, kept_labels.to(labels.dtype)


_REPLACEMENTS = {MultilevelRoIAlign: PluginMultilevelRoIAlign, MatrixNMS: PluginMatrixNMS}


@contextlib.contextmanager
def plugin_nodes(model: nn.Module, dynamic_batch: bool = False):
    """Swap every MultilevelRoIAlign / MatrixNMS submodule of `model` for its plugin-node stand-in.

    Yields the number of modules swapped; the originals are back when the block ends.
    """
    swapped = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            replacement = _REPLACEMENTS.get(type(child))
            if replacement is not None:
                setattr(parent, name, replacement(child, dynamic_batch))
                swapped.append((parent, name, child))
    try:
        yield len(swapped)
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)
