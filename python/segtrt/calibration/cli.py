"""`segtrt calibrate`: write an FP16 or INT8 variant of an exported ONNX file (calib/calibrate.py is this).

    segtrt calibrate --onnx m.trt.onnx --data data/calib --precision int8 --out m.int8.onnx --method entropy
    segtrt calibrate --onnx m.trt.onnx --data data/calib --precision int8-mixed --out m.mixed.onnx --max-ap-drop 0.003
    segtrt calibrate --onnx m.portable.onnx --data data/calib --precision int8-cpu --out m.int8-cpu.onnx

The variant keeps the source's segtrt metadata with `precision` set and `calibration` saying how it was made;
TensorRT INT8 files pass `segtrt build --check`'s Q/DQ rules before they are written; every file is written
atomically, so an interrupted or failed run leaves no partial output.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from segtrt import SegtrtError

CALIBRATED = ("fp16", "int8", "int8-cpu", "int8-mixed")
DEFAULT_COUNT = 64
DEFAULT_METHOD = "max"  # the best mask AP on the shipped models (README "Calibration": measured)
DEFAULT_MAX_AP_DROP = 0.003
DEFAULT_VAL_COUNT = 50
FP16_AGREEMENT_IMAGES = 4
SHOWN_FALLBACK = 5  # fallen-back layers the summary names, most sensitive first


def add_arguments(parser) -> None:
    from segtrt.calibration.ranges import METHODS
    from segtrt.calibration.trt_cache import DEFAULT_TENSORRT_VERSION

    parser.add_argument("--onnx", required=True, help="FP32 ONNX file from `segtrt export` (either flavour)")
    parser.add_argument("--data", required=True,
                        help="calibration images: a folder, a glob, or a COCO set (folder with annotations.json)")
    parser.add_argument("--precision", required=True, choices=CALIBRATED,
                        help="fp16: FP16 with FP32 islands (TensorRT); int8: symmetric Q/DQ (TensorRT); int8-cpu: "
                             "u8/s8 Q/DQ (ONNX Runtime on CPU); int8-mixed: int8 with sensitive layers in float")
    parser.add_argument("--out", required=True, help="output .onnx")
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT,
                        help=f"calibration images drawn from --data (default {DEFAULT_COUNT})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draw (default 0)")
    parser.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD,
                        help=f"activation range: max (min/max), percentile (99.999%% of |x|), entropy (KL, "
                             f"TensorRT's calibrator; clipped too much on the shipped models) (default "
                             f"{DEFAULT_METHOD}; int8-cpu uses max)")
    parser.add_argument("--max-ap-drop", type=float, default=DEFAULT_MAX_AP_DROP,
                        help=f"int8-mixed: largest mask AP drop against FP32 (default {DEFAULT_MAX_AP_DROP})")
    parser.add_argument("--val", help="int8-mixed: annotated COCO set the AP is measured on (default: the images of "
                                      "a COCO --data set that calibration did not draw)")
    parser.add_argument("--val-count", type=int, default=DEFAULT_VAL_COUNT,
                        help=f"int8-mixed: held-out images the AP is measured on (default {DEFAULT_VAL_COUNT})")
    parser.add_argument("--cache", metavar="FILE",
                        help="int8/int8-mixed: also write a TensorRT 10 calibration cache (implicit INT8 on JetPack)")
    parser.add_argument("--trt-version", default=DEFAULT_TENSORRT_VERSION,
                        help=f"TensorRT version in the cache header (default {DEFAULT_TENSORRT_VERSION}, JetPack 6)")
    parser.add_argument("--threads", type=int, help="ONNX Runtime threads (default: all cores)")


def main(args) -> int:
    from segtrt.calibration.images import CalibrationImages
    from segtrt.runtime.model_info import read_info, write_info

    started = time.perf_counter()
    info = read_info(args.onnx)
    if info.precision != "fp32":
        raise SegtrtError(f"{args.onnx} is already {info.precision}; calibrate the FP32 export")
    if Path(args.out).resolve() == Path(args.onnx).resolve():
        raise SegtrtError("--out must differ from --onnx: the FP32 export is the source of every variant")
    if args.cache and args.precision not in ("int8", "int8-mixed"):
        raise SegtrtError("--cache is a TensorRT INT8 calibration cache: give it with --precision int8 or int8-mixed")
    if args.cache:
        from segtrt.calibration.trt_cache import version_number

        version_number(args.trt_version)  # a bad version fails now, not after calibrating
    images = CalibrationImages.sample(args.data, args.count, args.seed)
    model, calibration, summary = _make_variant(args, info, images)
    variant = dataclasses.replace(info, precision=args.precision, calibration=calibration)
    write_info(model, variant)
    checked = None
    if args.precision in ("int8", "int8-mixed"):  # a file TensorRT would refuse is never written
        from segtrt.engine.check import check_model

        checked = check_model(model, args.out, variant)
    _write_model(args.out, model)
    if args.cache:
        _write_cache(args, summary["ranges"])
    print(_format_summary(args, variant, checked, summary, time.perf_counter() - started))
    return 0


def _make_variant(args, info, images):
    """(onnx.ModelProto, ModelInfo.calibration dict, summary dict) of the chosen precision."""
    from segtrt.calibration.layers import WEIGHTED_OPS
    from segtrt.calibration.ranges import calibrate_ranges

    calibration = {"images": len(images), "seed": args.seed, "data": str(args.data)}
    if args.precision == "fp16":
        import onnx

        from segtrt.calibration.fp16 import to_fp16

        model = to_fp16(onnx.load(args.onnx))
        return model, {}, {"agreement": _fp16_agreement(args.onnx, model, images)}
    if args.precision == "int8-cpu":
        from segtrt.calibration.int8_cpu import int8_cpu_model

        return int8_cpu_model(args.onnx, images, args.threads), {"method": "max", **calibration}, {}
    ranges = calibrate_ranges(args.onnx, images, args.method, WEIGHTED_OPS, threads=args.threads)
    calibration = {"method": args.method, **calibration}
    if args.precision == "int8":
        from segtrt.calibration.int8 import quantize_for_tensorrt

        return quantize_for_tensorrt(args.onnx, ranges), calibration, {"ranges": ranges}
    from segtrt.calibration.mixed import mixed_precision

    val_data, val_ids = _held_out(args, images)
    result = mixed_precision(args.onnx, ranges, images, val_data, val_ids, args.max_ap_drop, args.threads)
    calibration.update(max_ap_drop=args.max_ap_drop, val=str(args.val or args.data), val_images=len(val_ids),
                       fp32_mask_ap=result.fp32_ap, mask_ap=result.ap, sensitivity=result.sensitivity)
    fallback = [entry["layer"] for entry in result.sensitivity if entry["fallback"]]
    return result.model, calibration, {"ranges": ranges, "fallback": fallback, "ap_drop": result.ap_drop,
                                       "val_images": len(val_ids)}


def _held_out(args, images):
    """(CocoDataset, image ids) int8-mixed measures AP on: --val, else --data's images calibration did not draw."""
    from segtrt.data.coco import CocoDataset

    if args.val_count < 1:
        raise SegtrtError(f"--val-count must be at least 1, got {args.val_count}")
    source = Path(args.val or args.data)
    if not (source.suffix == ".json" or (source / "annotations.json").is_file()):
        raise SegtrtError(f"int8-mixed measures mask AP, so it needs annotated images: {source} is no COCO set "
                          "(annotations.json); give one with --val")
    dataset = CocoDataset(source)
    by_file = {dataset.image_dir / dataset.images[i]["file_name"]: i for i in dataset.image_ids}
    drawn = set(images.files) if args.val is None else set()
    ids = [image_id for path, image_id in by_file.items() if path not in drawn][:args.val_count]
    if not ids:
        raise SegtrtError(f"{source} has no images left for measuring AP after drawing {len(images)} for calibration; "
                          "give a held-out set with --val")
    return dataset, ids


def _fp16_agreement(source_path, model, images) -> str:
    """How the FP16 model's outputs compare with FP32 on a few calibration images (one line)."""
    import tempfile

    import numpy as np

    from segtrt.runtime.backends.onnxruntime import OnnxRuntimeBackend

    with tempfile.TemporaryDirectory(prefix="segtrt-fp16.") as folder:
        path = Path(folder) / "fp16.onnx"
        path.write_bytes(model.SerializeToString())
        half = OnnxRuntimeBackend(path)
    full = OnnxRuntimeBackend(source_path)
    counts, score_diffs = [], []
    for index, batch in enumerate(images.model_inputs(full.info.preprocess)):
        if index == FP16_AGREEMENT_IMAGES:
            break
        a, b = full(batch), half(batch)
        counts.append((int(a["num_detections"][0]), int(b["num_detections"][0])))
        n = min(counts[-1])
        score_diffs.append(float(np.max(np.abs(a["scores"][0, :n] - b["scores"][0, :n]), initial=0.0)))
    return (f"on {len(counts)} image(s): detections fp32/fp16 " + ", ".join(f"{x}/{y}" for x, y in counts)
            + f"; largest score difference of the shared top detections {max(score_diffs):.2e}")


def _write_model(out, model) -> None:
    from segtrt.files import atomic_write

    data = model.SerializeToString()
    try:
        atomic_write(out, lambda file: file.write(data))
    except OSError as error:
        raise SegtrtError(f"cannot write {out}: {error.strerror or error}; nothing was written") from None


def _write_cache(args, ranges) -> None:
    from segtrt.calibration.trt_cache import amax_of, cache_text
    from segtrt.files import atomic_write_text

    try:
        atomic_write_text(args.cache, cache_text(amax_of(ranges), args.trt_version))
    except OSError as error:
        raise SegtrtError(f"cannot write {args.cache}: {error.strerror or error} ({args.out} was written)") from None


def _format_summary(args, info, checked, summary, seconds) -> str:
    size = Path(args.out).stat().st_size / 1e6
    lines = [f"{args.out}: {info.precision} ({size:.1f} MB, {seconds:.0f} s) from {args.onnx}"]
    if info.calibration.get("method"):
        lines.append(f"  calibration: {info.calibration['method']} over {info.calibration['images']} image(s) of "
                     f"{args.data}, seed {args.seed}")
    if checked is not None:
        lines.append(f"  TensorRT Q/DQ check passed (precision {checked.precision})")
    if "agreement" in summary:
        lines.append(f"  fp16 against fp32 {summary['agreement']}")
    if "fallback" in summary:
        fallback = summary["fallback"]
        shown = ", ".join(fallback[:SHOWN_FALLBACK]) + (f" and {len(fallback) - SHOWN_FALLBACK} more (the file's "
                                                       "segtrt.calibration lists them)" if len(fallback) > SHOWN_FALLBACK
                                                       else "")
        lines.append(f"  mask AP drop {summary['ap_drop']:.4f} (budget {args.max_ap_drop}) on "
                     f"{summary['val_images']} held-out image(s) with {len(fallback)} layer(s) in float: "
                     + (shown or "none"))
    if args.cache:
        lines.append(f"  TensorRT calibration cache: {args.cache}")
    return "\n".join(lines)
