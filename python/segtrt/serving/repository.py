"""A Triton Inference Server model repository for a segtrt model (`segtrt triton-repo`).

    REPO/
      NAME/                 backend "python": segtrt's own runtime (decode, letterbox, model, paste masks)
        config.pbtxt          input  image  BYTES [1]             one encoded image (PNG, JPEG...) per request
        1/model.py            outputs num_detections INT32 [1], boxes FP32 [n, 4], scores FP32 [n],
        1/model.onnx|.plan            labels INT32 [n], masks BOOL [n, h, w]: original-image pixels
      NAME_onnx/            backend "onnxruntime": the portable ONNX, contract tensors in and out
        config.pbtxt, 1/model.onnx
      NAME_trt/             platform "tensorrt_plan": the engine (only when one is given)
        config.pbtxt, 1/model.plan (+ its sidecar), libsegtrt_plugins.so (the library it was built against)

The two raw models take letterboxed float images [3, H, W] and return the contract's fixed-shape outputs
(a client must pre- and post-process as segtrt.runtime does); the Python model takes images and returns
detections, with any backend segtrt runs (ONNX Runtime, a TensorRT engine). Every model has dynamic
batching where its batch dimension is dynamic, and an instance group. Versions: a model folder holds
numbered versions; writing version N into an existing repository adds it and leaves the others.
No torch, no Triton needed to write one.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from segtrt import SegtrtError
from segtrt.files import atomic_write, atomic_write_text, file_sha256
from segtrt.runtime.model_info import INPUT_NAME, ModelInfo

IMAGE_INPUT = "image"  # the Python model's input: one encoded image per request
DEVICES = {"cpu": "KIND_CPU", "gpu": "KIND_GPU"}
PLUGIN_LIBRARY_NAME = "libsegtrt_plugins.so"
MODEL_SCRIPT = Path(__file__).with_name("triton_model.py")


@dataclass(frozen=True)
class RepositoryOptions:
    name: str = "segtrt"
    max_batch: int = 8  # the Python model's (and a dynamic-batch raw model's default) largest batch
    instances: int = 1  # model instances per device (instance_group count)
    device: str = "cpu"  # where the ONNX and Python models run (DEVICES); an engine always runs on the GPU
    queue_delay_us: int = 2000  # how long the dynamic batcher waits to fill a batch
    version: int = 1
    threads: int | None = None  # CPU threads of each Python-model instance's ONNX Runtime session


@dataclass(frozen=True)
class Tensor:
    name: str
    data_type: str  # Triton's TYPE_* name
    dims: tuple[int, ...]  # without the batch dimension when the model batches; -1 for a variable size


def contract_outputs(info: ModelInfo) -> tuple[Tensor, ...]:
    """The detection contract's outputs (README "Output contract") per image, D rows."""
    rows, (mask_h, mask_w) = info.max_detections, info.mask_size
    return (Tensor("num_detections", "TYPE_INT32", ()), Tensor("boxes", "TYPE_FP32", (rows, 4)),
            Tensor("scores", "TYPE_FP32", (rows,)), Tensor("labels", "TYPE_INT32", (rows,)),
            Tensor("masks", "TYPE_FP32", (rows, mask_h, mask_w)))


def detection_outputs() -> tuple[Tensor, ...]:
    """The Python model's outputs per image: its n detections in original-image pixels (segtrt predict's)."""
    return (Tensor("num_detections", "TYPE_INT32", (1,)), Tensor("boxes", "TYPE_FP32", (-1, 4)),
            Tensor("scores", "TYPE_FP32", (-1,)), Tensor("labels", "TYPE_INT32", (-1,)),
            Tensor("masks", "TYPE_BOOL", (-1, -1, -1)))


def _quote(text: str) -> str:
    return json.dumps(text)  # protobuf text format takes JSON's escaped double-quoted strings


def _tensor_block(kind: str, tensors) -> list[str]:
    lines = [f"{kind} ["]
    for index, tensor in enumerate(tensors):
        dims = ", ".join(map(str, tensor.dims)) if tensor.dims else ""
        # A per-image scalar (num_detections) of a batching model: Triton's dims [1] reshaped to [] for the model.
        reshape = "\n    reshape: { shape: [ ] }" if not tensor.dims else ""
        dims = dims or "1"
        comma = "," if index < len(tensors) - 1 else ""
        lines.append(f"  {{\n    name: {_quote(tensor.name)}\n    data_type: {tensor.data_type}\n    dims: [ {dims} ]"
                     f"{reshape}\n  }}{comma}")
    lines.append("]")
    return lines


def model_config(name: str, platform_or_backend: tuple[str, str], max_batch: int, inputs, outputs, *,
                 device: str, instances: int, queue_delay_us: int | None, parameters: dict[str, str] | None = None,
                 ) -> str:
    """config.pbtxt text. max_batch 0: the model does not batch (dims are the whole shape, no batcher)."""
    key, value = platform_or_backend
    lines = [f"name: {_quote(name)}", f"{key}: {_quote(value)}", f"max_batch_size: {max_batch}",
             "version_policy: { latest: { num_versions: 1 } }"]
    lines += _tensor_block("input", inputs) + _tensor_block("output", outputs)
    if max_batch > 0 and queue_delay_us is not None:
        preferred = sorted({size for size in (max_batch // 2, max_batch) if size > 1})
        lines.append("dynamic_batching {")
        if preferred:
            lines.append(f"  preferred_batch_size: [ {', '.join(map(str, preferred))} ]")
        lines += [f"  max_queue_delay_microseconds: {queue_delay_us}", "}"]
    lines.append(f"instance_group [ {{ count: {instances}, kind: {DEVICES[device]} }} ]")
    for parameter, text in (parameters or {}).items():
        lines.append(f"parameters: {{ key: {_quote(parameter)}, value: {{ string_value: {_quote(text)} }} }}")
    return "\n".join(lines) + "\n"


def _onnx_batch(path: Path) -> int | None:
    """The fixed batch of an ONNX file's image input, or None when it is dynamic."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    image = next((i for i in graph.input if i.name == INPUT_NAME), None)
    if image is None:
        raise SegtrtError(f"{path} has no input {INPUT_NAME!r}; give a `segtrt export` ONNX file")
    dim = image.type.tensor_type.shape.dim[0]
    return dim.dim_value if dim.HasField("dim_value") else None


def _raw_config(name, key_value, info: ModelInfo, fixed_batch: int | None, max_batch: int,
                options: RepositoryOptions, device: str) -> str:
    """The config of a model that takes the contract's tensors (the ONNX file or the engine)."""
    height, width = info.preprocess.input_size
    image = Tensor(INPUT_NAME, "TYPE_FP32", (3, height, width))
    outputs = contract_outputs(info)
    if fixed_batch is not None:  # a fixed batch is part of the shape: Triton does not batch such a model
        image = Tensor(image.name, image.data_type, (fixed_batch, *image.dims))
        outputs = tuple(Tensor(t.name, t.data_type, (fixed_batch, *t.dims)) for t in outputs)
        max_batch = 0
    return model_config(name, key_value, max_batch, [image], outputs, device=device, instances=options.instances,
                        queue_delay_us=options.queue_delay_us)


class _VersionWriter:
    """Writes one version folder of a model atomically: files go to a hidden sibling, renamed when complete."""

    def __init__(self, model_dir: Path, version: int):
        self.final = model_dir / str(version)
        if self.final.exists():
            raise SegtrtError(f"{self.final} exists: version {version} of {model_dir.name} is already in the "
                              f"repository; give --version {version + 1} to add a version")
        model_dir.mkdir(parents=True, exist_ok=True)
        self.staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=model_dir))

    def copy(self, source: Path, name: str) -> None:
        shutil.copyfile(source, self.staging / name)

    def write_text(self, name: str, text: str) -> None:
        (self.staging / name).write_text(text)

    def commit(self) -> None:
        os.chmod(self.staging, 0o755)  # mkdtemp's 0700 would hide the version from a server run as another user
        os.replace(self.staging, self.final)

    def abort(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


@dataclass
class Repository:
    """What write_repository wrote: the folder, its model names, and how to serve it."""

    path: Path
    models: list[str]
    plugin_library: Path | None

    def serve_command(self) -> str:
        command = ["tritonserver", f"--model-repository={self.path}"]
        if self.plugin_library is not None:
            command.append(f"--backend-config=tensorrt,plugins={self.plugin_library}")
        return shlex.join(command)


def write_repository(out, options: RepositoryOptions, onnx: Path | None = None, engine: Path | None = None,
                     plugins: Path | None = None) -> Repository:
    """Write (or add a version to) a Triton model repository; see the module docstring for its layout.

    onnx: an exported segtrt ONNX file; its portable flavour also becomes the onnxruntime model.
    engine: a `segtrt build` engine with its sidecar; becomes the tensorrt_plan model and what the Python
    model runs. plugins: the plugin library the engine was built against (checked by its SHA-256).
    """
    from segtrt.engine.sidecar import read_sidecar
    from segtrt.ops.registry import default_plugin_library
    from segtrt.runtime.model_info import read_info

    if onnx is None and engine is None:
        raise SegtrtError("give --onnx (an exported ONNX file), --engine (a `segtrt build` engine) or both")
    if options.device not in DEVICES:
        raise SegtrtError(f"device must be one of {', '.join(DEVICES)}, not {options.device!r}")
    if options.max_batch < 1 or options.instances < 1 or options.version < 1:
        raise SegtrtError("--max-batch, --instances and --version must be at least 1")
    for given in (onnx, engine):
        if given is not None and not Path(given).is_file():
            raise SegtrtError(f"model file {given} does not exist")
    out = Path(out)
    info = read_info(onnx) if onnx is not None else None
    sidecar = read_sidecar(engine) if engine is not None else None
    if info is not None and sidecar is not None and info.source and sidecar.info.source \
            and info.source != sidecar.info.source:
        raise SegtrtError(f"{onnx} and {engine} come from different checkpoints (sha256 {info.source[:12]} vs "
                          f"{sidecar.info.source[:12]}); give the export the engine was built from")
    library = None
    if sidecar is not None and sidecar.plugin_library is not None:
        library = Path(plugins or default_plugin_library())
        if not library.is_file():
            raise SegtrtError(f"{engine} needs segtrt's plugin library, not found at {library}; give --plugins")
        if file_sha256(library) != sidecar.plugin_library.sha256:
            raise SegtrtError(f"{library} is not the plugin library {engine} was built against "
                              f"({sidecar.plugin_library.path}, sha256 {sidecar.plugin_library.sha256[:12]})")

    # (model folder, config text, {file name in the version folder: source path or text})
    models: list[tuple[str, str, dict]] = []
    served = sidecar.info if sidecar is not None else info
    assert served is not None
    parameters = {"model_file": "model.plan" if engine is not None else "model.onnx",
                  "class_names": json.dumps(list(served.class_names))}
    if options.threads:
        parameters["threads"] = str(options.threads)
    if library is not None:  # relative to the repository, which a server may mount elsewhere
        parameters["plugin_library"] = f"{options.name}_trt/{PLUGIN_LIBRARY_NAME}"
    python_device = "gpu" if engine is not None else options.device
    python_files: dict = {"model.py": MODEL_SCRIPT}
    python_files.update({"model.plan": engine, "model.plan.json": Path(f"{engine}.json")} if engine is not None
                        else {"model.onnx": onnx})
    models.append((options.name, model_config(
        options.name, ("backend", "python"), options.max_batch, [Tensor(IMAGE_INPUT, "TYPE_STRING", (1,))],
        detection_outputs(), device=python_device, instances=options.instances,
        queue_delay_us=options.queue_delay_us, parameters=parameters), python_files))
    if info is not None and info.flavour == "portable":
        name = f"{options.name}_onnx"
        models.append((name, _raw_config(name, ("backend", "onnxruntime"), info, _onnx_batch(onnx),
                                         options.max_batch, options, options.device), {"model.onnx": onnx}))
    if sidecar is not None:
        name = f"{options.name}_trt"
        (profile,) = sidecar.profiles
        fixed = None if profile.dynamic else profile.max[0]
        models.append((name, _raw_config(name, ("platform", "tensorrt_plan"), sidecar.info, fixed, profile.max[0],
                                         options, "gpu"),
                       {"model.plan": engine, "model.plan.json": Path(f"{engine}.json")}))

    writers = []
    try:
        for name, _, files in models:
            writer = _VersionWriter(out / name, options.version)
            writers.append(writer)
            for file_name, source in files.items():
                writer.copy(Path(source), file_name)
        for writer in writers:
            writer.commit()
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    for name, config, _ in models:
        atomic_write_text(out / name / "config.pbtxt", config)
    plugin_copy = None
    if library is not None:
        plugin_copy = (out / f"{options.name}_trt" / PLUGIN_LIBRARY_NAME).resolve()
        library_bytes = library.read_bytes()
        atomic_write(plugin_copy, lambda file: file.write(library_bytes))
    return Repository(out.resolve(), [name for name, _, _ in models], plugin_copy)
