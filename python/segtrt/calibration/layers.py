"""The layers calibration works on: nodes with a weight that TensorRT fuses INT8 Q/DQ into.

A layer is a Conv, ConvTranspose, MatMul or Gemm whose weight (input 1) is a constant initializer. The same op
with a computed weight (SOLOv2's dynamic convolution: mask kernels predicted per instance, multiplied with the
mask features) is not a layer: its "weights" have no calibration range worth the name, and its logits decide the
masks, so it stays FP32 in every variant (DESIGN.md: dynamic-conv logits need FP32).

No torch here.
"""

from __future__ import annotations

WEIGHTED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
# The per-output-channel axis of each layer's weight, as TensorRT quantizes it: Conv [O, I, kh, kw],
# ConvTranspose [I, O, kh, kw], Gemm with transB=1 [O, I] (torch Linear), MatMul [I, O].
OUTPUT_CHANNEL_AXIS = {"Conv": 0, "ConvTranspose": 1, "Gemm": 0, "MatMul": 1}


def layers(model) -> list:
    """The onnx.NodeProto of every layer (see the module doc), in graph order."""
    constants = {i.name for i in model.graph.initializer}
    return [n for n in model.graph.node
            if n.op_type in WEIGHTED_OPS and n.domain in ("", "ai.onnx") and len(n.input) > 1
            and n.input[1] in constants and _per_output_channel(n)]


def dynamic_layers(model) -> list:
    """Weighted ops whose weight is computed in the graph (never quantized, FP32 in the fp16 variant)."""
    constants = {i.name for i in model.graph.initializer}
    return [n for n in model.graph.node
            if n.op_type in WEIGHTED_OPS and n.domain in ("", "ai.onnx") and len(n.input) > 1
            and n.input[1] not in constants]


def _per_output_channel(node) -> bool:
    """Whether OUTPUT_CHANNEL_AXIS holds for this node (a Gemm must take its weight transposed, as torch exports)."""
    if node.op_type != "Gemm":
        return True
    return any(a.name == "transB" and a.i == 1 for a in node.attribute)
