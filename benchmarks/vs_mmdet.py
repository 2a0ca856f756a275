"""SOLOv2 R50 against mmdetection 3.3.0's own eager inference: same weights, same photos, one run, one thread.

    python benchmarks/vs_mmdet.py                                   # mmdetection from /tmp/mmdet-venv
    python benchmarks/vs_mmdet.py --mmdet-python ~/mmdet/bin/python --runs 5
    python benchmarks/vs_mmdet.py --mmdet-threads 2                 # also mmdetection against itself

mmdetection is no segtrt dependency: it runs in its own venv (the recipe is in the docstring of
tests/fixtures/make_mmdet_fixtures.py), in a subprocess that seeds mmdetection's solov2_r50_fpn_1x_coco
with non-trivial norm statistics, saves its detections and times `inference_detector` per photo (its own
pre-processing and mask pasting included). Here the same seeded checkpoint goes through `segtrt import
--from mmdet` and `segtrt export`; each photo is timed through segtrt's whole predict path (pre-processing,
the portable graph in ONNX Runtime, pasting to the original size) and the detections are matched against
mmdetection's (label, mask IoU >= 0.99). The same is done for the trt flavour (its plugin nodes on their
CPU twins, so its time says nothing of TensorRT's) and for the portable file's int8-cpu variant (`segtrt
calibrate --precision int8-cpu`, on photo-like images of another seed), which ONNX Runtime runs on u8/s8
kernels: how much faster, and how far from mmdetection's detections. The photos resize keep-ratio to
800x1200, 800x1203 and 1200x800, which segtrt and mmdetection pad to 800x1216 and 1216x800.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "tests" / "fixtures"
sys.path.insert(0, str(FIXTURES))  # the mmdetection fixture's recipe, matching rule and photos
from mmdet_match import match_mmdet  # noqa: E402
SIZES = ("400x600", "300x451", "600x400")  # h x w: 800x1200, 800x1203 and 1200x800 after the (1333, 800) resize
CONFIG = "configs/solov2/solov2_r50_fpn_1x_coco.py"  # in mmdetection's package, under .mim/
VARIANTS = ("portable", "trt", "int8-cpu")
# int8-cpu's calibration photos: photo-like like the timed ones, from another seed, never the timed ones
CALIBRATION_PHOTOS, CALIBRATION_SEED = 8, 1
MATCH_FIGURES = ("detections", "expected", "matched", "min_iou", "max_score_diff")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--mmdet-python", default="/tmp/mmdet-venv/bin/python",
                        help="the python of a venv with mmdetection 3.3.0 (default /tmp/mmdet-venv/bin/python)")
    parser.add_argument("--runs", type=int, default=3, help="timed calls per photo and framework, after one warm-up")
    parser.add_argument("--class-bias", type=float, default=-4.6,
                        help="the seeded classifier's bias: how many (cell, class) pairs pass score_thr "
                             "(default -4.6: 2.0-2.2k on the photos, as real COCO photos gave; -4: about 5k)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS,
                        help="segtrt files timed and matched (default all: both exported flavours, the trt one "
                             "with its plugin nodes on their CPU twins, and the portable one's int8-cpu variant)")
    parser.add_argument("--mmdet-threads", type=int, default=0, metavar="N",
                        help="also run mmdetection with N threads and match it against its 1-thread run: how "
                             "far its own detections move when only the order of float sums changes")
    parser.add_argument("--out", type=Path, default=Path("runs/vs-mmdet"),
                        help="seeded weights, photos, exported files and results (default runs/vs-mmdet)")
    args = parser.parse_args()
    if not Path(args.mmdet_python).is_file():
        raise SystemExit(f"no python at {args.mmdet_python}: make the mmdetection venv as "
                         "tests/fixtures/make_mmdet_fixtures.py says, or pass --mmdet-python")
    print(f"load average {os.getloadavg()[0]:.2f} at the start", flush=True)
    expected = _mmdetection(args, args.out, threads=1)
    compared = {variant: _segtrt(_segtrt_file(args.out, variant), expected, args.runs) for variant in args.variants}
    if args.mmdet_threads:
        compared[f"mmdetection, {args.mmdet_threads} threads"] = _mmdetection_again(args, expected)
    rows = []
    for variant, (times, matches) in compared.items():
        for name, image in expected["images"].items():
            mmdet_ms, ours = statistics.median(image["mmdet_ms"]), statistics.median(times[name])
            rows.append({"photo": name, "shape": image["shape"], "candidates": image["candidates"],
                         "mmdet_ms": mmdet_ms, "mmdet_cpu_ms": statistics.median(image["mmdet_cpu_ms"]),
                         "variant": variant, "segtrt_ms": ours, "speed_up": mmdet_ms / ours, **matches[name]})
    (args.out / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end\n")
    print(_table(rows))
    return 0


def _mmdetection(args, folder: Path, threads: int) -> dict:
    """expected.json of make_mmdet_fixtures.py run in the mmdetection venv with timing (made once per folder)."""
    expected = folder / "expected.json"
    if not expected.is_file():
        package = subprocess.run([args.mmdet_python, "-c", "import mmdet, os; print(os.path.dirname(mmdet.__file__))"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        print(f"mmdetection, {threads} thread(s): seeding, predicting and timing ...", flush=True)
        subprocess.run([args.mmdet_python, str(FIXTURES / "make_mmdet_fixtures.py"), "--out", str(folder),
                        "--config", str(Path(package) / ".mim" / CONFIG), "--class-bias", str(args.class_bias),
                        "--classes", "coco", "--sizes", *SIZES, "--time-runs", str(args.runs),
                        "--threads", str(threads)], check=True)
    return json.loads(expected.read_text())


def _mmdetection_again(args, expected: dict):
    """(times, match figures) of mmdetection itself with --mmdet-threads threads against its 1-thread run:
    how far its own detections move when only the order of float sums changes."""
    from pycocotools import mask as mask_utils

    again = _mmdetection(args, args.out / f"mmdet-{args.mmdet_threads}-threads", args.mmdet_threads)
    times, matches = {}, {}
    for name, image in again["images"].items():
        instances = {"labels": np.array(image["labels"]), "scores": np.array(image["scores"]),
                     "masks": np.stack([mask_utils.decode(rle).astype(bool) for rle in image["masks"]])}
        matches[name] = _matched(instances, expected["images"][name])
        times[name] = image["mmdet_ms"]
    return times, matches


def _matched(instances: dict, expected_image: dict) -> dict:
    """The MATCH_FIGURES of match_mmdet (the one rule: label, mask IoU >= 0.99) for one photo."""
    figures = match_mmdet(instances, expected_image)
    return {key: figures[key] for key in MATCH_FIGURES}


def _segtrt_file(folder: Path, variant: str) -> Path:
    """folder/segtrt.<variant>.onnx, made on first use: `segtrt import` + `segtrt export` of the seeded
    checkpoint, and for int8-cpu `segtrt calibrate --precision int8-cpu` of the portable file."""
    from compare_with_mmdet import import_fixture

    from segtrt.cli import main as segtrt

    path = folder / f"segtrt.{variant}.onnx"
    if path.is_file():
        return path
    if variant in ("portable", "trt"):
        imported = import_fixture(folder)
        segtrt(["export", "--checkpoint", str(imported), "--flavour", variant, "--out", str(path)])
    else:
        photos = _calibration_photos(folder)
        segtrt(["calibrate", "--onnx", str(_segtrt_file(folder, "portable")), "--data", str(photos),
                "--precision", "int8-cpu", "--count", str(CALIBRATION_PHOTOS), "--out", str(path)])
    return path


def _calibration_photos(folder: Path) -> Path:
    """folder/calibration: CALIBRATION_PHOTOS photo-like PNGs at the timed photos' sizes, in turn."""
    import cv2
    from make_mmdet_fixtures import photo_like

    photos = folder / "calibration"
    photos.mkdir(exist_ok=True)
    rng = np.random.default_rng(CALIBRATION_SEED)
    for index in range(CALIBRATION_PHOTOS):
        shape = tuple(int(v) for v in SIZES[index % len(SIZES)].split("x"))
        cv2.imwrite(str(photos / f"photo{index}.png"), cv2.cvtColor(photo_like(shape, rng), cv2.COLOR_RGB2BGR))
    return photos


def _segtrt(path: Path, expected: dict, runs: int):
    """({photo: [ms per timed run]}, {photo: match figures}) of segtrt's predict path on the ONNX file `path`
    in ONNX Runtime, 1 thread."""
    import cv2

    from segtrt.runtime.backends import open_backend
    from segtrt.runtime.inference import predict_images

    folder = path.parent
    backend = open_backend(path, threads=1)
    times, matches = {}, {}
    for name in expected["images"]:
        image = cv2.imread(str(folder / name))[..., ::-1].copy()
        (prediction,) = predict_images(backend, [(name, image)])  # warm-up, and the detections to match
        matches[name] = _matched(prediction.instances, expected["images"][name])
        times[name] = []
        for _ in range(runs):
            start = time.perf_counter()
            list(predict_images(backend, [(name, image)]))
            times[name].append((time.perf_counter() - start) * 1000)
        print(f"segtrt {path.name} {name}: {statistics.median(times[name]):.0f} ms", flush=True)
    return times, matches


def _table(rows: list[dict]) -> str:
    lines = ["| photo | candidates above score_thr | mmdetection ms (CPU ms) | compared | its ms | speed-up "
             "| detections matched | min mask IoU | max score diff |", "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        h, w = row["shape"]
        lines.append(f"| {h}x{w} | {row['candidates']} | {row['mmdet_ms']:.0f} ({row['mmdet_cpu_ms']:.0f}) | "
                     f"{row['variant']} | {row['segtrt_ms']:.0f} | {row['speed_up']:.2f}x | "
                     f"{row['matched']}/{row['expected']} | {row['min_iou']:.4f} | {row['max_score_diff']:.1e} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
