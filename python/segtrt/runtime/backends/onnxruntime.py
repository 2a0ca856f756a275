"""The ONNX Runtime backend: an exported segtrt ONNX file, either flavour.

    backend = OnnxRuntimeBackend("model.trt.onnx")          # CPU
    outputs = backend(images)   # {"num_detections", "boxes", "scores", "labels", "masks"}

The portable flavour is plain ONNX. The trt flavour holds our plugin nodes
(domain "segtrt"); ONNX Runtime gets an in-memory COPY of the graph (never the
file TensorRT gets) with them rewritten for the chosen execution provider:
- CPU and CUDA: onnxruntime-extensions' Python custom-op domain, where the
  plugin registry's serving functions (the plugins' CPU twins: the same C++ math
  as the CUDA kernels) run them. Python custom ops take int64 / float / string
  attributes only, so list attributes travel as comma-separated strings.
- TensorRT: the domain `trt.plugins`, where ONNX Runtime's TensorRT execution
  provider finds plugins registered with TensorRT; our plugin library is loaded
  through its `trt_extra_plugin_lib_paths` option.

No torch here.
"""

from __future__ import annotations

import collections
import functools
import json
import tempfile
from pathlib import Path

import numpy as np

from segtrt import SegtrtError
from segtrt.ops.registry import PLUGIN_LIBRARY_ENV, default_plugin_library, plugin
from segtrt.runtime.backends import Backend
from segtrt.runtime.backends.integer_counts import count_in_integers
from segtrt.runtime.model_info import INPUT_NAME, OUTPUT_NAMES, PLUGIN_DOMAIN, read_info

CONTRIB_DOMAIN = "ai.onnx.contrib"  # onnxruntime-extensions' domain for Python custom ops
TRT_PLUGIN_DOMAIN = "trt.plugins"  # where ONNX Runtime's TensorRT provider looks up TensorRT plugins
# segtrt --provider name -> ONNX Runtime provider (the names are segtrt.runtime.backends.PROVIDERS)
ORT_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


class OnnxRuntimeBackend(Backend):
    """A segtrt ONNX file in ONNX Runtime on one execution provider (see ORT_PROVIDERS)."""

    def __init__(self, path, provider: str = "cpu", threads: int | None = None):
        self.path = Path(path)
        self.info = read_info(path)
        self.provider = provider
        self.name = f"ort-{provider}-{self.info.flavour}" if provider != "cpu" else f"ort-{self.info.flavour}"
        self.session = create_session(path, provider, threads)
        batch = self.session.get_inputs()[0].shape[0]
        self.batch_size = batch if isinstance(batch, int) else None

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        images = np.ascontiguousarray(images, dtype=np.float32)
        return dict(zip(OUTPUT_NAMES, self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: images})))


def create_session(path, provider: str = "cpu", threads: int | None = None, options=None):
    """An onnxruntime.InferenceSession for a segtrt ONNX file (either flavour) on `provider`.

    `options`: onnxruntime.SessionOptions to start from (default _session_options(threads))."""
    import onnx
    import onnxruntime

    info = read_info(path)
    if provider not in ORT_PROVIDERS:
        raise SegtrtError(f"unknown provider {provider!r}; choose one of {', '.join(ORT_PROVIDERS)}")
    available = onnxruntime.get_available_providers()
    if ORT_PROVIDERS[provider] not in available:
        raise SegtrtError(
            f"this ONNX Runtime has no {ORT_PROVIDERS[provider]} (it has {', '.join(available)}); install "
            "onnxruntime-gpu with CUDA (and TensorRT for 'tensorrt') on a GPU machine, or use --provider cpu"
        )
    options = options or _session_options(threads)
    providers = [ORT_PROVIDERS[provider]]
    model = onnx.load(str(path))
    if info.flavour == "trt":
        if provider == "tensorrt":
            rewrite_plugin_nodes(model, TRT_PLUGIN_DOMAIN)
            providers = [(ORT_PROVIDERS[provider], {"trt_extra_plugin_lib_paths": str(_plugin_library())})]
        else:
            rewrite_plugin_nodes(model, CONTRIB_DOMAIN)
            options.register_custom_ops_library(_extensions_library())
    if provider == "cpu":
        count_in_integers(model)
    return onnxruntime.InferenceSession(model.SerializeToString(), options, providers=providers)


def _session_options(threads: int | None):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # The CPU arena keeps what a run allocated for the next: without it every large intermediate is a fresh
    # mmap whose pages fault in again on each run, and this VM spends 5 of 12 s of an 800x1216 SOLOv2 run
    # in the kernel for its ~800k faults (6.8 s with the arena). The memory pattern is what grew: planned
    # from the first run, its one block for all intermediates comes on top of the arena's chunks (peak RSS
    # 4.3 GB after one run, 7.5 GB after two); without it the arena alone stays at 4.3 GB over 100 runs
    # (benchmarks/full_size.py --memory 100).
    options.enable_cpu_mem_arena = True
    options.enable_mem_pattern = False
    if threads:
        options.intra_op_num_threads = threads
    return options


def kernel_times(path, inputs, threads: int | None = 1) -> collections.Counter:
    """Where ONNX Runtime spends a portable-flavour file's time: total ms per (node name, op type) over the
    model inputs [B, 3, H, W] in `inputs`, run one after another on the CPU after one untimed run of the
    first (its profiler's kernel events).

    Portable files only: the trt flavour's plugin nodes run as Python ops, which would dominate."""
    import onnxruntime

    if read_info(path).flavour != "portable":
        raise SegtrtError(f"{path} is not a portable-flavour file: profile the portable export")
    options = _session_options(threads)
    options.enable_profiling = True
    times: collections.Counter = collections.Counter()
    with tempfile.TemporaryDirectory() as folder:
        options.profile_file_prefix = f"{folder}/profile"
        session = create_session(path, "cpu", threads, options)
        inputs = list(inputs)
        runs = [inputs[0], *inputs]
        for images in runs:
            session.run(None, {INPUT_NAME: np.ascontiguousarray(images, dtype=np.float32)})
        events = json.loads(Path(session.end_profiling()).read_text())
    kernels = sorted((e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")),
                     key=lambda e: e["ts"])
    # the first run is a warm-up, not counted: it grows the arena and faults in every page it touches
    for event in kernels[len(kernels) // len(runs):]:
        times[event["name"].removesuffix("_kernel_time"), event["args"]["op_name"]] += event["dur"] / 1000
    return times


def rewrite_plugin_nodes(model, domain: str = CONTRIB_DOMAIN) -> int:
    """Move an onnx.ModelProto's plugin nodes (in place) to `domain`; returns how many were rewritten.

    For the Python custom-op domain each op type gets its CPU serving function
    registered; MultilevelRoIAlign becomes MultilevelRoIAlign_L<levels> (a Python op
    has a fixed number of inputs) and INTS attributes become comma-separated STRINGs.
    """
    import onnx

    if domain == CONTRIB_DOMAIN:
        _serve_half_plugin_io_in_float32(model)
    rewritten = 0
    for node in model.graph.node:
        if node.domain != PLUGIN_DOMAIN:
            continue
        entry = plugin(node.op_type)
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        attributes.pop("plugin_version", None)
        values = entry.resolve({k: v.decode() if isinstance(v, bytes) else v for k, v in attributes.items()})
        entry.validate(values, len(node.input))
        node.domain = domain
        if domain == CONTRIB_DOMAIN:
            node.op_type = _register_python_op(entry.op_type, len(node.input))
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.INTS:
                    text = ",".join(str(v) for v in attribute.ints)
                    attribute.ClearField("ints")
                    attribute.type, attribute.s = onnx.AttributeProto.STRING, text.encode()
        rewritten += 1
    if rewritten and not any(entry.domain == domain for entry in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid(domain, 1))
    return rewritten


def _serve_half_plugin_io_in_float32(model) -> None:
    """Cast the FP16 inputs of plugin nodes to float32 and their FP16 outputs back (in place): Python custom ops
    take float32, while an FP16 model (segtrt calibrate --precision fp16) feeds our plugins FP16 feature maps
    and masks, as TensorRT runs them. The types come from the value_info the FP16 conversion records."""
    import onnx

    half = {v.name for v in model.graph.value_info if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16}
    if not half:
        return
    nodes, cast = [], set()
    for node in model.graph.node:
        after = []
        if node.domain == PLUGIN_DOMAIN:
            for index, name in enumerate(node.input):
                if name in half:
                    node.input[index] = f"{name}/float32"
                    if name not in cast:  # one Cast per tensor, however many plugins read it
                        cast.add(name)
                        nodes.append(onnx.helper.make_node("Cast", [name], [node.input[index]],
                                                           to=onnx.TensorProto.FLOAT))
            for index, name in enumerate(node.output):
                if name in half:
                    node.output[index] = f"{name}/float32"
                    after.append(onnx.helper.make_node("Cast", [node.output[index]], [name],
                                                       to=onnx.TensorProto.FLOAT16))
        nodes += [node, *after]
    del model.graph.node[:]
    model.graph.node.extend(nodes)


@functools.cache
def _register_python_op(op_type: str, num_inputs: int) -> str:
    """Register the registry's serving function of `op_type` for nodes with `num_inputs` inputs."""
    from onnxruntime_extensions import PyCustomOpDef, onnx_op

    entry = plugin(op_type)
    element = {"float": PyCustomOpDef.dt_float, "int32": PyCustomOpDef.dt_int32}
    attribute_type = {"INT": PyCustomOpDef.dt_int64, "INTS": PyCustomOpDef.dt_string,
                      "FLOAT": PyCustomOpDef.dt_float, "STRING": PyCustomOpDef.dt_string}
    inputs, registered_name = list(entry.inputs), op_type
    if inputs[-1].endswith("..."):  # the last input repeats (one per feature map): one Python op per count
        inputs = inputs[:-1] + [inputs[-1].removesuffix("...")] * (num_inputs - len(inputs) + 1)
        registered_name = f"{op_type}_L{num_inputs - 1}"
    list_names = {a.name for a in entry.attributes if a.onnx_type == "INTS"}

    @onnx_op(op_type=registered_name, inputs=[element[t] for t in inputs], outputs=[element[t] for t in entry.outputs],
             attrs={**{a.name: attribute_type[a.onnx_type] for a in entry.attributes},
                    "plugin_version": PyCustomOpDef.dt_string})
    def serve(*arrays, plugin_version, **attributes):
        for name in list_names:
            attributes[name] = [int(value) for value in attributes[name].split(",")]
        return entry.serve(*arrays, **attributes)

    return registered_name


def _extensions_library() -> str:
    try:
        from onnxruntime_extensions import get_library_path
    except ImportError:
        raise SegtrtError(
            "running the trt flavour in ONNX Runtime needs onnxruntime-extensions (pip install "
            "onnxruntime-extensions); or run the portable flavour"
        ) from None
    return get_library_path()


def _plugin_library() -> Path:
    path = default_plugin_library()
    if not path.is_file():
        raise SegtrtError(
            f"the TensorRT provider needs segtrt's plugin library, not found at {path}: build it with `make native` "
            f"on a machine with TensorRT (TENSORRT_ROOT) and/or set {PLUGIN_LIBRARY_ENV}"
        )
    return path
