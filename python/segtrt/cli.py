"""The `segtrt` command: one subcommand per pipeline stage.

Each stage module exposes ``add_arguments(parser)`` and ``main(args)``; modules are
imported only when their subcommand runs, so `segtrt --help` stays fast and the
runtime stages never import torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from segtrt import SegtrtError, __version__

# subcommand -> (module, one-line help)
SUBCOMMANDS = {
    "synth": ("segtrt.data.synth", "generate a synthetic COCO-format instance segmentation set"),
    "train": ("segtrt.training.train", "train Mask R-CNN, SOLOv2 or SOLO"),
    "import": ("segtrt.models.import_cli", "an mmdetection SOLO/SOLOv2 or torchvision Mask R-CNN checkpoint -> a segtrt "
                                           "checkpoint (options, classes, pre-processing)"),
    "eval": ("segtrt.evaluation.coco", "COCO box/mask AP and boundary F-score of a checkpoint or ONNX file"),
    "export": ("segtrt.export.cli", "export a checkpoint to ONNX (trt flavour with plugin nodes, portable flavour)"),
    "parity": ("segtrt.export.parity", "compare PyTorch with its exported ONNX files in ONNX Runtime, image by image"),
    "calibrate": ("segtrt.calibration.cli", "FP16 and INT8 variants of an exported ONNX file (TensorRT Q/DQ, CPU INT8, "
                                            "mixed INT8 within a mask-AP budget)"),
    "build": ("segtrt.engine.cli", "compile an exported ONNX file into a TensorRT engine (--check: validate, no TensorRT)"),
    "report": ("segtrt.report.cli", "accuracy vs precision: AP, latency and size of each FP32/FP16/INT8 variant: "
                                    "report.json, report.md, report.html"),
    "triton-repo": ("segtrt.serving.cli", "write a Triton Inference Server model repository (engine, portable ONNX, "
                                          "segtrt's runtime as a Python-backend model) and print how to serve it"),
    "predict": ("segtrt.runtime.predict", "segment images with a checkpoint or ONNX file: COCO JSON + annotated images"),
    "run": ("segtrt.runtime.camera.run", "live segmentation of cameras, streams, videos and image folders: "
                                         "annotated video, JSON Lines, summary.json"),
    "strip": ("segtrt.training.strip", "shrink a training checkpoint for shipping (fp16 weights, no optimizer state)"),
    "demo": ("segtrt.demo", "the whole pipeline on built-in synthetic data and the shipped models"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segtrt",
        description="Instance segmentation from PyTorch to ONNX and TensorRT, one command per pipeline stage.",
    )
    parser.add_argument("--version", action="version", version=f"segtrt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        sub_parser.set_defaults(_module=module_name)
        _stage_module(module_name).add_arguments(sub_parser)
    return parser


def _stage_module(module_name: str):
    return importlib.import_module(module_name)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = _stage_module(args._module).main(args)
    except SegtrtError as error:
        print(f"segtrt {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"segtrt {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
