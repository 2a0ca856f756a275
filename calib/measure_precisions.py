#!/usr/bin/env python3
"""Mask AP of every precision variant of the shipped models: the measurement behind README "Calibration".

    python calib/measure_precisions.py --out runs/precisions --data /work/main/data/val \
        --calib /work/main/data/calib [--models solov2_edge ...] [--methods max entropy] [--eval-images N]

Per shipped model: export both flavours, then `segtrt calibrate` fp16, int8 (each method), int8-mixed
(--max-ap-drop 0.003, the best method) from the trt flavour (what TensorRT builds) and int8-cpu from the portable
flavour (what ONNX Runtime on CPU runs fastest: no Python plugin ops), then `segtrt eval --onnx` of each on the
validation set. Writes OUT/precisions.json and prints a Markdown table. Every step is a segtrt command, so the
figures are what users get.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

WEIGHTS = Path(__file__).resolve().parents[1] / "python" / "segtrt" / "weights"
MODELS = ("maskrcnn_edge", "solo_edge", "solov2_edge")
METHODS = ("max", "percentile", "entropy")
MAX_AP_DROP = 0.003


def segtrt(*args) -> None:
    print("$ segtrt " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "segtrt.cli", *args], check=True)


def evaluate(onnx: Path, data: list[str], out: Path) -> dict:
    metrics = out.with_suffix(".metrics.json")
    if not metrics.exists():
        segtrt("eval", "--onnx", str(onnx), *data, "--json", str(metrics))
    return json.loads(metrics.read_text())


def eval_data(data: str, count: int | None, out: Path) -> list[str]:
    """`segtrt eval` options for the whole set, or for its first `count` images (a subset JSON in OUT)."""
    from segtrt.data.coco import resolve_paths

    annotation_file, image_dir = resolve_paths(data)
    if count is None:
        return ["--data", data]
    coco = json.loads(annotation_file.read_text())
    images = sorted(coco["images"], key=lambda image: image["id"])[:count]
    ids = {image["id"] for image in images}
    subset = dict(coco, images=images, annotations=[a for a in coco["annotations"] if a["image_id"] in ids])
    path = out / f"eval-first-{count}.json"
    path.write_text(json.dumps(subset))
    return ["--data", str(path), "--images", str(image_dir)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--data", required=True, help="validation COCO set (mask AP)")
    parser.add_argument("--calib", required=True, help="calibration COCO set")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--count", type=int, default=64, help="calibration images (default 64)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS,
                        help="int8 calibration methods to compare (default all)")
    parser.add_argument("--eval-images", type=int, help="evaluate on the first N images only (default all)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    data = eval_data(args.data, args.eval_images, args.out)
    rows = []
    for model in args.models:
        base = args.out / model
        paths = {flavour: base.with_suffix(f".{flavour}.onnx") for flavour in ("trt", "portable")}
        for flavour, path in paths.items():
            if not path.exists():
                segtrt("export", "--checkpoint", str(WEIGHTS / f"{model}.pt"), "--flavour", flavour, "--out", str(path))
        fp32 = {flavour: evaluate(path, data, path)["segm"]["AP"] for flavour, path in paths.items()}
        rows += [{"model": model, "variant": "fp32", "flavour": flavour, "mask_ap": ap, "drop": 0.0}
                 for flavour, ap in fp32.items()]
        variants = [("fp16", "trt", [])] + [(f"int8-{m}", "trt", ["--method", m]) for m in args.methods]
        variants.append(("int8-cpu", "portable", []))
        for name, flavour, options in variants:
            out = base.with_suffix(f".{name}.onnx")
            precision = name if name in ("fp16", "int8-cpu") else "int8"
            if not out.exists():
                segtrt("calibrate", "--onnx", str(paths[flavour]), "--data", args.calib, "--precision", precision,
                       "--out", str(out), "--count", str(args.count), *options)
            ap = evaluate(out, data, out)["segm"]["AP"]
            rows.append({"model": model, "variant": name, "flavour": flavour, "mask_ap": ap,
                         "drop": fp32[flavour] - ap})
        best = max((r for r in rows if r["model"] == model and r["variant"].startswith("int8-")
                    and r["variant"] != "int8-cpu"), key=lambda r: r["mask_ap"])
        out = base.with_suffix(".int8-mixed.onnx")
        if not out.exists():
            segtrt("calibrate", "--onnx", str(paths["trt"]), "--data", args.calib, "--precision", "int8-mixed",
                   "--out", str(out), "--count", str(args.count), "--method", best["variant"].removeprefix("int8-"),
                   "--max-ap-drop", str(MAX_AP_DROP))
        ap = evaluate(out, data, out)["segm"]["AP"]
        rows.append({"model": model, "variant": f"int8-mixed ({best['variant'].removeprefix('int8-')})",
                     "flavour": "trt", "mask_ap": ap, "drop": fp32["trt"] - ap})
        (args.out / "precisions.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("| model | variant | flavour | mask AP | drop vs FP32 |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['model']} | {row['variant']} | {row['flavour']} | {row['mask_ap']:.4f} | {row['drop']:+.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
