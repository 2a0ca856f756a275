"""int8-cpu: the INT8 format ONNX Runtime runs fast on a CPU: u8 activations, s8 per-channel weights, QDQ.

ONNX Runtime fuses DequantizeLinear -> Conv -> QuantizeLinear into QLinearConv (and MatMul into MatMulInteger
kernels) on x86 with VNNI; with u8 activations MLAS takes its fast u8 x s8 path. Measured here on a small conv
net (DESIGN.md, 2026-12-01): 3.2x FP32 at 1 thread, where TensorRT's symmetric s8/s8 Q/DQ ran 1.05x. The zero
points are not 0, so this file is for ONNX Runtime on CPU, not for TensorRT (whose check refuses u8).

No torch here.
"""

from __future__ import annotations

from segtrt.calibration.int8 import drop_unused_initializers, quantize_qdq
from segtrt.calibration.layers import OUTPUT_CHANNEL_AXIS, layers

# Besides the layers: ops ONNX Runtime runs on u8 directly (QLinearAdd, QLinearConcat, u8 pooling and resizing),
# so a chain of them stays in u8 instead of dequantizing between every pair of convolutions; on the feature path
# only (segtrt.calibration.fp16.feature_path): a Concat of box coordinates in u8 cost Mask R-CNN 0.057 mask AP.
CPU_CHAIN_OPS = ("Add", "Relu", "MaxPool", "Resize", "Concat")

CPU_OPTIONS = {
    "ActivationSymmetric": False,
    "WeightSymmetric": True,
    "QDQOpTypePerChannelSupportToAxis": OUTPUT_CHANNEL_AXIS,
}


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
