"""int8-cpu: the INT8 format ONNX Runtime runs fast on a CPU: u8 activations, s8 per-channel weights, QDQ.

ONNX Runtime fuses DequantizeLinear -> Conv -> QuantizeLinear into QLinearConv (and MatMul into MatMulInteger
kernels) on x86 with VNNI; with u8 activations MLAS takes its fast u8 x s8 path. Measured here on a small conv
net (DESIGN.md, 2026-12-01): 3.2x FP32 at 1 thread, where TensorRT's symmetric s8/s8 Q/DQ ran 1.05x. The zero
points are not 0, so this file is for ONNX Runtime on CPU, not for TensorRT (whose check refuses u8). Layers that
ONNX Runtime has no u8 kernel for are rewritten into ones it has first (convolve_upsampling_as_subpixels).

No torch here.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from segtrt.calibration.int8 import drop_unused_initializers, quantize_qdq
from segtrt.calibration.layers import OUTPUT_CHANNEL_AXIS, WEIGHTED_OPS, layers

# Besides the layers: ops ONNX Runtime runs on u8 directly (QLinearAdd, QLinearConcat, u8 pooling and resizing),
# so a chain of them stays in u8 instead of dequantizing between every pair of convolutions; on the feature path
# only (segtrt.calibration.fp16.feature_path): a Concat of box coordinates in u8 cost Mask R-CNN 0.057 mask AP.
CPU_CHAIN_OPS = ("Add", "Relu", "MaxPool", "Resize", "Concat")

CPU_OPTIONS = {
    "ActivationSymmetric": False,
    "WeightSymmetric": True,
    "QDQOpTypePerChannelSupportToAxis": OUTPUT_CHANNEL_AXIS,
}


def int8_cpu_model(model_path, images, threads: int | None = None):
    """The int8-cpu onnx.ModelProto of the FP32 file `model_path`, calibrated (min/max) on `images`
    (CalibrationImages): its upsampling ConvTransposes rewritten as 1x1 Convs (convolve_upsampling_as_subpixels),
    then every layer and feature-path chain op quantized."""
    import onnx

    from segtrt.calibration.ranges import calibrate_ranges

    model = onnx.load(str(model_path))
    convolve_upsampling_as_subpixels(model)
    with tempfile.TemporaryDirectory(prefix="segtrt-int8-cpu.") as folder:
        source = Path(folder) / "float.onnx"
        onnx.save(model, str(source))
        ranges = calibrate_ranges(source, images, "max", WEIGHTED_OPS + CPU_CHAIN_OPS, symmetric=False,
                                  threads=threads)
        return quantize_for_cpu(source, ranges)


def convolve_upsampling_as_subpixels(model) -> int:
    """Rewrite (in place) each ConvTranspose whose kernel equals its stride s (2-D, no padding, one group, constant
    weight: Mask R-CNN's 2x mask upsampling) as a 1x1 Conv to s*s blocks of its O channels, one block per
    sub-pixel, and a DepthToSpace (DCR) that interleaves the blocks; then move the DepthToSpace past the Relus and
    1x1 Convs that follow (such a Conv becomes a grouped one, a group per sub-pixel), so that it interleaves their
    output (Mask R-CNN: 6 class logits, not 64 channels). Returns how many ConvTransposes were rewritten.

    Why: ONNX Runtime has no u8 ConvTranspose, so the quantized one ran in float between a DQ and a Q (15.8 of the
    int8-cpu Mask R-CNN's 118 ms per image, bench_cpu_int8.py); as a 1x1 Conv it is a QLinearConv (1.9 ms). And
    ONNX Runtime runs DepthToSpace in float only (16.6 ms on the 64-channel 28x28 map of 100 RoIs), so it moves to
    the 6-class logits. Exact in real arithmetic (each output pixel is the same sum of the same products), and the
    quantized tensors hold the same values as before, merely in sub-pixel order."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    weights = {i.name: i for i in model.graph.initializer}
    graph_outputs = {o.name for o in model.graph.output}
    nodes = list(model.graph.node)

    def attribute(node, name, default):
        value = next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name), None)
        return default if value is None else value

    def ints(node, name, default: list[int]) -> list[int]:
        return [int(v) for v in attribute(node, name, default)]

    def constant(name) -> np.ndarray:
        return numpy_helper.to_array(weights[name])

    def add_weight(name, array):
        tensor = numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name)
        model.graph.initializer.append(tensor)
        weights[name] = tensor
        return name

    def sole_consumer(tensor):
        readers = [n for n in nodes if tensor in n.input]
        return readers[0] if len(readers) == 1 and tensor not in graph_outputs else None

    def has_constant_weights(node, op_type: str) -> bool:
        return (node.op_type == op_type and len(node.input) > 1 and node.input[1] in weights
                and (len(node.input) < 3 or node.input[2] in weights) and constant(node.input[1]).ndim == 4)

    def is_pointwise_conv(node) -> bool:
        return (has_constant_weights(node, "Conv") and constant(node.input[1]).shape[2:] == (1, 1)
                and attribute(node, "group", 1) == 1 and not any(ints(node, "pads", [0]))
                and set(ints(node, "strides", [1])) == {1} and set(ints(node, "dilations", [1])) == {1})

    def is_subpixel_upsampling(node) -> bool:
        if not has_constant_weights(node, "ConvTranspose"):
            return False
        kernel = list(constant(node.input[1]).shape[2:])
        return (kernel[0] == kernel[1] and ints(node, "strides", [1, 1]) == kernel
                and ints(node, "kernel_shape", kernel) == kernel
                and not any(ints(node, "pads", [0])) and not any(ints(node, "output_padding", [0]))
                and attribute(node, "output_shape", None) is None and attribute(node, "group", 1) == 1
                and set(ints(node, "dilations", [1])) == {1}
                and attribute(node, "auto_pad", b"NOTSET") in (b"NOTSET", b"VALID"))

    rewritten = 0
    for transpose in [n for n in nodes if is_subpixel_upsampling(n)]:
        weight = constant(transpose.input[1])  # [C, O, s, s]
        channels, outputs, block = weight.shape[0], weight.shape[1], weight.shape[2]
        name, out = transpose.name or transpose.output[0], transpose.output[0]
        # DCR: input channel (a * s + b) * O + o becomes output channel o at sub-pixel (a, b)
        inputs = [transpose.input[0], add_weight(f"{name}/subpixel_weight", weight.transpose(2, 3, 1, 0).reshape(
            block * block * outputs, channels, 1, 1))]
        if len(transpose.input) > 2:
            inputs.append(add_weight(f"{name}/subpixel_bias", np.tile(constant(transpose.input[2]), block * block)))
        conv = onnx.helper.make_node("Conv", inputs, [f"{out}/subpixels"], name=f"{name}/subpixels",
                                     kernel_shape=[1, 1])
        shuffle = onnx.helper.make_node("DepthToSpace", [conv.output[0]], [out], name=f"{name}/DepthToSpace",
                                        blocksize=block, mode="DCR")
        index = nodes.index(transpose)
        nodes[index:index + 1] = [conv, shuffle]
        rewritten += 1
        while (after := sole_consumer(shuffle.output[0])) is not None and (
                after.op_type == "Relu" or is_pointwise_conv(after)):
            # `after` reads the blocks, and the DepthToSpace interleaves its output instead
            after.input[0] = shuffle.input[0]
            if after.op_type == "Conv":
                groups, moved = block * block, after.name or after.output[0]
                after.input[1] = add_weight(f"{moved}/subpixel_weight",
                                            np.tile(constant(after.input[1]), (groups, 1, 1, 1)))
                if len(after.input) > 2:
                    after.input[2] = add_weight(f"{moved}/subpixel_bias", np.tile(constant(after.input[2]), groups))
                del after.attribute[:]
                after.attribute.extend([onnx.helper.make_attribute("kernel_shape", [1, 1]),
                                        onnx.helper.make_attribute("group", groups)])
            result = after.output[0]
            after.output[0] = f"{result}/subpixels"
            shuffle.input[0], shuffle.output[0] = after.output[0], result
            nodes.remove(shuffle)
            nodes.insert(nodes.index(after) + 1, shuffle)
    if rewritten:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        produced = {o for n in nodes for o in n.output}
        kept = [v for v in model.graph.value_info if v.name in produced]  # not the shapes of tensors now gone
        del model.graph.value_info[:]
        model.graph.value_info.extend(kept)
        drop_unused_initializers(model)
    return rewritten


def quantize_for_cpu(model_path, ranges):
    """The u8/s8 Q/DQ onnx.ModelProto of `model_path` from asymmetric activation `ranges`."""
    import onnx
    from onnxruntime.quantization import QuantType

    from segtrt.calibration.fp16 import feature_path

    source = onnx.load(str(model_path))
    features = feature_path(source)
    names = [n.name for n in layers(source)] + [n.name for n in source.graph.node
                                                if n.op_type in CPU_CHAIN_OPS and n.output[0] in features]
    model = quantize_qdq(model_path, ranges, names, QuantType.QUInt8, CPU_OPTIONS)
    drop_unused_initializers(model)
    return model
