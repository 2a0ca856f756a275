"""`segtrt build`: an exported ONNX file -> a TensorRT engine with its JSON sidecar (python/build_engine.py).

`--check` needs no TensorRT: it validates the file for TensorRT's ONNX parser and prints the build plan
and the equivalent trtexec line; other tools script against its exit status (0 buildable, 2 not, with
one line naming the problem). Building needs TensorRT and a GPU; without them it says so in one sentence.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from segtrt.ops.registry import default_plugin_library


def add_arguments(parser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "examples:\n"
        "  segtrt build --onnx model.trt.onnx --check      # no TensorRT needed: validate and print the plan\n"
        "  segtrt build --onnx model.trt.onnx --out model.engine --timing-cache timing.cache\n"
        "  segtrt build --onnx model.trt.onnx --dla-core 0  # Jetson DLA, GPU fallback for the rest\n"
        "The engine's JSON sidecar (ENGINE.json) records what it was built from and for; runtimes refuse an\n"
        "engine whose sidecar names another TensorRT version, GPU or plugin library."
    )
    parser.add_argument("--onnx", type=Path, required=True, help="exported segtrt ONNX file (`segtrt export`)")
    parser.add_argument("--out", type=Path, help="engine file to write (default: the ONNX path with .engine)")
    parser.add_argument("--check", action="store_true",
                        help="validate for TensorRT and print the build plan and trtexec line; no TensorRT needed")
    parser.add_argument("--plugins", type=Path, default=None,
                        help=f"segtrt's TensorRT plugin library (default {default_plugin_library()})")
    batch = parser.add_argument_group("optimisation profile (dynamic-batch exports only; H and W come from the file)")
    batch.add_argument("--min-batch", type=int, help="smallest batch (default 1)")
    batch.add_argument("--opt-batch", type=int, help="batch TensorRT tunes for (default: --max-batch)")
    batch.add_argument("--max-batch", type=int, help="largest batch (required for a dynamic batch)")
    build = parser.add_argument_group("builder")
    build.add_argument("--workspace", type=int, metavar="MIB", help="workspace memory pool limit in MiB")
    build.add_argument("--optimization-level", type=int, choices=range(6), metavar="0-5",
                       help="builder optimisation level (TensorRT's default 3; higher builds slower)")
    build.add_argument("--timing-cache", type=Path, help="timing cache file, read if present and written back")
    build.add_argument("--dla-core", type=int, help="build for this DLA core (Jetson), GPU fallback for the rest")
    build.add_argument("--hardware-compatible", action="store_true",
                       help="an engine that runs on any Ampere-or-later GPU (may run slower)")
    build.add_argument("--version-compatible", action="store_true",
                       help="an engine later TensorRT versions of the same major can run")
    legacy = parser.add_argument_group("TensorRT 10.x legacy precision flags (removed in 11.x: use the ONNX variants)")
    legacy.add_argument("--fp16", action="store_true", help="let TensorRT choose FP16 kernels (weakly typed)")
    legacy.add_argument("--int8", action="store_true", help="let TensorRT choose INT8 kernels (weakly typed)")
    legacy.add_argument("--calibration-cache", type=Path, help="INT8 calibration cache for --int8")


def options_from_args(args):
    from segtrt.engine.plan import BuildOptions

    return BuildOptions(
        engine=args.out or args.onnx.with_suffix(".engine"),
        plugins=args.plugins or default_plugin_library(),
        workspace_mib=args.workspace, optimization_level=args.optimization_level, timing_cache=args.timing_cache,
        dla_core=args.dla_core, fp16=args.fp16, int8=args.int8, calibration_cache=args.calibration_cache,
        hardware_compatible=args.hardware_compatible, version_compatible=args.version_compatible,
    )


def make_plan(args):
    """Check the ONNX file and turn the arguments into a BuildPlan (SegtrtError on any problem)."""
    from segtrt import SegtrtError
    from segtrt.engine.check import check_onnx
    from segtrt.engine.plan import BuildPlan
    from segtrt.engine.profiles import profiles_for

    if args.calibration_cache and not args.int8:
        raise SegtrtError("--calibration-cache is for the legacy --int8 flag; a Q/DQ ONNX file needs none")
    model = check_onnx(args.onnx)
    profiles = profiles_for(model, args.min_batch, args.opt_batch, args.max_batch)
    return BuildPlan(model, profiles, options_from_args(args))


def main(args) -> int:
    plan = make_plan(args)
    print(f"segtrt build plan for {args.onnx}:")
    for line in plan.describe():
        print(f"  {line}")
    print(f"the same build with trtexec:\n  {plan.trtexec_command()}")
    if args.check:
        print("check passed: TensorRT's ONNX parser should take this file")
        return 0
    from segtrt.engine.build import build_engine

    build_engine(plan)
    return 0
