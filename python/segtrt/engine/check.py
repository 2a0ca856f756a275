"""`segtrt build --check`: will TensorRT's ONNX parser take this file? Answered without TensorRT.

Checks, each against a named source rather than a guess:
- the default-domain opset and every op type against onnx-tensorrt's support table (parser_support);
- the table's and DESIGN.md's constraints on our graphs: TopK sorted=1 with a constant K below 3840 (not one
  computed from a shape); no If around a NonMaxSuppression (torchvision's empty-input check: TensorRT's native
  NMS layer needs the plain node); If branches of equal rank with distinct output names (differently shaped
  branches are reported as a warning: the 10.1 table allows them, DESIGN.md asks export to avoid them);
- plugin nodes against the plugin registry (op type, plugin_version, attribute names, ONNX types and the
  creators' own rules);
- Q/DQ nodes as TensorRT takes them: INT8 or FP8 (INT4 for DequantizeLinear), zero point 0, scales constant,
  finite and positive; no plugin node input quantized (our plugins take FP16/FP32 only, plugins/README.md).
  `segtrt calibrate` runs the same check on every TensorRT INT8 file before writing it.

No TensorRT and no torch here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segtrt import SegtrtError
from segtrt.engine.parser_support import OPSET_RANGE, SOURCE, SUPPORTED_OPS, TOPK_MAX_K
from segtrt.ops.registry import ATTRIBUTE_TYPES, plugin
from segtrt.runtime.model_info import PLUGIN_DOMAIN, ModelInfo, read_info

DEFAULT_DOMAINS = ("", "ai.onnx")
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
# ONNX element type names of the quantized types TensorRT imports, per Q/DQ op (parser table rows).
QUANTIZED_TYPES = {
    "QuantizeLinear": ("INT8", "FLOAT8E4M3FN"),
    "DequantizeLinear": ("INT8", "FLOAT8E4M3FN", "INT4"),
}
# How far back a constant is followed, and ops whose output is not a function of known inputs.
MAX_CONSTANT_DEPTH = 24
NOT_FOLDABLE_OPS = ("RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial",
                    "Bernoulli", "NonZero", "NonMaxSuppression")
FLOAT16 = 10  # onnx.TensorProto.FLOAT16, spelled out so that importing this module does not load onnx


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # ONNX element type name, e.g. FLOAT
    shape: tuple  # ints, or str for a named dynamic dimension, None for an unnamed one


@dataclass
class CheckedModel:
    """What the check learned about a buildable file: enough to plan the build."""

    path: Path
    info: ModelInfo
    opset: int
    inputs: tuple[TensorSpec, ...]
    precision: str  # fp32, fp16, int8 or fp8, read from the graph's types and Q/DQ nodes
    plugin_nodes: dict = field(default_factory=dict)  # op_type -> number of nodes
    nodes: int = 0
    warnings: list[str] = field(default_factory=list)


def check_onnx(path) -> CheckedModel:
    """The CheckedModel of an exported segtrt ONNX file, or SegtrtError naming the first problem (and how many more)."""
    import onnx

    path = Path(path)
    info = read_info(path)
    return check_model(onnx.load(str(path)), path, info)


def check_model(model, path, info: ModelInfo | None = None) -> CheckedModel:
    """check_onnx of an onnx.ModelProto in memory (e.g. a calibrated model before it is written to `path`)."""
    info = info or read_info(model)
    checker = _Checker(model)
    checker.run()
    if checker.problems:
        more = len(checker.problems) - 1
        raise SegtrtError(f"{path} will not build in TensorRT: {checker.problems[0]}"
                          + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""))
    return CheckedModel(path=Path(path), info=info, opset=checker.opset, inputs=checker.inputs(),
                        precision=checker.precision(), plugin_nodes=checker.plugin_counts, nodes=checker.node_count,
                        warnings=checker.warnings)


def _node_label(node) -> str:
    if node.name:
        return f"{node.op_type} node {node.name!r}"
    return f"{node.op_type} node (unnamed, output {node.output[0]!r})"


def _type_name(elem_type: int) -> str:
    import onnx

    return onnx.TensorProto.DataType.Name(elem_type)


def _shape_of(value_info) -> tuple | None:
    tensor = value_info.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim)


def _evaluate(node, inputs: list, opset: int) -> list | None:
    """The outputs of one standard node over known inputs, by ONNX's reference implementation (None if it cannot)."""
    import onnx
    from onnx.reference import ReferenceEvaluator

    names = [f"in{i}" if name else "" for i, name in enumerate(node.input)]
    single = onnx.helper.make_node(node.op_type, names, [f"out{i}" for i in range(len(node.output))],
                                   domain=node.domain)
    single.attribute.extend(node.attribute)
    graph = onnx.helper.make_graph(
        [single], "fold",
        [onnx.helper.make_tensor_value_info(n, onnx.helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
         for n, v in zip(names, inputs) if n],
        [onnx.helper.make_tensor_value_info(f"out{i}", onnx.TensorProto.UNDEFINED, None)
         for i in range(len(node.output))])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
    try:
        return [np.asarray(v) for v in ReferenceEvaluator(model).run(None, {n: v for n, v in zip(names, inputs) if n})]
    except Exception:  # an op the reference cannot evaluate stays unknown, which the checks then report
        return None


class _Checker:
    def __init__(self, model):
        import onnx

        self.model = model
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.plugin_counts: dict[str, int] = {}
        self.node_count = 0
        self.qdq_types: set[str] = set()
        self.float16 = False
        self.opset = next((o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS), 0)
        try:  # data_prop: shapes that follow from shape arithmetic, as TensorRT's build-time shape analysis
            inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
        except Exception:  # inference is a help, not a requirement: what it cannot tell is treated as unknown
            inferred = model
        values = (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)
        self.value_types = {v.name: v.type.tensor_type.elem_type for v in values}
        self.static_shapes = {v.name: shape for v in values
                              if (shape := _shape_of(v)) is not None and all(isinstance(d, int) for d in shape)}
        self.constants: dict[str, np.ndarray] = {}
        self.unknown: set[str] = set()
        self.producers: dict[str, Any] = {}  # onnx.NodeProto (onnx is imported lazily)
        self._index(model.graph)

    def _index(self, graph) -> None:
        from onnx import numpy_helper

        for initializer in graph.initializer:
            self.constants[initializer.name] = numpy_helper.to_array(initializer)
            self.value_types[initializer.name] = initializer.data_type
        for node in graph.node:
            for output in node.output:
                self.producers[output] = node
            if node.op_type == "Constant" and node.domain in DEFAULT_DOMAINS:
                value = next((a.t for a in node.attribute if a.name == "value"), None)
                if value is not None:
                    self.constants[node.output[0]] = numpy_helper.to_array(value)
                    self.value_types[node.output[0]] = value.data_type
            for graph_attribute in self._subgraphs(node):
                self._index(graph_attribute)

    @staticmethod
    def _subgraphs(node):
        import onnx

        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield attribute.g
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                yield from attribute.graphs

    def constant(self, name: str, depth: int = 0) -> np.ndarray | None:
        """The value of a tensor known before the build, or None when it depends on the input data.

        Known: initializers, Constants, Shape of a tensor whose shape shape inference fixed, and any standard
        op over known values (evaluated with ONNX's reference implementation): the shape arithmetic TensorRT
        does at build time. The depth cap keeps the search to such short computations.
        """
        if name in self.constants:
            return self.constants[name]
        if name in self.unknown or depth > MAX_CONSTANT_DEPTH:
            return None
        node = self.producers.get(name)
        value = None
        if node is not None and node.domain in DEFAULT_DOMAINS and node.op_type not in NOT_FOLDABLE_OPS:
            if node.op_type == "Shape":
                shape = self.static_shapes.get(node.input[0])
                if shape is not None:
                    start = next((a.i for a in node.attribute if a.name == "start"), 0)
                    end = next((a.i for a in node.attribute if a.name == "end"), len(shape))
                    value = np.array(shape[start:end], np.int64)
            elif not any(True for _ in self._subgraphs(node)):
                inputs = [self.constant(i, depth + 1) if i else None for i in node.input]
                outputs = None
                if all(v is not None for v, i in zip(inputs, node.input) if i):
                    outputs = _evaluate(node, inputs, self.opset)
                if outputs is not None:
                    self.constants.update(zip(node.output, outputs))
                    value = self.constants.get(name)
        if value is None:
            self.unknown.add(name)
        else:
            self.constants[name] = value
        return value

    def run(self) -> None:
        low, high = OPSET_RANGE
        if not low <= self.opset <= high:
            self.problems.append(f"its ONNX opset is {self.opset}; TensorRT's parser takes opsets {low} to {high} "
                                 f"({SOURCE}): export with an opset in that range")
        self.float16 = any(i.data_type == FLOAT16 for i in self.model.graph.initializer)
        self._walk(self.model.graph)

    def _walk(self, graph) -> None:
        for node in graph.node:
            self.node_count += 1
            if node.domain == PLUGIN_DOMAIN:
                self._check_plugin(node)
            elif node.domain not in DEFAULT_DOMAINS:
                self.problems.append(f"{_node_label(node)} is in domain {node.domain!r}, which is neither standard "
                                     f"ONNX nor segtrt's plugins ({PLUGIN_DOMAIN!r}); TensorRT has no importer for it")
            elif node.op_type not in SUPPORTED_OPS:
                self.problems.append(f"{_node_label(node)}: op {node.op_type} is not supported by TensorRT's ONNX "
                                     f"parser ({SOURCE})")
            else:
                check = getattr(self, f"_check_{node.op_type}", None)
                if check:
                    check(node)
                if node.op_type == "Cast" and any(a.name == "to" and a.i == FLOAT16 for a in node.attribute):
                    self.float16 = True
            for subgraph in self._subgraphs(node):
                self._walk(subgraph)

    def _check_plugin(self, node) -> None:
        import onnx

        label = _node_label(node)
        try:
            entry = plugin(node.op_type)
        except SegtrtError as error:
            self.problems.append(f"{label}: {error}")
            return
        attributes = {a.name: a for a in node.attribute}
        version = attributes.pop("plugin_version", None)
        namespace = attributes.pop("plugin_namespace", None)
        if version is None or version.s.decode() != entry.version:
            found = "none" if version is None else repr(version.s.decode())
            self.problems.append(f"{label}: plugin_version is {found}, segtrt's plugin is version {entry.version!r}")
            return
        if namespace is not None and namespace.s.decode() != "":
            self.problems.append(f"{label}: plugin_namespace {namespace.s.decode()!r}, segtrt's plugins are "
                                 "registered in the empty namespace (plugins/README.md)")
            return
        schema = {a.name: a.onnx_type for a in entry.attributes}
        values = {}
        for name, attribute in attributes.items():
            onnx_type = onnx.AttributeProto.AttributeType.Name(attribute.type)
            if name in schema and onnx_type != schema[name]:
                self.problems.append(f"{label}: attribute {name} is {onnx_type}, the plugin's field is "
                                     f"{schema[name]} (one of {', '.join(ATTRIBUTE_TYPES)})")
                return
            value = onnx.helper.get_attribute_value(attribute)
            values[name] = value.decode() if isinstance(value, bytes) else value
        try:
            entry.validate(entry.resolve(values), len(node.input))
        except SegtrtError as error:
            self.problems.append(f"{label}: {error}")
            return
        quantized = [name for name in node.input if name and self._is_quantized(name)]
        if quantized:
            self.problems.append(f"{label}: input {quantized[0]!r} is quantized; segtrt's plugins take FP16 or "
                                 "FP32 inputs only: exclude the plugin's inputs from quantization")
            return
        self.plugin_counts[node.op_type] = self.plugin_counts.get(node.op_type, 0) + 1

    def _is_quantized(self, name: str) -> bool:
        """Whether a tensor is Q/DQ output or of an integer type a quantizer makes (INT8, UINT8, FP8, INT4)."""
        producer = self.producers.get(name)
        if producer is not None and producer.op_type in QDQ_OPS:
            return True
        return _type_name(self.value_types.get(name, 0)) in {*QUANTIZED_TYPES["DequantizeLinear"], "UINT8"}

    def _check_TopK(self, node) -> None:  # noqa: N802  (named after the op)
        label = _node_label(node)
        if any(a.name == "sorted" and a.i != 1 for a in node.attribute):
            self.problems.append(f"{label} has sorted=0; TensorRT's TopK needs sorted=1 ({SOURCE})")
        k = self.constant(node.input[1]) if len(node.input) > 1 else None
        if k is None:
            self.problems.append(f"{label} takes K from the computed tensor {node.input[1]!r}, so TensorRT's bound "
                                 f"K < {TOPK_MAX_K} cannot be checked before the build; export it with a constant K")
        elif self._reads_a_shape(node.input[1]):
            self.problems.append(f"{label} computes K={int(k.reshape(-1)[0])} from a tensor's shape; in an export "
                                 "whose input size is fixed K is a constant: export it as one (DESIGN.md; segtrt's "
                                 "RPN takes its level sizes as Python ints)")
        elif not 0 < int(k.reshape(-1)[0]) < TOPK_MAX_K:
            self.problems.append(f"{label} has K={int(k.reshape(-1)[0])}; TensorRT's TopK takes 0 < K < "
                                 f"{TOPK_MAX_K} ({SOURCE}): lower the candidate cap")

    def _reads_a_shape(self, name: str, depth: int = 0) -> bool:
        """Whether a tensor is computed (within MAX_CONSTANT_DEPTH nodes) from a Shape node."""
        node = self.producers.get(name)
        if node is None or depth > MAX_CONSTANT_DEPTH:
            return False
        return node.op_type == "Shape" or any(self._reads_a_shape(i, depth + 1) for i in node.input if i)

    def _nodes_within(self, graph):
        for node in graph.node:
            yield node
            for subgraph in self._subgraphs(node):
                yield from self._nodes_within(subgraph)

    def _check_If(self, node) -> None:  # noqa: N802
        label = _node_label(node)
        if any(inner.op_type == "NonMaxSuppression" for branch in self._subgraphs(node)
               for inner in self._nodes_within(branch)):
            self.problems.append(f"{label} wraps a NonMaxSuppression (torchvision's batched_nms checks for no boxes "
                                 "first); TensorRT imports only a plain NonMaxSuppression as its native NMS layer: "
                                 "export the NMS without that check (segtrt.models.box_ops.padded_batched_nms)")
            return
        branches = {a.name: a.g for a in node.attribute if a.name in ("then_branch", "else_branch")}
        then_outputs, else_outputs = (branches[n].output for n in ("then_branch", "else_branch"))
        for then_output, else_output in zip(then_outputs, else_outputs):
            then_shape, else_shape = _shape_of(then_output), _shape_of(else_output)
            if then_output.name == else_output.name:
                self.problems.append(f"{label}: both branches name their output {then_output.name!r}; TensorRT "
                                     f"needs distinct names ({SOURCE})")
            elif then_shape is not None and else_shape is not None and len(then_shape) != len(else_shape):
                self.problems.append(f"{label}: its branches give outputs of rank {len(then_shape)} and "
                                     f"{len(else_shape)}; TensorRT needs equal ranks ({SOURCE})")
            elif then_shape != else_shape:
                self.warnings.append(f"{label}: its branches give differently shaped outputs ({then_shape} vs "
                                     f"{else_shape}), a data-dependent conditional (DESIGN.md: export plain ops)")

    def _check_QuantizeLinear(self, node) -> None:  # noqa: N802
        self._check_qdq(node)

    def _check_DequantizeLinear(self, node) -> None:  # noqa: N802
        self._check_qdq(node)

    def _check_qdq(self, node) -> None:
        label = _node_label(node)
        scale = self.constant(node.input[1])
        if scale is None:
            self.problems.append(f"{label}: its scale {node.input[1]!r} is computed; TensorRT needs constant scales")
        elif not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
            self.problems.append(f"{label}: its scale {node.input[1]!r} has values that are not finite and positive "
                                 f"(min {float(np.min(scale))})")
        if len(node.input) > 2 and node.input[2]:
            zero_point_name = node.input[2]
            type_name = _type_name(self.value_types.get(zero_point_name, 0))
            zero_point = self.constant(zero_point_name)
            if zero_point is None:
                self.problems.append(f"{label}: its zero point {zero_point_name!r} is computed; TensorRT needs a "
                                     "constant zero point of 0")
            elif np.any(zero_point.astype(np.float32) != 0):
                self.problems.append(f"{label}: zero point {zero_point_name!r} is not 0 (asymmetric quantization); "
                                     "TensorRT takes symmetric Q/DQ only: quantize with ActivationSymmetric")
        elif node.op_type == "QuantizeLinear":
            type_name = "UINT8"  # ONNX's default when the zero point is absent
        else:
            type_name = _type_name(self.value_types.get(node.input[0], 0))
        if type_name not in QUANTIZED_TYPES[node.op_type]:
            self.problems.append(f"{label} quantizes to {type_name}; TensorRT's {node.op_type} takes "
                                 f"{', '.join(QUANTIZED_TYPES[node.op_type])} ({SOURCE})")
        else:
            self.qdq_types.add(type_name)

    def inputs(self) -> tuple[TensorSpec, ...]:
        initializers = {i.name for i in self.model.graph.initializer}
        return tuple(TensorSpec(v.name, _type_name(v.type.tensor_type.elem_type), _shape_of(v) or ())
                     for v in self.model.graph.input if v.name not in initializers)

    def precision(self) -> str:
        if "INT8" in self.qdq_types or "INT4" in self.qdq_types:
            return "int8"
        if self.qdq_types:
            return "fp8"
        return "fp16" if self.float16 else "fp32"
