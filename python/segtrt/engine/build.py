"""The TensorRT-facing builder: carries out a BuildPlan (segtrt.engine.plan) with TensorRT 10.x or 11.x.

One code path for both: features are detected on the API (the strongly typed network flag, the
legacy FP16/INT8 builder flags and the INT8 calibrator that 11.0 removed, IProgressMonitor), never
read from version strings. Every decision was made in the plan; this module only translates it, so
it stays thin enough to be right by construction and is type-checked against tensorrt-stubs.

Version-specific calls: REMOVED_IN_11 below, each reached only behind a feature check; no 11.x-only call is
used (ONLY_IN_11), so the stubs (10.13) cover every call made. tests/test_engine_api_versions.py checks
both lists against this module's code.

Nothing runs before `require_tensorrt()`: without TensorRT the command is one sentence, no traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from segtrt import SegtrtError
from segtrt.engine.machine import current_machine, load_plugin_library, require_tensorrt
from segtrt.engine.plan import BuildPlan
from segtrt.engine.sidecar import for_plan, write_sidecar
from segtrt.files import atomic_write, file_sha256
from segtrt.ops.registry import plugin

if TYPE_CHECKING:  # for the annotations only: pyright checks them against tensorrt-stubs, nothing imports it here
    import tensorrt

# The TensorRT 10.x Python API this module touches that 11.x removed: NVIDIA's "Migrating from TensorRT 10.x to
# 11.x" guide, "Removed Python APIs and Replacements", checked against the Python bindings (python/src/infer/
# pyCore.cpp, pyInt8.cpp) of NVIDIA/TensorRT's release/10.13 and release/11.1 branches. Name -> what 11.x users do.
REMOVED_IN_11 = {
    "BuilderFlag.FP16": "build the strongly typed fp16 ONNX variant (`--fp16` is refused in one sentence)",
    "BuilderFlag.INT8": "build the int8 Q/DQ ONNX variant (`--int8` is refused in one sentence)",
    "IBuilderConfig.int8_calibrator": "explicit quantization with Q/DQ nodes; set only once BuilderFlag.INT8 exists",
    "IInt8EntropyCalibrator2": "explicit quantization with Q/DQ nodes (`--calibration-cache` replays 10.x caches)",
}
# The 11.x-only Python API this module uses: none (the release/11.1 bindings add attention, MoE, KV-cache and
# collective layers and engine statistics, none of which an instance-segmentation build needs).
ONLY_IN_11: dict[str, str] = {}
# Feature checks on names every TensorRT 10.x and 11.x has, and why they are checked anyway.
CHECKED_IN_BOTH = {
    "NetworkDefinitionCreationFlag.STRONGLY_TYPED": "absent before 9.0 (release/8.6's bindings): one sentence there",
    "IProgressMonitor": "absent before 9.0 (release/8.6's bindings): build without a progress bar there",
}

# ONNX attribute type -> TensorRT PluginFieldType name, as onnx-tensorrt passes node attributes to a creator
FIELD_TYPES = {"INT": "INT32", "INTS": "INT32", "FLOAT": "FLOAT32", "STRING": "CHAR"}


def build_engine(plan: BuildPlan) -> Path:
    """Build the plan's engine, write it and its sidecar atomically; returns the engine path."""
    require_tensorrt()
    import tensorrt as trt

    options = plan.options
    machine = current_machine()
    logger = trt.Logger(trt.Logger.WARNING)
    if plan.needs_plugins:
        load_plugin_library(options.plugins)
        check_plugin_creators(plan)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(plan))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(plan.model.path)):
        errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
        raise SegtrtError(f"TensorRT's ONNX parser refused {plan.model.path}: {errors}")
    config = builder.create_builder_config()
    _configure(builder, config, plan)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise SegtrtError(f"TensorRT could not build {plan.model.path} (its log above says why)")
    engine_bytes = bytes(memoryview(serialized))
    atomic_write(options.engine, lambda file: file.write(engine_bytes))
    if options.timing_cache:
        cache = bytes(memoryview(config.get_timing_cache().serialize()))
        atomic_write(options.timing_cache, lambda file: file.write(cache))
    sidecar = write_sidecar(options.engine, for_plan(plan, machine, file_sha256(options.engine)))
    print(f"wrote {options.engine} ({len(engine_bytes) / 1e6:.1f} MB) and {sidecar}")
    return options.engine


def check_plugin_creators(plan: BuildPlan) -> None:
    """Every plugin op type of the model resolves to a creator with our name, version and namespace, and the
    fields the registry's schema gives its nodes are fields the creator declares, with the same types."""
    import tensorrt as trt

    registry = trt.get_plugin_registry()
    for op_type in plan.model.plugin_nodes:
        version = plugin(op_type).version
        creator = registry.get_creator(op_type, version, "")
        if creator is None:
            raise SegtrtError(f"no TensorRT plugin creator {op_type} version {version} (namespace \"\") is "
                              f"registered after loading {plan.options.plugins}; rebuild the plugin library")
        problem = creator_field_problem(op_type, {field.name: field.type.name for field in creator.field_names})
        if problem:
            raise SegtrtError(f"the {op_type} creator in {plan.options.plugins} {problem}; the plugin library and "
                              "this segtrt disagree: rebuild the library from this checkout")


def creator_field_problem(op_type: str, declared: dict[str, str]) -> str | None:
    """How a creator's declared fields ({name: PluginFieldType name}) fail the registry's schema, or None."""
    for attribute in plugin(op_type).attributes:
        wanted = FIELD_TYPES[attribute.onnx_type]
        if declared.get(attribute.name) != wanted:
            return (f"declares field {attribute.name} as {declared.get(attribute.name, 'missing')}, the node "
                    f"gives {wanted}")
    return None


def _network_flags(plan: BuildPlan) -> int:
    import tensorrt as trt

    if not plan.options.strongly_typed:
        return 0
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly_typed is None:
        raise SegtrtError(f"this TensorRT ({trt.__version__}) has no strongly typed networks; use TensorRT 10.x or "
                          "later, or its legacy --fp16/--int8 flags")
    return 1 << int(strongly_typed)


def _legacy_flag(name: str):
    import tensorrt as trt

    flag = getattr(trt.BuilderFlag, name, None)
    if flag is None:  # TensorRT 11 removed the weakly typed precision flags
        raise SegtrtError(f"this TensorRT ({trt.__version__}) has no {name} builder flag (11.x builds strongly typed "
                          f"networks only): build the {name.lower()} ONNX variant without --{name.lower()}")
    return flag


def _configure(builder: tensorrt.Builder, config: tensorrt.IBuilderConfig, plan: BuildPlan) -> None:
    import tensorrt as trt

    options = plan.options
    for profile in plan.profiles:
        optimization_profile = builder.create_optimization_profile()
        optimization_profile.set_shape(profile.input, trt.Dims(list(profile.min)), trt.Dims(list(profile.opt)),
                                       trt.Dims(list(profile.max)))
        config.add_optimization_profile(optimization_profile)
    if options.workspace_mib is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    if options.optimization_level is not None:
        config.builder_optimization_level = options.optimization_level
    if options.fp16:
        config.set_flag(_legacy_flag("FP16"))
    if options.int8:
        config.set_flag(_legacy_flag("INT8"))
        if options.calibration_cache:
            config.int8_calibrator = _cache_calibrator(options.calibration_cache)
    if options.timing_cache:
        existing = options.timing_cache.read_bytes() if options.timing_cache.is_file() else b""
        config.set_timing_cache(config.create_timing_cache(existing), False)
    if options.dla_core is not None:
        if builder.num_DLA_cores <= options.dla_core:
            raise SegtrtError(f"--dla-core {options.dla_core}: this device has {builder.num_DLA_cores} DLA cores")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = options.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    if options.hardware_compatible:
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    if options.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if hasattr(trt, "IProgressMonitor"):
        config.progress_monitor = _progress_monitor()


def _cache_calibrator(path: Path):
    """A legacy INT8 calibrator that only replays a calibration cache (TensorRT 10.x; 11.x removed calibrators)."""
    import tensorrt as trt

    if not path.is_file():
        raise SegtrtError(f"calibration cache {path} does not exist")
    base = getattr(trt, "IInt8EntropyCalibrator2", None)
    if base is None:
        raise SegtrtError(f"this TensorRT ({trt.__version__}) has no INT8 calibrators: build the int8 Q/DQ ONNX "
                          "variant instead")
    cache = path.read_bytes()

    class CacheCalibrator(base):
        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            return None  # the cache holds every scale; no batch is ever needed

        def read_calibration_cache(self) -> bytes:
            return cache

        def write_calibration_cache(self, cache: bytes) -> None:
            return None

    return CacheCalibrator()


def _progress_monitor():
    """A one-line-per-phase progress report on stderr (TensorRT's IProgressMonitor, where the API has it)."""
    import tensorrt as trt

    class Progress(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.steps: dict[str, int] = {}

        def phase_start(self, phase_name: str, parent_phase: str, num_steps: int) -> None:
            self.steps[phase_name] = num_steps

        def step_complete(self, phase_name: str, step: int) -> bool:
            total = self.steps.get(phase_name, 0)
            print(f"\r  {phase_name}: {step + 1}/{total}", end="", file=sys.stderr, flush=True)
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            self.steps.pop(phase_name, None)
            print(f"\r  {phase_name}: done", file=sys.stderr, flush=True)

    return Progress()
