"""The build plan: what `segtrt build` will ask TensorRT for, printed by --check and as a trtexec line.

The plan is all the decisions made before TensorRT is touched, so that the TensorRT-facing builder
only carries them out and users without segtrt can reproduce the build with NVIDIA's `trtexec`.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from segtrt.engine.check import CheckedModel
from segtrt.engine.profiles import Profile

HARDWARE_COMPATIBILITY = "ampere+"  # the one cross-GPU level TensorRT 10 offers (Ampere and later)


@dataclass(frozen=True)
class BuildOptions:
    """The user's build options (the `segtrt build` flags), TensorRT-independent."""

    engine: Path
    plugins: Path
    workspace_mib: int | None = None  # None: TensorRT's default (the device's memory)
    optimization_level: int | None = None  # None: TensorRT's default (3)
    timing_cache: Path | None = None
    dla_core: int | None = None  # GPU fallback always on: our plugins run on the GPU
    fp16: bool = False  # TensorRT 10.x legacy builder flags (weakly typed network)
    int8: bool = False
    calibration_cache: Path | None = None
    hardware_compatible: bool = False
    version_compatible: bool = False

    @property
    def strongly_typed(self) -> bool:
        """Precision from the ONNX types (what TensorRT 11 requires) unless a legacy flag asks otherwise."""
        return not (self.fp16 or self.int8)


@dataclass(frozen=True)
class BuildPlan:
    model: CheckedModel
    profiles: tuple[Profile, ...]
    options: BuildOptions

    @property
    def needs_plugins(self) -> bool:
        return bool(self.model.plugin_nodes)

    @property
    def precision(self) -> str:
        """fp32/fp16/int8/fp8 from the ONNX types, or the legacy flags' fp16, int8 or fp16+int8."""
        if self.options.strongly_typed:
            return self.model.precision
        return "+".join(name for name, on in (("fp16", self.options.fp16), ("int8", self.options.int8)) if on)

    def precision_note(self) -> str:
        if self.options.strongly_typed:
            return f"{self.precision} (strongly typed: the ONNX file's types)"
        return f"{self.precision} (TensorRT 10.x legacy builder flags over the {self.model.precision} graph)"

    def describe(self) -> list[str]:
        model, options = self.model, self.options
        info = model.info
        lines = [
            f"model: {model.path} ({info.kind}, {info.flavour} flavour, {len(info.class_names)} classes, "
            f"opset {model.opset}, {model.nodes} nodes)",
            *(f"input: {spec.name} {spec.dtype} {list(spec.shape)}" for spec in model.inputs),
            *(f"profile: {p.input} min {list(p.min)} opt {list(p.opt)} max {list(p.max)}" for p in self.profiles),
            f"precision: {self.precision_note()}",
        ]
        if self.needs_plugins:
            nodes = ", ".join(f"{count} {op_type}" for op_type, count in sorted(model.plugin_nodes.items()))
            state = "found" if options.plugins.is_file() else "not found: build it with `make native` where TensorRT is"
            lines.append(f"plugin library: {options.plugins} ({state}) for {nodes}")
        else:
            lines.append("plugin library: not needed (no plugin nodes)")
        lines.append(f"engine: {options.engine} (+ {options.engine}.json sidecar)")
        lines += [f"warning: {warning}" for warning in model.warnings]
        return lines

    def segtrt_command(self) -> str:
        """The `segtrt build` line that makes this plan again: the sidecar's rebuild advice."""
        options = self.options
        command = ["segtrt", "build", "--onnx", str(self.model.path), "--out", str(options.engine)]
        if self.needs_plugins:
            command += ["--plugins", str(options.plugins)]
        for profile in self.profiles:
            if profile.dynamic:
                command += ["--min-batch", str(profile.min[0]), "--opt-batch", str(profile.opt[0]),
                            "--max-batch", str(profile.max[0])]
        valued = (("--workspace", options.workspace_mib), ("--optimization-level", options.optimization_level),
                  ("--timing-cache", options.timing_cache), ("--dla-core", options.dla_core),
                  ("--calibration-cache", options.calibration_cache))
        command += [part for flag, value in valued if value is not None for part in (flag, str(value))]
        switches = (("--fp16", options.fp16), ("--int8", options.int8),
                    ("--hardware-compatible", options.hardware_compatible),
                    ("--version-compatible", options.version_compatible))
        command += [flag for flag, on in switches if on]
        return shlex.join(command)

    def trtexec_command(self) -> str:
        options = self.options
        command = ["trtexec", f"--onnx={self.model.path}", f"--saveEngine={options.engine}"]
        if options.strongly_typed:
            command.append("--stronglyTyped")
        command += ["--fp16"] * options.fp16 + ["--int8"] * options.int8
        if options.calibration_cache:
            command.append(f"--calib={options.calibration_cache}")
        if self.needs_plugins:
            command.append(f"--dynamicPlugins={options.plugins}")
        for profile in self.profiles:
            if profile.dynamic:
                for flag, shape in (("min", profile.min), ("opt", profile.opt), ("max", profile.max)):
                    command.append(f"--{flag}Shapes={profile.input}:{'x'.join(map(str, shape))}")
        if options.workspace_mib is not None:
            command.append(f"--memPoolSize=workspace:{options.workspace_mib}M")
        if options.optimization_level is not None:
            command.append(f"--builderOptimizationLevel={options.optimization_level}")
        if options.timing_cache:
            command.append(f"--timingCacheFile={options.timing_cache}")
        if options.dla_core is not None:
            command += [f"--useDLACore={options.dla_core}", "--allowGPUFallback"]
        if options.hardware_compatible:
            command.append(f"--hardwareCompatibilityLevel={HARDWARE_COMPATIBILITY}")
        if options.version_compatible:
            command.append("--versionCompatible")
        return shlex.join(command)
