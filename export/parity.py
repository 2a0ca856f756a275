#!/usr/bin/env python3
"""Parity benchmark: PyTorch vs ONNX Runtime (portable flavour) vs ONNX Runtime (trt flavour, plugin
nodes on the CPU twins) over a dataset. Prints a table and writes JSON.

    python export/parity.py --checkpoint runs/maskrcnn/model.pt --data data/val
    segtrt synth --out data/val_fullsize --num-images 3 --seed 1000 --size 800 1344
    python export/parity.py --model solov2 --full-size --data data/val_fullsize --images-limit 2

--full-size: seeded random weights of the full-size architecture (Mask R-CNN R50-FPN at
800x1344, SOLOv2/SOLO R50 at 800x1344) with the classifier biased so detections exist.
Give it images of that size: random weights see a letterbox's constant padding as
thousands of identical RoIs with exactly equal scores, and which of them survive
then depends on each runtime's tie-breaking, not on the graph.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from segtrt import SegtrtError

FULL_SIZE = (800, 1344)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="segtrt checkpoint")
    source.add_argument("--model", choices=("maskrcnn", "solov2", "solo"), help="seeded random weights of this model")
    parser.add_argument("--full-size", action="store_true", help="with --model: the R50 architecture at 800x1344")
    parser.add_argument("--data", default="data/val", help="dataset folder (annotations.json + images/)")
    parser.add_argument("--images-limit", type=int, help="only the first N images")
    parser.add_argument("--json", default="parity.json", help="write the report here (default parity.json)")
    parser.add_argument("--keep-onnx", metavar="DIR", help="keep the exported files in DIR")
    return parser.parse_args(argv)


def seeded_model(kind: str, num_classes: int, full_size: bool):
    """Random weights with the classifier biased so that detections exist."""
    import torch

    from segtrt.models import build_model

    torch.manual_seed(0)
    model = build_model(kind, num_classes, "resnet50" if full_size else "edge").eval()
    with torch.no_grad():
        if kind == "maskrcnn":
            model.roi_heads.box_predictor.cls_score.bias.copy_(torch.linspace(-3.0, 1.0, num_classes + 1))  # background lowest
        else:
            model.mask_head.conv_cls.bias.fill_(0.0)
    return model


def main(argv=None) -> int:
    from segtrt.models.checkpoint import load_checkpoint
    from segtrt.data.coco import CocoDataset
    from segtrt.export import export_onnx
    from segtrt.export.parity import format_report, run_parity
    from segtrt.runtime.preprocess import Preprocess

    args = parse_args(argv)
    dataset = CocoDataset(args.data)
    if args.checkpoint:
        model, meta = load_checkpoint(args.checkpoint)
        class_names, preprocess = meta["class_names"], meta["preprocess"]
    else:
        model = seeded_model(args.model, len(dataset.class_names), args.full_size)
        class_names = dataset.class_names
        preprocess = Preprocess(input_size=FULL_SIZE if args.full_size else (192, 192))
    folder = Path(args.keep_onnx) if args.keep_onnx else Path(tempfile.mkdtemp(prefix="segtrt-parity-"))
    exports = {}
    for flavour in ("portable", "trt"):
        summary = export_onnx(model, folder / f"{model.kind}.{flavour}.onnx", flavour, class_names, preprocess)
        exports[flavour] = summary
        print(f"exported {summary.path} ({summary.size_mb:.1f} MB, {summary.nodes_before_simplify}->{summary.nodes} "
              f"nodes, {summary.seconds:.1f} s)", flush=True)
    image_ids = dataset.image_ids[: args.images_limit] if args.images_limit else dataset.image_ids
    start = time.perf_counter()
    report = run_parity(model, {f"ort-{f}": s.path for f, s in exports.items()}, dataset, image_ids, progress=True)
    report.update(
        kind=model.kind, input_size=list(preprocess.input_size), parity_seconds=time.perf_counter() - start,
        exports={f: {"size_mb": s.size_mb, "nodes": s.nodes, "nodes_before_simplify": s.nodes_before_simplify,
                     "custom_nodes": s.custom_nodes, "seconds": s.seconds} for f, s in exports.items()},
    )
    print(format_report(report))
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if all(row.get("passed", True) for row in report["backends"].values()) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SegtrtError as error:
        print(f"parity: error: {error}", file=sys.stderr)
        sys.exit(2)
