"""`segtrt run`: segment video files, image folders, cameras and streams, several at once, live.

    segtrt run --model model.onnx --source clip.mp4 --source rtsp://user:pass@cam/stream --out runs/cam

writes, per source, OUT/<n>_<name>.avi (annotated, MJPEG) and OUT/<n>_<name>.jsonl (a line per segmented frame, COCO RLE masks), and
OUT/summary.json (frames, fps, reconnects, dropped, corrupt, latency_ms per stage
p50/p95/p99, frame_age_ms, and the same per source). Runs until every file source
ended or reached --max-frames and every live source reached --max-frames; Ctrl-C
or SIGTERM stops it cleanly with every output complete.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path

from segtrt import SegtrtError

DEFAULT_THRESHOLD = 0.3
DEFAULT_BATCH_TIMEOUT_MS = 20.0
LIVE_REFRESH_S = 0.5


def add_arguments(parser) -> None:
    from segtrt.runtime.backends import add_backend_arguments
    from segtrt.runtime.camera.sources import DEFAULT_TIMEOUT_MS

    parser.add_argument("--model", required=True, help="an exported ONNX file (.onnx) or a segtrt checkpoint (.pt)")
    parser.add_argument("--source", required=True, action="append",
                        help="a video file, an image folder, a camera index (0), /dev/videoN, an rtsp://, http:// "
                             "or udp:// URL, or a GStreamer pipeline; repeat for several sources in one run")
    parser.add_argument("--out", required=True, help="output folder: annotated videos, JSON Lines, summary.json")
    parser.add_argument("--max-frames", type=int, help="stop each source after this many segmented frames")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON instead of a table")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                        help=f"keep detections scoring at least this (default {DEFAULT_THRESHOLD})")
    parser.add_argument("--batch-size", type=int,
                        help="frames per inference call (default: the model's fixed batch, else one per source)")
    parser.add_argument("--batch-timeout-ms", type=float, default=DEFAULT_BATCH_TIMEOUT_MS,
                        help="longest wait for a batch to fill once it has a frame "
                             f"(default {DEFAULT_BATCH_TIMEOUT_MS:g})")
    parser.add_argument("--timeout-ms", type=int, default=DEFAULT_TIMEOUT_MS,
                        help=f"open and read timeout of stream URLs before a reconnect (default {DEFAULT_TIMEOUT_MS})")
    add_backend_arguments(parser)


def main(args) -> int:
    from segtrt.files import atomic_write_text
    from segtrt.runtime.backends import open_backend
    from segtrt.runtime.camera.pipeline import Pipeline
    from segtrt.runtime.camera.sources import parse_source
    from segtrt.runtime.camera.stats import format_summary

    if not 0.0 <= args.threshold <= 1.0:
        raise SegtrtError(f"--threshold must lie in [0, 1], got {args.threshold}")
    for option in ("max_frames", "batch_size", "timeout_ms"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise SegtrtError(f"--{option.replace('_', '-')} must be at least 1, got {value}")
    specs = [parse_source(text, index) for index, text in enumerate(args.source)]
    backend = open_backend(args.model, args.provider, args.threads)
    batch_size = backend.batch_size or args.batch_size or len(specs)
    out = Path(args.out)
    pipeline = Pipeline(backend, specs, out, args.threshold, batch_size, args.batch_timeout_ms / 1000,
                        args.max_frames, args.timeout_ms)
    interrupted = []
    live = sys.stderr.isatty() and not args.json

    def on_signal(number, _frame):
        interrupted.append(signal.Signals(number).name)
        pipeline.stop()

    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {number: signal.signal(number, on_signal) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        pipeline.start()
        while not pipeline.done():
            pipeline.writer.join(LIVE_REFRESH_S)
            if live:
                print(f"\r{pipeline.live_line()}\x1b[K", end="", file=sys.stderr, flush=True)
    finally:
        pipeline.close()
        for number, handler in handlers.items():
            signal.signal(number, handler)
        if live:
            print(file=sys.stderr)
    summary = pipeline.summary(interrupted[0] if interrupted else None)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    if args.json:
        print(json.dumps(summary))
    else:
        print(format_summary(summary))
        print(f"outputs: {out} (videos, JSON Lines, summary.json)")
    if summary["error"]:
        raise SegtrtError(summary["error"])
    return 0
