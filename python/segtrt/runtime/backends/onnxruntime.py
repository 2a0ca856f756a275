"""Run an exported segtrt ONNX file in ONNX Runtime on CPU, either flavour.

    session = create_session("model.trt.onnx")
    outputs = run(session, images)   # {"num_detections", "boxes", "scores", "labels", "masks"}

The portable flavour is plain ONNX. The trt flavour holds our plugin nodes
(domain "segtrt"); for ONNX Runtime an in-memory COPY of the graph (never the
file TensorRT gets) moves them to onnxruntime-extensions' Python custom-op
domain, where they are served by the plugins' CPU twins (segtrt.ops: the same
C++ math as the CUDA kernels). Python custom ops take int64 / float / string
attributes only, so list attributes travel as comma-separated strings.

No torch here: the camera runtime and the evaluator import this.
"""

from __future__ import annotations

import functools

import numpy as np

from segtrt import SegtrtError
from segtrt.runtime.model_info import INPUT_NAME, OUTPUT_NAMES, PLUGIN_DOMAIN, read_info

CONTRIB_DOMAIN = "ai.onnx.contrib"  # onnxruntime-extensions' domain for Python custom ops


def create_session(path, threads: int | None = None):
    """An onnxruntime.InferenceSession for a segtrt ONNX file (either flavour), CPU provider."""
    import onnx
    import onnxruntime

    info = read_info(path)
    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    if info.flavour != "trt":
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    try:
        from onnxruntime_extensions import get_library_path
    except ImportError:
        raise SegtrtError(
            "running the trt flavour on CPU needs onnxruntime-extensions (pip install onnxruntime-extensions); "
            "or run the portable flavour"
        ) from None
    model = onnx.load(str(path))
    rewrite_plugin_nodes(model)
    options.register_custom_ops_library(get_library_path())
    return onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def run(session, images: np.ndarray) -> dict[str, np.ndarray]:
    """images float32 [B, 3, H, W] (letterboxed RGB 0..255) -> the contract's outputs by name."""
    images = np.ascontiguousarray(images, dtype=np.float32)
    return dict(zip(OUTPUT_NAMES, session.run(list(OUTPUT_NAMES), {INPUT_NAME: images})))


def rewrite_plugin_nodes(model) -> int:
    """Move plugin nodes of an onnx.ModelProto (in place) to the Python custom-op domain.

    MultilevelRoIAlign becomes MultilevelRoIAlign_L<levels> (a Python op has a fixed
    number of inputs); INTS attributes become comma-separated STRINGs. Returns the
    number of nodes rewritten.
    """
    import onnx

    rewritten = 0
    for node in model.graph.node:
        if node.domain != PLUGIN_DOMAIN:
            continue
        if node.op_type == "MultilevelRoIAlign":
            node.op_type = _register_multilevel_roi_align(len(node.input) - 1)
        elif node.op_type == "MatrixNMS":
            _register_matrix_nms()
        else:
            raise SegtrtError(f"unknown segtrt plugin node {node.op_type!r}; this segtrt serves MultilevelRoIAlign, MatrixNMS")
        node.domain = CONTRIB_DOMAIN
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.INTS:
                text = ",".join(str(v) for v in attribute.ints)
                attribute.ClearField("ints")
                attribute.type, attribute.s = onnx.AttributeProto.STRING, text.encode()
        rewritten += 1
    if rewritten and not any(entry.domain == CONTRIB_DOMAIN for entry in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid(CONTRIB_DOMAIN, 1))
    return rewritten


@functools.cache
def _register_multilevel_roi_align(levels: int) -> str:
    from onnxruntime_extensions import PyCustomOpDef, onnx_op

    from segtrt.ops import multilevel_roi_align

    op_type = f"MultilevelRoIAlign_L{levels}"
    integer, text = PyCustomOpDef.dt_int64, PyCustomOpDef.dt_string
    attrs = {
        "output_height": integer, "output_width": integer, "feature_strides": text, "sampling_ratio": integer,
        "aligned": integer, "mode": text, "canonical_scale": integer, "canonical_level": integer,
        "plugin_version": text,
    }

    @onnx_op(op_type=op_type, inputs=[PyCustomOpDef.dt_float] * (levels + 1), outputs=[PyCustomOpDef.dt_float], attrs=attrs)
    def serve(rois, *features, output_height, output_width, feature_strides, sampling_ratio, aligned, mode,
              canonical_scale, canonical_level, plugin_version):
        return multilevel_roi_align(
            list(features), rois, strides=[int(s) for s in feature_strides.split(",")],
            output_size=(output_height, output_width), sampling_ratio=sampling_ratio, aligned=bool(aligned),
            mode=mode, canonical_scale=canonical_scale, canonical_level=canonical_level,
        )

    return op_type


@functools.cache
def _register_matrix_nms() -> None:
    from onnxruntime_extensions import PyCustomOpDef, onnx_op

    f32, i32 = PyCustomOpDef.dt_float, PyCustomOpDef.dt_int32
    attrs = {
        "kernel": PyCustomOpDef.dt_string, "sigma": f32, "mask_threshold": f32, "nms_pre": PyCustomOpDef.dt_int64,
        "max_num": PyCustomOpDef.dt_int64, "filter_thr": f32, "plugin_version": PyCustomOpDef.dt_string,
    }

    @onnx_op(op_type="MatrixNMS", inputs=[f32, f32, i32], outputs=[i32, i32, f32, i32], attrs=attrs)
    def serve(masks, scores, labels, kernel, sigma, mask_threshold, nms_pre, max_num, filter_thr, plugin_version):
        return matrix_nms_padded(masks, scores, labels, kernel, sigma, mask_threshold, nms_pre, max_num, filter_thr)


def matrix_nms_padded(masks, scores, labels, kernel, sigma, mask_threshold, nms_pre, max_num, filter_thr):
    """The MatrixNMS plugin's contract on CPU: per image, binarise, run the twin, pad to max_num.

    masks [B, N, h, w], scores [B, N], labels int32 [B, N] -> (count int32 [B],
    keep int32 [B, M] -1 padded, scores float32 [B, M] 0 padded, labels int32 [B, M] -1 padded).
    """
    from segtrt.ops import matrix_nms

    batch = masks.shape[0]
    count = np.zeros(batch, np.int32)
    keep = np.full((batch, max_num), -1, np.int32)
    kept_scores = np.zeros((batch, max_num), np.float32)
    kept_labels = np.full((batch, max_num), -1, np.int32)
    for image in range(batch):
        image_scores, image_labels, image_keep = matrix_nms(
            masks[image] > mask_threshold, labels[image], scores[image], kernel=kernel, sigma=sigma,
            nms_pre=nms_pre, max_num=max_num, filter_thr=filter_thr,
        )
        n = len(image_keep)
        count[image] = n
        keep[image, :n], kept_scores[image, :n], kept_labels[image, :n] = image_keep, image_scores, image_labels
    return count, keep, kept_scores, kept_labels
