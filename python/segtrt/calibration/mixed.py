"""int8-mixed: TensorRT INT8 with the layers that hurt most left in float, until mask AP fits a budget.

1. Proxy, per layer, cheap: the relative error ||y_q - y|| / ||y|| of the layer's own output when only its input
   activation and its weights are quantized (as TensorRT would: symmetric INT8, per-channel weights), over the
   FP32 activations of a few calibration images. One FP32 run exposes every layer's input and output; each
   layer is then run alone in ONNX Runtime.
2. Confirmed by mask AP on held-out annotated images: the all-INT8 model first; while its mask AP drop against
   FP32 exceeds the budget, the most sensitive layers by proxy fall back (1, 2, 4, 8, ... of them), each step
   re-quantized from the same ranges and evaluated again. Fallen-back layers compute in FP32, the type of the
   graph around them (the fp16 conversion is a separate variant).

The result's sensitivity list, most sensitive first, is what ModelInfo.calibration["sensitivity"] holds:
    {"layer": node name, "proxy_error": float, "ap_drop": mask AP drop (FP32 minus this model) measured after
     this layer and all before it fell back, or None where no step ended on it, "fallback": bool}

No torch here.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segtrt import SegtrtError
from segtrt.calibration.int8 import quantize_for_tensorrt
from segtrt.calibration.layers import OUTPUT_CHANNEL_AXIS, layers
from segtrt.calibration.ranges import amax
from segtrt.runtime.model_info import read_info

INT8_MAX = 127
PROXY_IMAGES = 4  # calibration images the proxy runs on: it ranks layers, it does not measure accuracy


@dataclass
class MixedResult:
    model: object  # onnx.ModelProto
    sensitivity: list[dict]
    fp32_ap: float
    ap: float  # mask AP of `model` on the held-out images
    val_images: int

    @property
    def ap_drop(self) -> float:
        return self.fp32_ap - self.ap


def mixed_precision(model_path, ranges, images, val_data, val_ids, max_ap_drop: float,
                    threads: int | None = None) -> MixedResult:
    """The int8-mixed model of `model_path`: ranges from ranges.calibrate_ranges, `images` the calibration
    images (proxy), val_data / val_ids the held-out COCO set and image ids (AP)."""
    import onnx
    from tqdm import tqdm

    source = onnx.load(str(model_path))
    proxy = proxy_errors(source, ranges, images, threads)
    order = sorted(proxy, key=proxy.get, reverse=True)
    sensitivity = [{"layer": name, "proxy_error": proxy[name], "ap_drop": None, "fallback": False}
                   for name in order]
    fp32_ap = mask_ap(source, val_data, val_ids, threads, "AP fp32")
    count, steps = 0, _fallback_counts(len(order))
    with tqdm(total=len(steps), desc="sensitivity (AP)", unit="step") as bar:
        for count in steps:
            model = quantize_for_tensorrt(model_path, ranges, exclude=set(order[:count]))
            ap = mask_ap(model, val_data, val_ids, threads, None)
            if count:
                sensitivity[count - 1]["ap_drop"] = fp32_ap - ap
            bar.set_postfix(fallback=count, ap_drop=f"{fp32_ap - ap:.4f}")
            bar.update()
            if fp32_ap - ap <= max_ap_drop:
                break
    for entry in sensitivity[:count]:
        entry["fallback"] = True
    return MixedResult(model, sensitivity, fp32_ap, ap, len(val_ids))


def _fallback_counts(layer_count: int) -> list[int]:
    """0, 1, 2, 4, ... layers in float, ending with all of them (the FP32 model: always within budget)."""
    counts, count = [0], 1
    while count < layer_count:
        counts.append(count)
        count *= 2
    return counts + [layer_count]


def proxy_errors(model, ranges, images, threads=None) -> dict[str, float]:
    """{layer name: relative output error with only that layer quantized} over PROXY_IMAGES images."""
    import onnx
    from tqdm import tqdm

    from segtrt.runtime.model_info import INPUT_NAME

    chosen = [n for n in layers(model) if n.input[0] in ranges]
    if not chosen:
        raise SegtrtError("the model has no layer with a calibrated input; nothing to quantize")
    probed = onnx.ModelProto()
    probed.CopyFrom(model)
    known = {o.name for o in probed.graph.output}
    for name in dict.fromkeys(t for n in chosen for t in (n.input[0], n.output[0])):
        if name not in known:
            probed.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    names = [o.name for o in probed.graph.output]
    session = _session(probed, threads)
    info = read_info(model)
    batches = list(images.model_inputs(info.preprocess))[:PROXY_IMAGES]
    activations = [dict(zip(names, session.run(names, {INPUT_NAME: batch}))) for batch in batches]
    weights = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    errors = {}
    for node in tqdm(chosen, desc="sensitivity (proxy)", unit="layer"):
        input_amax = amax(ranges[node.input[0]])
        layer = _single_node_session(node, weights, model.opset_import, threads)
        quantized_weight = _fake_quantize(weights[node.input[1]], _weight_scale(node, weights[node.input[1]]))
        squared_error = squared_norm = 0.0
        for values in activations:
            x = _fake_quantize(values[node.input[0]], np.float32(max(input_amax, 1e-12) / INT8_MAX))
            y_q = layer.run(None, {"x": x, "w": quantized_weight})[0]
            y = values[node.output[0]]
            squared_error += float(np.sum((y_q - y) ** 2, dtype=np.float64))
            squared_norm += float(np.sum(y.astype(np.float64) ** 2))
        errors[node.name] = float(np.sqrt(squared_error / max(squared_norm, 1e-30)))
    return errors


def _fake_quantize(values: np.ndarray, scale) -> np.ndarray:
    return (np.clip(np.round(values / scale), -INT8_MAX, INT8_MAX) * scale).astype(np.float32)


def _weight_scale(node, weight: np.ndarray) -> np.ndarray:
    """Per-output-channel symmetric scale, shaped to broadcast over the weight."""
    axis = OUTPUT_CHANNEL_AXIS[node.op_type]
    other = tuple(i for i in range(weight.ndim) if i != axis)
    amax = np.max(np.abs(weight), axis=other, keepdims=True)
    return (np.maximum(amax, 1e-12) / INT8_MAX).astype(np.float32)


def _single_node_session(node, weights, opset_import, threads):
    """An ONNX Runtime session of one layer: inputs x (activation) and w (weight), its bias as a constant."""
    import onnx

    inputs = ["x", "w", *node.input[2:]]
    single = onnx.helper.make_node(node.op_type, inputs, ["y"], name=node.name)
    single.attribute.extend(node.attribute)
    graph = onnx.helper.make_graph(
        [single], "layer",
        [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in ("x", "w")],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(weights[n], n) for n in node.input[2:] if n])
    model = onnx.helper.make_model(graph, opset_imports=[o for o in opset_import if o.domain in ("", "ai.onnx")])
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _session(model, threads):
    """segtrt's ONNX Runtime session (plugin nodes served) of an in-memory segtrt model."""
    from segtrt.runtime.backends.onnxruntime import create_session

    with tempfile.TemporaryDirectory(prefix="segtrt-mixed.") as folder:
        path = Path(folder) / "model.onnx"
        path.write_bytes(model.SerializeToString())
        return create_session(path, "cpu", threads)


def mask_ap(model, data, image_ids, threads=None, progress: str | None = None) -> float:
    """Mask AP of an in-memory segtrt model on the given images of a COCO set, through the runtime's one loop."""
    from segtrt.data.coco import CocoDataset
    from segtrt.evaluation.coco import evaluate_predictions
    from segtrt.runtime.backends.onnxruntime import OnnxRuntimeBackend
    from segtrt.runtime.inference import predict_images

    dataset = data if isinstance(data, CocoDataset) else CocoDataset(data)
    with tempfile.TemporaryDirectory(prefix="segtrt-mixed.") as folder:
        path = Path(folder) / "model.onnx"
        path.write_bytes(model.SerializeToString())
        backend = OnnxRuntimeBackend(path, "cpu", threads)
    results = predict_images(backend, dataset.iter_images(image_ids), progress=progress, total=len(image_ids))
    predictions = [dict(result.instances, image_id=result.key) for result in results]
    return evaluate_predictions(dataset.coco_api(), predictions, dataset.category_ids)["segm"]["AP"]
