"""The engine's JSON sidecar (ENGINE.json): what an engine was built from and for, checked before it runs.

A TensorRT engine runs only with the TensorRT version and GPU it was built for (unless built
version- or hardware-compatible) and with the plugin library it was built against; running it
elsewhere crashes or silently misbehaves. The sidecar records those facts at build time, with the
model's own (ModelInfo: classes, pre-processing, output contract) so the runtime needs no ONNX
file, and `verify` refuses a mismatch with the reason and the command that rebuilds the engine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from segtrt import SegtrtError, __version__
from segtrt.engine.profiles import Profile
from segtrt.files import atomic_write_text, file_sha256
from segtrt.runtime.model_info import ModelInfo

FORMAT = "segtrt-engine/1"
# hardware_compatible engines run on this compute capability major and later (TensorRT's "ampere+" level)
HARDWARE_COMPATIBLE_MIN_MAJOR = 8


@dataclass(frozen=True)
class Machine:
    """The facts of the machine an engine is built on or run on."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "major.minor", e.g. "8.7" for Orin


@dataclass(frozen=True)
class PluginLibrary:
    path: str
    sha256: str


@dataclass(frozen=True)
class Sidecar:
    engine_sha256: str
    source_onnx: str
    source_onnx_sha256: str
    precision: str
    machine: Machine
    profiles: tuple[Profile, ...]
    plugin_library: PluginLibrary | None  # None: the engine has no plugin layers
    info: ModelInfo
    rebuild_command: str
    hardware_compatible: bool = False
    version_compatible: bool = False
    dla_core: int | None = None
    segtrt_version: str = __version__

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "segtrt_version": self.segtrt_version,
            "engine_sha256": self.engine_sha256,
            "source_onnx": {"path": self.source_onnx, "sha256": self.source_onnx_sha256},
            "precision": self.precision,
            "tensorrt_version": self.machine.tensorrt_version,
            "gpu": {"name": self.machine.gpu_name, "compute_capability": self.machine.compute_capability},
            "profiles": [profile.to_dict() for profile in self.profiles],
            "plugin_library": (None if self.plugin_library is None
                               else {"path": self.plugin_library.path, "sha256": self.plugin_library.sha256}),
            "class_names": list(self.info.class_names),
            "preprocess": self.info.preprocess.to_dict(),
            "model": self.info.to_props(),
            "hardware_compatible": self.hardware_compatible,
            "version_compatible": self.version_compatible,
            "dla_core": self.dla_core,
            "rebuild_command": self.rebuild_command,
        }

    @classmethod
    def from_dict(cls, values: dict, source: str = "the sidecar") -> "Sidecar":
        if values.get("format") != FORMAT:
            raise SegtrtError(f"{source} is not a segtrt engine sidecar of format {FORMAT!r} (it says "
                              f"{values.get('format')!r}); rebuild the engine with this segtrt (`segtrt build`)")
        try:
            library = values["plugin_library"]
            return cls(
                engine_sha256=values["engine_sha256"],
                source_onnx=values["source_onnx"]["path"],
                source_onnx_sha256=values["source_onnx"]["sha256"],
                precision=values["precision"],
                machine=Machine(values["tensorrt_version"], values["gpu"]["name"], values["gpu"]["compute_capability"]),
                profiles=tuple(Profile.from_dict(p) for p in values["profiles"]),
                plugin_library=None if library is None else PluginLibrary(library["path"], library["sha256"]),
                info=ModelInfo.from_props(values["model"], source),
                rebuild_command=values["rebuild_command"],
                hardware_compatible=bool(values["hardware_compatible"]),
                version_compatible=bool(values["version_compatible"]),
                dla_core=values["dla_core"],
                segtrt_version=values["segtrt_version"],
            )
        except (KeyError, TypeError) as error:
            raise SegtrtError(f"{source} lacks the field {error} of a {FORMAT} sidecar; rebuild the engine") from None


def for_plan(plan, machine: Machine, engine_sha256: str) -> Sidecar:
    """The sidecar of an engine built from a BuildPlan (segtrt.engine.plan) on `machine`."""
    options = plan.options
    library = (PluginLibrary(str(options.plugins), file_sha256(options.plugins)) if plan.needs_plugins else None)
    return Sidecar(
        engine_sha256=engine_sha256, source_onnx=str(plan.model.path), source_onnx_sha256=file_sha256(plan.model.path),
        precision=plan.precision, machine=machine, profiles=plan.profiles, plugin_library=library, info=plan.model.info,
        rebuild_command=plan.segtrt_command(), hardware_compatible=options.hardware_compatible,
        version_compatible=options.version_compatible, dla_core=options.dla_core,
    )


def sidecar_path(engine) -> Path:
    return Path(f"{engine}.json")


def write_sidecar(engine, sidecar: Sidecar) -> Path:
    """Write ENGINE.json atomically (after the engine itself, so a sidecar never names a missing engine)."""
    path = sidecar_path(engine)
    atomic_write_text(path, json.dumps(sidecar.to_dict(), indent=2) + "\n")
    return path


def read_sidecar(engine) -> Sidecar:
    path = sidecar_path(engine)
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        raise SegtrtError(f"engine {engine} has no sidecar {path}; rebuild it with `segtrt build`, which writes "
                          "both") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise SegtrtError(f"{path} is not valid JSON; rebuild the engine with `segtrt build`") from None
    return Sidecar.from_dict(values, str(path))


def _version_numbers(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def mismatch(sidecar: Sidecar, machine: Machine, plugin_library: Path | None) -> str | None:
    """Why an engine with this sidecar cannot run on `machine` with `plugin_library`, or None if it can."""
    built, here = sidecar.machine, machine
    if sidecar.version_compatible:
        built_version, here_version = _version_numbers(built.tensorrt_version), _version_numbers(here.tensorrt_version)
        if built_version[:1] != here_version[:1] or here_version < built_version:
            return (f"it was built version-compatible with TensorRT {built.tensorrt_version}, which runs on later "
                    f"{built_version[0]}.x versions only, and this machine has TensorRT {here.tensorrt_version}")
    elif built.tensorrt_version != here.tensorrt_version:
        return f"it was built with TensorRT {built.tensorrt_version} and this machine has {here.tensorrt_version}"
    if sidecar.hardware_compatible:
        if int(here.compute_capability.split(".")[0]) < HARDWARE_COMPATIBLE_MIN_MAJOR:
            return (f"it was built hardware-compatible (Ampere and later) and this GPU, {here.gpu_name}, has compute "
                    f"capability {here.compute_capability}")
    elif (built.gpu_name, built.compute_capability) != (here.gpu_name, here.compute_capability):
        return (f"it was built for {built.gpu_name} (compute capability {built.compute_capability}) and this GPU is "
                f"{here.gpu_name} ({here.compute_capability})")
    if sidecar.plugin_library is not None:
        if plugin_library is None or not plugin_library.is_file():
            return f"it needs segtrt's plugin library and none was found at {plugin_library}"
        digest = file_sha256(plugin_library)
        if digest != sidecar.plugin_library.sha256:
            return (f"it was built against the plugin library {sidecar.plugin_library.path} (sha256 "
                    f"{sidecar.plugin_library.sha256[:12]}) and {plugin_library} differs (sha256 {digest[:12]})")
    return None


def verify(engine, sidecar: Sidecar, machine: Machine, plugin_library: Path | None) -> None:
    """SegtrtError, with the reason and the rebuild command, unless the engine may run here."""
    digest = file_sha256(engine)
    reason = (f"the engine file's sha256 {digest[:12]} is not the {sidecar.engine_sha256[:12]} its sidecar records"
              if digest != sidecar.engine_sha256 else mismatch(sidecar, machine, plugin_library))
    if reason:
        raise SegtrtError(f"engine {engine} cannot run here: {reason}; rebuild it on this machine: "
                          f"{sidecar.rebuild_command}")
