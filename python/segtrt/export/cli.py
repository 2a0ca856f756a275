"""`segtrt export`: a checkpoint -> ONNX files (trt and/or portable flavour) with the segtrt metadata.

Input height and width are fixed at export (the letterbox size; Mask R-CNN's anchors
depend on it), except for SOLO/SOLOv2 checkpoints whose pre-processing has no fixed
size (imported keep-ratio models): their graph takes any height and width, as the
source framework pads each batch to a multiple of 32 only. --input-size fixes it.
The batch is fixed too unless --dynamic-batch (SOLO and SOLOv2 only).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from segtrt import SegtrtError

FLAVOUR_CHOICES = ("trt", "portable", "both")


def add_arguments(parser) -> None:
    parser.add_argument("--checkpoint", required=True, help="segtrt checkpoint (.pt) from `segtrt train`")
    parser.add_argument(
        "--out", help="output .onnx (default: beside the checkpoint, <stem>.<flavour>.onnx; with --flavour both, "
        "OUT's stem gets .trt / .portable)"
    )
    parser.add_argument("--flavour", choices=FLAVOUR_CHOICES, default="both",
                        help="trt: plugin nodes for TensorRT; portable: standard ONNX ops only (default both)")
    batch = parser.add_mutually_exclusive_group()
    batch.add_argument("--batch", type=int, default=1, help="fixed batch size (default 1)")
    batch.add_argument("--dynamic-batch", action="store_true", help="dynamic batch dimension (SOLO/SOLOv2 only)")
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                        help="a fixed input height and width, multiples of 32 (default: the checkpoint's "
                        "pre-processing; imported SOLO/SOLOv2 models: any size)")
    parser.add_argument("--simplify", action=argparse.BooleanOptionalAction, default=True,
                        help="simplify with onnxslim (default on)")
    parser.add_argument("--check", action="store_true",
                        help="after export, run each file in ONNX Runtime and compare with PyTorch on one image")


def main(args) -> int:
    from segtrt.export import export_onnx
    from segtrt.files import file_sha256
    from segtrt.models.checkpoint import load_checkpoint

    model, meta = load_checkpoint(args.checkpoint)
    source = file_sha256(args.checkpoint)
    preprocess = meta["preprocess"]
    if args.input_size:
        preprocess = dataclasses.replace(preprocess, input_size=tuple(args.input_size), fixed_size=True)
    flavours = ("trt", "portable") if args.flavour == "both" else (args.flavour,)
    summaries = []
    for flavour in flavours:
        path = output_path(args.checkpoint, args.out, flavour, len(flavours) > 1)
        print(f"exporting {meta['kind']} ({flavour}) -> {path}", flush=True)
        summary = export_onnx(
            model, path, flavour, meta["class_names"], preprocess,
            batch_size=args.batch, dynamic_batch=args.dynamic_batch, simplify=args.simplify, source=source,
        )
        summaries.append(summary)
        if args.check:
            print(f"  check: {check_against_pytorch(model, meta['class_names'], path)}", flush=True)
    print(format_summaries(summaries))
    return 0


def output_path(checkpoint, out, flavour: str, several: bool) -> Path:
    """Where a flavour goes: --out as given for one flavour, else <stem>.<flavour>.onnx."""
    if out is None:
        checkpoint = Path(checkpoint)
        return checkpoint.with_name(f"{checkpoint.stem}.{flavour}.onnx")
    out = Path(out)
    if out.suffix != ".onnx":
        raise SegtrtError(f"--out must end in .onnx, got {out}")
    return out.with_name(f"{out.stem}.{flavour}.onnx") if several else out


def check_against_pytorch(model, class_names, path, images: int = 2) -> str:
    """Random images through PyTorch and the exported file, compared as parity compares them.

    Returns a one-line verdict, or raises SegtrtError saying what differs.
    """
    import numpy as np

    from segtrt.export.parity import run_parity
    from segtrt.models.backend import TorchBackend
    from segtrt.runtime.backends.onnxruntime import OnnxRuntimeBackend

    candidate = OnnxRuntimeBackend(path)
    reference = TorchBackend(model, class_names, candidate.info.preprocess)
    height, width = candidate.info.preprocess.input_size
    rng = np.random.default_rng(1)
    count = candidate.batch_size or images
    samples = [(index, rng.integers(0, 256, (height, width, 3), dtype=np.uint8)) for index in range(count)]
    row = run_parity([reference, candidate], lambda: samples, total=count)["backends"][candidate.name]
    if not row["passed"]:
        raise SegtrtError(
            f"{path}: ONNX Runtime and PyTorch disagree on random images ({row['count_mismatches']} count and "
            f"{row['label_mismatches']} label mismatches, worst box difference {row['worst_box_rel']:.2g} relative, "
            f"min mask IoU {row['worst_mask_iou']:.3f})"
        )
    return (f"ONNX Runtime matches PyTorch ({row['detections']} detections on {count} random images, "
            f"worst box difference {row['worst_box_rel']:.2g} relative)")


def format_summaries(summaries) -> str:
    header = f"{'file':40} {'flavour':9} {'MB':>7} {'nodes':>12} {'custom':>7} {'seconds':>8}  simplified"
    lines = [header, "-" * len(header)]
    for s in summaries:
        nodes = f"{s.nodes_before_simplify}->{s.nodes}"
        lines.append(
            f"{str(s.path):40} {s.flavour:9} {s.size_mb:7.1f} {nodes:>12} {s.custom_nodes:7d} {s.seconds:8.1f}  {s.simplified}"
        )
    return "\n".join(lines)
