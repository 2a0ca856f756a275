"""TensorRT INT8: explicit Q/DQ as TensorRT fuses it, from ONNX Runtime's quantizer with NVIDIA ModelOpt's options.

Q/DQ pairs go on the inputs of the layers only (segtrt.calibration.layers: Conv, ConvTranspose, MatMul, Gemm with
constant weights), where TensorRT fuses them into INT8 kernels; never on plugin inputs, never after every op.
The options are the ones ModelOpt passes to the same quantizer for TensorRT (DESIGN.md, facts of 2026-12-01):
symmetric activations and weights (zero point 0), per-output-channel weights (OUTPUT_CHANNEL_AXIS), biases left
in float (TensorRT quantizes them itself), a Q/DQ pair on each weight, a dedicated pair per consumer, and no
weight adjustment for an INT32 bias that TensorRT never sees.

    model = quantize_for_tensorrt("model.trt.onnx", ranges)          # an onnx.ModelProto with Q/DQ
    model = quantize_for_tensorrt("model.trt.onnx", ranges, exclude={"/fpn/Conv"})   # int8-mixed's fallback

No torch here.
"""

from __future__ import annotations

from segtrt.calibration.layers import OUTPUT_CHANNEL_AXIS, layers
from segtrt.calibration.ranges import quiet_onnxruntime_quantization

TENSORRT_OPTIONS = {
    "ActivationSymmetric": True,
    "WeightSymmetric": True,
    "QuantizeBias": False,
    "AddQDQPairToWeight": True,
    "DedicatedQDQPair": True,
    "ForceQuantizeNoInputCheck": True,
    "QDQDisableWeightAdjustForInt32Bias": True,
    "QDQOpTypePerChannelSupportToAxis": OUTPUT_CHANNEL_AXIS,
}


def quantize_for_tensorrt(model_path, ranges, exclude=()):
    """The Q/DQ onnx.ModelProto of `model_path` with activation `ranges` (ranges.calibrate_ranges); the layers
    named in `exclude` stay float."""
    import onnx
    from onnxruntime.quantization import QuantType

    names = [n.name for n in layers(onnx.load(str(model_path), load_external_data=False)) if n.name not in exclude]
    model = quantize_qdq(model_path, ranges, names, QuantType.QInt8, TENSORRT_OPTIONS)
    _keep_float_for_unquantized_consumers(model, set(names))
    return model


def quantize_qdq(model_path, ranges, names, activation_type, extra_options: dict):
    """ONNX Runtime's quantize_static (QDQ, s8 per-channel weights) of the nodes `names` of `model_path`, with
    the activation ranges given instead of recomputed, as an onnx.ModelProto (metadata as in the source)."""
    import tempfile
    from pathlib import Path

    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    with tempfile.TemporaryDirectory(prefix="segtrt-quantize.") as folder:
        cache, out = Path(folder) / "ranges.json", Path(folder) / "quantized.onnx"
        save_tensors_data(ranges, cache)
        if names:
            with quiet_onnxruntime_quantization():
                quantize_static(str(model_path), str(out), None, quant_format=QuantFormat.QDQ,
                                nodes_to_quantize=names, per_channel=True, activation_type=activation_type,
                                weight_type=QuantType.QInt8, calibrate_method=ranges.calibration_method,
                                extra_options=dict(extra_options), calibration_cache_path=str(cache))
            model = onnx.load(str(out))
        else:  # everything excluded: the float model itself
            model = onnx.load(str(model_path))
    return model


def drop_unused_initializers(model) -> None:
    """Remove initializers no node reads (in place): the quantizer leaves scales of pairs it did not place."""
    used = {name for node in model.graph.node for name in node.input}
    kept = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)


def _keep_float_for_unquantized_consumers(model, quantized: set[str]) -> None:
    """Feed every node outside `quantized` its float tensor again, and drop the Q/DQ pairs left unused (in place).

    With DedicatedQDQPair, ONNX Runtime gives EVERY consumer of a quantized activation its own Q/DQ pair, plugin
    nodes and shape arithmetic included; TensorRT wants Q/DQ only where it fuses them, and our plugins take
    float inputs only.
    """
    producers = {output: node for node in model.graph.node for output in node.output}
    float_source = {}  # DequantizeLinear output -> the float tensor its QuantizeLinear read
    for node in model.graph.node:
        quantize = producers.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
        if quantize is not None and quantize.op_type == "QuantizeLinear":
            float_source[node.output[0]] = quantize.input[0]
    for node in model.graph.node:
        if node.name in quantized or node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for index, name in enumerate(node.input):
            if name in float_source:
                node.input[index] = float_source[name]
    outputs = {o.name for o in model.graph.output}
    while True:  # a DQ left without consumers, then its Q
        used = {name for node in model.graph.node for name in node.input} | outputs
        unused = [n for n in model.graph.node
                  if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.output[0] not in used]
        if not unused:
            drop_unused_initializers(model)
            return
        for node in unused:
            model.graph.node.remove(node)
