"""FP16: a strongly typed FP16 graph with FP32 islands, for TensorRT 11 (which takes the types from the file).

Which nodes compute in FP16 follows from the graph, not from names:
- the feature path: nodes of HALF_OPS that read the image (through float tensors; Shape arithmetic is not the
  image) and whose output flows into a layer (segtrt.calibration.layers) or into a plugin input that takes FP16
  (segtrt.ops.registry half_inputs), plus the layers themselves. So backbone, FPN, heads and their convolutions
  run FP16;
- everything after the last layer of a branch stays FP32: logits, sigmoid/softmax, maskness, score thresholds,
  box decoding, NMS, the dynamic convolution of SOLOv2 (its weights are computed, so it is no layer) and the
  Matrix NMS scores. Community SOLOv2 ports lost their masks in FP16 on exactly these;
- ops outside HALF_OPS on the feature path are FP32 islands, cast in and out: InstanceNormalization (GroupNorm
  at opset 17), whose statistics overflow FP16 first, and any reduction;
- plugins take FP16 feature maps / masks and FP32 rois / scores, as their type tables say.

Graph inputs and outputs stay FLOAT: the output contract and every runtime feed and read float32, and TensorRT
casts at the edges for free. Weights of FP16 nodes are stored FP16 (half the file). Casts are explicit, as a
strongly typed network needs. The plugin nodes' input and output types are recorded in value_info, so that
ONNX Runtime (whose Python custom ops take float32) can cast around them in its in-memory copy.

No torch here.
"""

from __future__ import annotations

from segtrt import SegtrtError
from segtrt.calibration.layers import dynamic_layers, layers
from segtrt.ops.registry import plugin
from segtrt.runtime.model_info import PLUGIN_DOMAIN

FLOAT, FLOAT16 = 1, 10  # onnx.TensorProto element types
# Ops that compute in FP16 on the feature path: convolutions, pointwise arithmetic, pooling, resampling, layout.
HALF_OPS = frozenset({
    "Conv", "ConvTranspose", "Gemm", "MatMul", "Relu", "LeakyRelu", "Add", "Sub", "Mul", "Div", "MaxPool",
    "AveragePool", "GlobalAveragePool", "Resize", "Concat", "Reshape", "Transpose", "Flatten", "Slice", "Split",
    "Squeeze", "Unsqueeze", "Expand", "Gather", "Identity", "Pad", "Tile",
})
# Float inputs of HALF_OPS that keep their own type (Resize's roi and scales are float32 whatever the data is).
OWN_TYPE_INPUTS = {"Resize": (1, 2)}
NOT_IMAGE_OPS = ("Shape", "Size")  # their outputs describe a tensor, they are not its values


def to_fp16(model):
    """The FP16 onnx.ModelProto of an FP32 segtrt graph (a new model; `model` is not changed)."""
    import onnx

    model = _typed_copy(model)
    graph = model.graph
    types = _element_types(model)
    half = _feature_path(model, types)
    initializers = {i.name: i for i in graph.initializer}
    converted: dict[tuple[str, int], str] = {}  # (tensor, type) -> name of its copy in that type
    nodes = []

    def as_type(name: str, elem_type: int) -> str:
        if not name or types.get(name) not in (FLOAT, FLOAT16) or types[name] == elem_type:
            return name
        key = (name, elem_type)
        if key not in converted:
            new_name = f"{name}/{'fp16' if elem_type == FLOAT16 else 'fp32'}"
            if name in initializers:
                graph.initializer.append(_cast_initializer(initializers[name], new_name, elem_type))
            else:
                nodes.append(onnx.helper.make_node("Cast", [name], [new_name], to=elem_type,
                                                   name=f"{new_name}/Cast"))
            types[new_name] = elem_type
            converted[key] = new_name
        return converted[key]

    for node in graph.node:
        if node.domain == PLUGIN_DOMAIN:
            entry = plugin(node.op_type)
            for index, name in enumerate(node.input):
                node.input[index] = as_type(name, FLOAT16 if entry.takes_half(index) else FLOAT)
            for index, name in enumerate(node.output):
                if index in entry.half_outputs:
                    types[name] = FLOAT16
        elif node.output[0] in half:
            own = OWN_TYPE_INPUTS.get(node.op_type, ())
            for index, name in enumerate(node.input):
                if index not in own:
                    node.input[index] = as_type(name, FLOAT16)
            for name in node.output:
                if types.get(name) == FLOAT:
                    types[name] = FLOAT16
        else:
            for index, name in enumerate(node.input):
                if types.get(name) == FLOAT16:
                    node.input[index] = as_type(name, FLOAT)
            _refuse_half_outer_scope(node, types)
        nodes.append(node)

    del graph.node[:]
    graph.node.extend(nodes)
    for output in graph.output:
        if types.get(output.name) == FLOAT16:
            raise SegtrtError(f"graph output {output.name} would be FP16; the output contract is float32")
    used = {name for node in graph.node for name in node.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    _record_plugin_types(model, types)
    return model


def feature_path(model) -> set[str]:
    """The nodes on the feature path (see the module doc: the ones FP16 computes in FP16), by first output name.
    int8-cpu quantizes its chain ops there only, never post-processing such as box coordinates."""
    typed = _typed_copy(model)
    return _feature_path(typed, _element_types(typed))


def _typed_copy(model):
    """A copy of the model whose plugin outputs carry their registry types, so shape inference runs past them."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    del copy.graph.value_info[:]
    elem = {"float": FLOAT, "int32": onnx.TensorProto.INT32}
    for node in copy.graph.node:
        if node.domain == PLUGIN_DOMAIN:
            for name, kind in zip(node.output, plugin(node.op_type).outputs):
                copy.graph.value_info.append(onnx.helper.make_tensor_value_info(name, elem[kind], None))
    return copy


def _element_types(model) -> dict[str, int]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    values = (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)
    types = {v.name: v.type.tensor_type.elem_type for v in values}
    types.update({i.name: i.data_type for i in model.graph.initializer})
    for node in model.graph.node:
        if node.op_type == "Constant":
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if value is not None:
                types[node.output[0]] = value.data_type
    missing = [o for n in model.graph.node for o in n.output if o and o not in types]
    if missing:
        raise SegtrtError(f"cannot tell the element type of {len(missing)} tensor(s), e.g. {missing[0]!r}; "
                          "the FP16 conversion needs a graph ONNX shape inference types throughout")
    return types


def _feature_path(model, types) -> set[str]:
    """The nodes that compute in FP16 (see the module doc), by first output name (protobuf gives no stable ids)."""
    graph = model.graph
    image = {i.name for i in graph.input if types.get(i.name) == FLOAT}
    for node in graph.node:  # graph order is topological
        if node.op_type not in NOT_IMAGE_OPS and any(name in image for name in node.input):
            image.update(o for o in node.output if types.get(o) == FLOAT)
    producers = {o: node for node in graph.node for o in node.output}
    dynamic = {n.output[0] for n in dynamic_layers(model)}
    half = {n.output[0] for n in layers(model) if n.input[0] in image}
    pending = [n.input[0] for n in layers(model) if n.output[0] in half]
    for node in graph.node:
        if node.domain == PLUGIN_DOMAIN:
            entry = plugin(node.op_type)
            pending += [name for index, name in enumerate(node.input) if entry.takes_half(index)]
    seen = set()
    while pending:  # upstream from the layers and the FP16 plugin inputs, along float tensors of the image
        name = pending.pop()
        producer = producers.get(name)
        if name in seen or name not in image or producer is None or producer.domain == PLUGIN_DOMAIN:
            continue
        seen.add(name)
        if producer.op_type in HALF_OPS and producer.output[0] not in dynamic:
            half.add(producer.output[0])
        own = OWN_TYPE_INPUTS.get(producer.op_type, ())
        pending += [n for i, n in enumerate(producer.input) if i not in own]
    return half


def _cast_initializer(initializer, name: str, elem_type: int):
    import numpy as np
    from onnx import numpy_helper

    dtype = np.float16 if elem_type == FLOAT16 else np.float32
    return numpy_helper.from_array(numpy_helper.to_array(initializer).astype(dtype), name)


def _refuse_half_outer_scope(node, types) -> None:
    """A subgraph (If, Loop) reading an FP16 tensor of the outer graph would need casts inside it; none of our
    graphs does, so say so rather than write a file that mistypes it."""
    import onnx

    for attribute in node.attribute:
        if attribute.type != onnx.AttributeProto.GRAPH:
            continue
        local = {o for n in attribute.g.node for o in n.output} | {i.name for i in attribute.g.initializer}
        for inner in attribute.g.node:
            outer = [n for n in inner.input if n and n not in local and types.get(n) == FLOAT16]
            if outer:
                raise SegtrtError(f"{node.op_type} node {node.name!r} reads the FP16 tensor {outer[0]!r} in a "
                                  "subgraph; the FP16 conversion does not rewrite subgraphs")


def _record_plugin_types(model, types) -> None:
    import onnx

    del model.graph.value_info[:]
    for node in model.graph.node:
        if node.domain == PLUGIN_DOMAIN:
            for name in (*node.input, *node.output):
                if name:
                    model.graph.value_info.append(onnx.helper.make_tensor_value_info(name, types[name], None))
