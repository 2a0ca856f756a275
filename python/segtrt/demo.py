"""`segtrt demo`: the whole pipeline on the shipped models, as the commands a user would type.

For every model shipped with segtrt: export (the TensorRT graph with plugin nodes, and the portable graph),
calibrate the precision variants (fp16 and TensorRT int8 from the trt graph, int8-cpu from the portable
one), check each TensorRT-bound file against TensorRT's rules (`segtrt build --check`) and build an engine
where TensorRT is installed; then one accuracy-vs-precision report over every variant, and a generated
video streamed through the live runtime (`segtrt run`) with each model. Each step is printed as the `segtrt` command it
runs, so the demo doubles as a tutorial; synthetic data keeps it self-contained.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
from pathlib import Path

from segtrt import SegtrtError

WEIGHTS_DIR = Path(__file__).parent / "weights"
VALIDATION_SEED = 1000  # never used for training data
CALIBRATION_SEED = 0  # a training seed: calibration images are not the validation images
# precision -> the exported flavour it is calibrated from (README "Calibration": int8-cpu is for ONNX
# Runtime, where the trt flavour's plugin nodes run as slow Python ops)
VARIANTS = {"fp16": "trt", "int8": "trt", "int8-cpu": "portable"}


def shipped_checkpoints() -> dict[str, Path]:
    """The models shipped with segtrt: {file stem: path}, e.g. {"maskrcnn_edge": ...}."""
    return {path.stem: path for path in sorted(WEIGHTS_DIR.glob("*.pt"))}


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="runs/demo", help="working directory (default runs/demo)")
    parser.add_argument("--models", nargs="+", choices=list(shipped_checkpoints()), default=list(shipped_checkpoints()),
                        help="shipped models to take through the pipeline (default all)")
    parser.add_argument("--val-images", type=int, default=30, help="synthetic validation images (default 30)")
    parser.add_argument("--calib-images", type=int, default=32, help="calibration images (default 32)")
    parser.add_argument("--frames", type=int, default=60, help="frames of the generated demo video (default 60)")
    parser.add_argument("--latency-images", type=int, default=10,
                        help="images each variant's latency is timed on in the report (default 10)")


def main(args) -> int:
    out = Path(args.out)
    val_dir, calib_dir = out / "val", out / "calib"
    _run(["synth", "--out", str(val_dir), "--num-images", str(args.val_images), "--seed", str(VALIDATION_SEED)])
    _run(["synth", "--out", str(calib_dir), "--num-images", str(args.calib_images), "--seed", str(CALIBRATION_SEED)])

    variants, exported = [], {}
    for name in args.models:
        checkpoint = shipped_checkpoints()[name]
        exported[name] = {flavour: out / f"{name}.{flavour}.onnx" for flavour in ("trt", "portable")}
        for flavour, path in exported[name].items():
            _run(["export", "--checkpoint", str(checkpoint), "--flavour", flavour, "--out", str(path)])
        variants += [exported[name]["trt"], exported[name]["portable"]]
        for precision, flavour in VARIANTS.items():
            variant = out / f"{name}.{precision}.onnx"
            _run(["calibrate", "--onnx", str(exported[name][flavour]), "--data", str(calib_dir),
                  "--precision", precision, "--count", str(args.calib_images), "--out", str(variant)])
            variants.append(variant)
        engines = _engines(name, exported[name]["trt"], out)
        variants += engines

    report_dir = out / "report"
    # A tour, not a benchmark: every core, few timed images (`segtrt report` defaults to 1 thread for comparable
    # latency; the README's figures come from it).
    _run(["report", "--onnx", *map(str, variants), "--data", str(val_dir), "--out", str(report_dir),
          "--threads", str(os.cpu_count() or 1), "--latency-images", str(args.latency_images), "--warmup", "2"])

    from segtrt.data.synth import write_demo_video

    video = write_demo_video(out / "demo_input.mp4", args.frames)
    print(f"\nwrote {video}: {args.frames} frames of synthetic shapes panning, as a camera would see them")
    camera_dirs = {name: out / "camera" / name for name in args.models}
    for name, camera_dir in camera_dirs.items():
        _run(["run", "--model", str(exported[name]["portable"]), "--source", str(video), "--out", str(camera_dir)])

    print()
    print(_report_table(report_dir))
    print(_where(report_dir, camera_dirs))
    return 0


def _engines(name: str, trt_onnx: Path, out: Path) -> list[Path]:
    """`segtrt build --check` always; the engine itself where TensorRT is installed (none here: say so)."""
    _run(["build", "--onnx", str(trt_onnx), "--check"])
    if importlib.util.find_spec("tensorrt") is None:
        print("TensorRT is not installed here: no engine is built (the check above is what it would build; "
              "README \"Build a TensorRT engine\" walks a Jetson and a desktop GPU through it)")
        return []
    engine = out / f"{name}.engine"
    _run(["build", "--onnx", str(trt_onnx), "--out", str(engine)])
    return [engine]


def _report_table(report_dir: Path) -> str:
    """The accuracy-vs-precision rows of report.json as a short table."""
    rows = json.loads((report_dir / "report.json").read_text())
    header = f"{'file':30}{'variant':16}{'mask AP':>9}{'drop':>8}{'box AP':>8}{'latency ms':>12}{'MB':>6}"
    lines = ["Accuracy vs precision (segtrt report; ONNX Runtime on CPU, FP16 and TensorRT INT8 emulated):", header]
    for row in rows:
        drop = f"{row['mask_ap_drop']:+8.4f}" if row.get("mask_ap_drop") is not None else f"{'':8}"
        lines.append(f"{row['file'][:29]:30}{row['variant'][:15]:16}{row['mask_ap']:9.3f}{drop}{row['box_ap']:8.3f}"
                     f"{row['latency_ms']:12.1f}{row['size_bytes'] / 1e6:6.1f}")
    return "\n".join(lines)


def _where(report_dir: Path, camera_dirs: dict[str, Path]) -> str:
    lines = ["", f"report: {report_dir / 'report.html'} (plots), report.md, report.json"]
    for name, camera_dir in camera_dirs.items():
        summary = json.loads((camera_dir / "summary.json").read_text())
        video = next(iter(sorted(camera_dir.glob("*.avi"))), camera_dir)
        lines.append(f"{name}: video {video} (annotated; JSON Lines beside it), summary {camera_dir / 'summary.json'} "
                     f"({summary['frames']} frames, {summary['fps']:.1f} FPS)")
    return "\n".join(lines)


def _run(argv: list[str]) -> None:
    from segtrt.cli import main as cli_main

    print(f"\n$ segtrt {shlex.join(argv)}", flush=True)
    status = cli_main(argv)
    if status:
        raise SegtrtError(f"`segtrt {argv[0]}` failed (exit {status}); see the message above")
