"""`segtrt export`: a checkpoint -> ONNX files (trt and/or portable flavour) with the segtrt metadata.

Input height and width are fixed at export (the letterbox size; the anchors, grids
and masks depend on it); the batch is fixed too unless --dynamic-batch (SOLO and
SOLOv2 only).
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
                        help="input height and width, multiples of 32 (default: the checkpoint's pre-processing)")
    parser.add_argument("--simplify", action=argparse.BooleanOptionalAction, default=True,
                        help="simplify with onnxslim (default on)")
    parser.add_argument("--check", action="store_true",
                        help="after export, run each file in ONNX Runtime and compare with PyTorch on one image")


def main(args) -> int:
    from segtrt.models.checkpoint import load_checkpoint
    from segtrt.export import export_onnx

    model, meta = load_checkpoint(args.checkpoint)
    preprocess = meta["preprocess"]
    if args.input_size:
        preprocess = dataclasses.replace(preprocess, input_size=tuple(args.input_size))
    flavours = ("trt", "portable") if args.flavour == "both" else (args.flavour,)
    summaries = []
    for flavour in flavours:
        path = output_path(args.checkpoint, args.out, flavour, len(flavours) > 1)
        print(f"exporting {meta['kind']} ({flavour}) -> {path}", flush=True)
        summary = export_onnx(
            model, path, flavour, meta["class_names"], preprocess,
            batch_size=args.batch, dynamic_batch=args.dynamic_batch, simplify=args.simplify,
        )
        summaries.append(summary)
        if args.check:
            print(f"  check: {check_against_pytorch(model, path)}", flush=True)
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


def check_against_pytorch(model, path) -> str:
    """One random image through PyTorch and ONNX Runtime: a one-line verdict, or SegtrtError."""
    import numpy as np
    import torch

    from segtrt.runtime.model_info import read_info
    from segtrt.runtime.backends.onnxruntime import create_session, run

    info = read_info(path)
    session = create_session(path)
    batch = session.get_inputs()[0].shape[0]
    batch = batch if isinstance(batch, int) else 1
    height, width = info.preprocess.input_size
    images = torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(1)) * 255
    with torch.no_grad():
        expected = model(images)
    outputs = run(session, images.numpy())
    count = outputs["num_detections"]
    if not np.array_equal(count, expected[0].numpy()) or not np.array_equal(outputs["labels"], expected[3].numpy()):
        raise SegtrtError(f"{path}: ONNX Runtime and PyTorch disagree on a random image (counts {count} vs {expected[0].numpy()})")
    box_error = float(np.abs(outputs["boxes"] - expected[1].numpy()).max())
    return f"ONNX Runtime matches PyTorch ({int(count.sum())} detections, max box difference {box_error:.2g} px)"


def format_summaries(summaries) -> str:
    header = f"{'file':40} {'flavour':9} {'MB':>7} {'nodes':>12} {'custom':>7} {'seconds':>8}  simplified"
    lines = [header, "-" * len(header)]
    for s in summaries:
        nodes = f"{s.nodes_before_simplify}->{s.nodes}"
        lines.append(
            f"{str(s.path):40} {s.flavour:9} {s.size_mb:7.1f} {nodes:>12} {s.custom_nodes:7d} {s.seconds:8.1f}  {s.simplified}"
        )
    return "\n".join(lines)
