"""`segtrt report --onnx FILE [FILE ...] --data DIR --out DIR`: DIR/report.json, report.md and report.html.

Every file is checked (segtrt metadata, or an engine's sidecar), the dataset read and the output folder
proved writable before the first model is measured; the three files are then written all or none.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

from segtrt import SegtrtError

REPORT_FILES = ("report.json", "report.md", "report.html")


def add_arguments(parser) -> None:
    from segtrt.runtime.backends import PROVIDERS

    parser.add_argument("--onnx", nargs="+", required=True, metavar="FILE",
                        help="model files to compare: exported or calibrated .onnx files (precision read from "
                             "their metadata), or TensorRT .engine/.plan files from `segtrt build` (GPU only)")
    parser.add_argument("--data", required=True, help="evaluation set: folder with annotations.json + images/, "
                                                      "or a COCO JSON file")
    parser.add_argument("--out", required=True, metavar="DIR", help="writes DIR/report.json, report.md, report.html")
    parser.add_argument("--images", help="image folder (default DATA/images, or images/ beside a JSON file)")
    parser.add_argument("--provider", choices=PROVIDERS, default="cpu",
                        help="ONNX Runtime execution provider for .onnx files (default cpu)")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads per model (default 1, so latencies compare across machines and runs)")
    parser.add_argument("--batch-size", type=int, default=4, help="images per forward pass in evaluation (default 4; "
                                                                  "latency always times one image per call)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls before timing (default 5)")
    parser.add_argument("--latency-images", type=int, metavar="N",
                        help="time N images (default: every evaluation image; the set repeats if N is larger)")


def main(args) -> int:
    from segtrt.report.measure import Settings, check_model_files, measure_models, open_dataset
    from segtrt.report.tables import summary_table, to_markdown

    if args.threads < 1 or args.warmup < 0 or args.batch_size < 1:
        raise SegtrtError("--threads and --batch-size must be at least 1, --warmup at least 0")
    if args.latency_images is not None and args.latency_images < 1:
        raise SegtrtError(f"--latency-images must be at least 1, got {args.latency_images}")
    files = check_model_files(args.onnx)
    dataset = open_dataset(args.data, args.images)
    out = Path(args.out)
    ensure_writable(out)
    settings = Settings(provider=args.provider, threads=args.threads, batch_size=args.batch_size,
                        warmup=args.warmup, latency_images=args.latency_images)
    rows = measure_models(files, dataset, settings)
    write_report(rows, out, command_line(args))
    print(to_markdown(summary_table(rows)))
    print(f"wrote {', '.join(str(out / name) for name in REPORT_FILES)}")
    return 0


def write_report(rows: list[dict], out: Path, command: str = "") -> None:
    """report.json, report.md and report.html in `out`, all or none (a failing write changes none)."""
    from segtrt.files import atomic_write_texts
    from segtrt.report.html import report_html
    from segtrt.report.tables import report_markdown

    texts = {out / "report.json": json.dumps(rows, indent=2) + "\n",
             out / "report.md": report_markdown(rows, command),
             out / "report.html": report_html(rows, command)}
    try:
        atomic_write_texts(texts)
    except OSError as error:
        raise SegtrtError(f"could not write the report to {out} ({error.strerror or error}); nothing was written") \
            from None


def ensure_writable(out: Path) -> None:
    """Create `out` and prove it takes files now, rather than after every model was measured."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SegtrtError(f"cannot create the report folder {out} ({error.strerror or error})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise SegtrtError(f"the report folder {out} is not writable")


def command_line(args) -> str:
    """The `segtrt report` command that reproduces this report (written into it)."""
    parts = ["segtrt", "report", "--onnx", *args.onnx, "--data", args.data, "--out", args.out]
    if args.images:
        parts += ["--images", args.images]
    parts += ["--provider", args.provider, "--threads", str(args.threads),
              "--batch-size", str(args.batch_size), "--warmup", str(args.warmup)]
    if args.latency_images is not None:
        parts += ["--latency-images", str(args.latency_images)]
    return shlex.join(parts)
