"""PyTorch model -> ONNX, in two flavours, with the segtrt metadata.

- "trt": the graph TensorRT builds. Multi-level RoIAlign (Mask R-CNN) and Matrix NMS
  (SOLO/SOLOv2) are single custom nodes matching our plugins (see plugin_nodes).
- "portable": standard ONNX ops only (RoiAlign per level + select, Matrix NMS as
  tensor ops), for ONNX Runtime, OpenVINO or a TensorRT without our plugins.

Both follow the output contract of segtrt.runtime.model_info (README "Output contract").
SOLO/SOLOv2 masks are exported at the mask-feature stride 4 (frame "image");
Mask R-CNN's 28x28 masks stay box-relative (frame "box"); segtrt.runtime.postprocess
pastes both at the original image size.
"""

from __future__ import annotations

import dataclasses
import io
import time
from pathlib import Path

from segtrt import SegtrtError
from segtrt.runtime.model_info import FLAVOURS, INPUT_NAME, OUTPUT_NAMES, PLUGIN_DOMAIN, write_info
from segtrt.runtime.preprocess import Preprocess

OPSET = 17
BATCH_DIM = "batch"
SIZE_DIMS = ("height", "width")  # the input's dynamic dims (SOLO/SOLOv2 without a fixed size)
MASK_DIMS = ("mask_height", "mask_width")
# A dynamic-size graph is traced at this size (or input_size where smaller): non-square, so a swapped
# height/width shows, and small, since SOLO's every-cell candidates grow with the input.
TRACE_SIZE = (256, 320)


@dataclasses.dataclass
class ExportSummary:
    """What one export produced (one row of the CLI's summary table)."""

    path: Path
    flavour: str
    size_mb: float
    nodes: int
    nodes_before_simplify: int
    custom_nodes: int
    seconds: float
    simplified: str  # "onnxslim", "off" or why it was skipped


def export_onnx(
    model,
    path,
    flavour: str,
    class_names,
    preprocess: Preprocess,
    batch_size: int = 1,
    dynamic_batch: bool = False,
    simplify: bool = True,
    source: str = "",
) -> ExportSummary:
    """Export an eval-mode segtrt model to `path` (written atomically) and return a summary.

    The input is [batch_size or dynamic, 3, H, W] with (H, W) = preprocess.input_size, or dynamic H and W
    (multiples of the size divisor, up to input_size) for a SOLO/SOLOv2 pre-processing without fixed_size.
    Mask R-CNN always exports at a fixed size: such a pre-processing is recorded with fixed_size.
    `source` (the checkpoint's sha256) is recorded in the metadata, so a stale export can be told apart.
    Raises SegtrtError for a flavour, batch or size the model cannot take.
    """
    import onnx

    from segtrt.files import atomic_write

    if flavour not in FLAVOURS:
        raise SegtrtError(f"unknown flavour {flavour!r}; choose one of {', '.join(FLAVOURS)}")
    if batch_size < 1:
        raise SegtrtError(f"batch size must be at least 1, got {batch_size}")
    if dynamic_batch and model.kind == "maskrcnn":
        raise SegtrtError(
            "Mask R-CNN exports with a fixed batch (its per-image NMS is unrolled per image); use --batch N instead of "
            "--dynamic-batch"
        )
    from segtrt.models import check_normalisation

    check_normalisation(model, preprocess)
    if not preprocess.fixed_size and model.kind == "maskrcnn":
        preprocess = dataclasses.replace(preprocess, fixed_size=True)
    start = time.perf_counter()
    graph, info = trace_to_onnx(model, flavour, class_names, preprocess, batch_size, dynamic_batch)
    info = dataclasses.replace(info, source=source)
    nodes_before = len(graph.graph.node)
    simplified = "off"
    if simplify:
        graph, simplified = simplify_graph(graph, with_shape_inference=flavour != "trt")
    check_graph(graph)
    write_info(graph, info)
    data = graph.SerializeToString()
    atomic_write(path, lambda file: file.write(data))
    return ExportSummary(
        path=Path(path),
        flavour=flavour,
        size_mb=len(data) / 2**20,
        nodes=len(graph.graph.node),
        nodes_before_simplify=nodes_before,
        custom_nodes=sum(node.domain == PLUGIN_DOMAIN for node in graph.graph.node),
        seconds=time.perf_counter() - start,
        simplified=simplified,
    )


def trace_to_onnx(model, flavour, class_names, preprocess, batch_size=1, dynamic_batch=False):
    """(onnx.ModelProto with complete output shapes, ModelInfo) of the model's deployable forward."""
    import contextlib

    import onnx
    import torch

    from segtrt.export.plugin_nodes import plugin_nodes
    from segtrt.models.backend import model_info

    dynamic_size = not preprocess.fixed_size
    height, width = (min(a, b) for a, b in zip(TRACE_SIZE, preprocess.input_size)) if dynamic_size \
        else preprocess.input_size
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(batch_size, 3, height, width, generator=generator) * 255
    model.eval()
    swap = plugin_nodes(model, dynamic_batch) if flavour == "trt" else contextlib.nullcontext()
    buffer = io.BytesIO()
    with swap, torch.no_grad():
        outputs = model(images)
        torch.onnx.export(
            model, (images,), buffer, dynamo=False, opset_version=OPSET,
            custom_opsets={PLUGIN_DOMAIN: 1} if flavour == "trt" else None,
            input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
            dynamic_axes=_dynamic_axes(dynamic_batch, dynamic_size),
        )
    graph = onnx.load_from_string(buffer.getvalue())
    batch_dim = BATCH_DIM if dynamic_batch else batch_size
    for value, output in zip(graph.graph.output, outputs):
        dims = [batch_dim, *output.shape[1:]]
        if dynamic_size and value.name == "masks":
            dims[2:] = MASK_DIMS
        _set_shape(value, dims)
    info = model_info(model, class_names, preprocess, flavour, dict(zip(OUTPUT_NAMES, outputs)))
    return graph, info


def _dynamic_axes(dynamic_batch: bool, dynamic_size: bool) -> dict | None:
    axes: dict = {}
    if dynamic_batch:
        axes = {name: {0: BATCH_DIM} for name in (INPUT_NAME, *OUTPUT_NAMES)}
    if dynamic_size:
        axes.setdefault(INPUT_NAME, {}).update({2: SIZE_DIMS[0], 3: SIZE_DIMS[1]})
        axes.setdefault("masks", {}).update({2: MASK_DIMS[0], 3: MASK_DIMS[1]})
    return axes or None


def check_graph(graph) -> None:
    """onnx.checker and strict shape inference, or SegtrtError with onnx's first line."""
    import onnx

    try:
        onnx.checker.check_model(graph)
        onnx.shape_inference.infer_shapes(graph, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        raise SegtrtError(f"the exported graph fails the ONNX checks: {str(error).strip().splitlines()[0]}") from None


def simplify_graph(graph, with_shape_inference: bool = True):
    """(graph simplified by onnxslim, what was done), or (graph unchanged, why not).

    The trt flavour is simplified without onnxslim's shape inference: with our custom
    nodes in the graph it folded SOLO's CoordConv constants to wrong values
    (onnxslim 0.1.98; found by the ORT parity test), while folding without it is right.
    """
    try:
        import onnxslim
    except ImportError:
        return graph, "skipped (onnxslim not installed)"
    try:
        slimmed = onnxslim.slim(graph, no_shape_infer=not with_shape_inference)
    except Exception as error:  # onnxslim raises anything; the unsimplified graph is still right
        return graph, f"skipped (onnxslim: {type(error).__name__})"
    del slimmed.metadata_props[:]  # write_info sets ours afterwards
    return slimmed, "onnxslim" if with_shape_inference else "onnxslim (no shape inference)"


def _set_shape(value, dims) -> None:
    """Set a graph input/output's shape to `dims` (ints, or strings for named dynamic dims)."""
    shape = value.type.tensor_type.shape
    shape.ClearField("dim")
    for size in dims:
        dim = shape.dim.add()
        if isinstance(size, str):
            dim.dim_param = size
        else:
            dim.dim_value = int(size)
