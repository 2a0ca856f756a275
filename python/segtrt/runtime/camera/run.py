"""`segtrt run`: segment video files, image folders, cameras and streams, several at once, live.

    segtrt run --model model.onnx --source clip.mp4 --source rtsp://user:pass@cam/stream --out runs/cam

writes, per source, OUT/<n>_<name>.avi (annotated, MJPEG) and OUT/<n>_<name>.jsonl (a line per segmented frame, COCO RLE masks), and
OUT/summary.json (frames, fps, reconnects, dropped, corrupt, latency_ms per stage
p50/p95/p99, frame_age_ms, and the same per source). Every frame carries its source's FPS
and frame age. --live-port serves the live view on localhost (segtrt.runtime.camera.live),
--snapshot-every writes JPEG snapshots, --show opens a window where OpenCV has a GUI and
there is a display. Runs until every file source ended or reached --max-frames and every
live source reached --max-frames; Ctrl-C, SIGTERM or q in the window stops it cleanly
with every output complete.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path

from segtrt import SegtrtError

DEFAULT_THRESHOLD = 0.3
DEFAULT_BATCH_TIMEOUT_MS = 20.0
LIVE_REFRESH_S = 0.5
WINDOW_WAIT_MS = 20


def add_arguments(parser) -> None:
    from segtrt.runtime.backends import add_backend_arguments
    from segtrt.runtime.camera.sources import DEFAULT_TIMEOUT_MS, MIN_OPEN_TIMEOUT_MS

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
                        help="read timeout of stream URLs, after which the source reconnects; opens wait as long, "
                             f"but at least {MIN_OPEN_TIMEOUT_MS} (an open probes about a second of stream) "
                             f"(default {DEFAULT_TIMEOUT_MS})")
    parser.add_argument("--live-port", type=int, metavar="PORT",
                        help="serve the live view (MJPEG per source, FPS, frame age, states, stage latencies) on "
                             "http://127.0.0.1:PORT/ (0: any free port; the URL is printed); for headless machines, "
                             "watch it through ssh -L PORT:127.0.0.1:PORT")
    parser.add_argument("--snapshot-every", type=int, metavar="N",
                        help="write every Nth annotated frame of each source to OUT/snapshots/ as JPEG")
    parser.add_argument("--show", action="store_true",
                        help="a window per source (q stops, s writes snapshots); needs an OpenCV with a GUI and a "
                             "display: PyPI's opencv-python-headless has no GUI, use --live-port there")
    add_backend_arguments(parser)


def main(args) -> int:
    from segtrt.files import atomic_write_text
    from segtrt.runtime.backends import open_backend
    from segtrt.runtime.camera.live import LiveServer, Window
    from segtrt.runtime.camera.pipeline import Pipeline
    from segtrt.runtime.camera.sources import parse_source
    from segtrt.runtime.camera.stats import format_summary

    if not 0.0 <= args.threshold <= 1.0:
        raise SegtrtError(f"--threshold must lie in [0, 1], got {args.threshold}")
    for option in ("max_frames", "batch_size", "timeout_ms", "snapshot_every"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise SegtrtError(f"--{option.replace('_', '-')} must be at least 1, got {value}")
    if args.live_port is not None and not 0 <= args.live_port <= 65535:
        raise SegtrtError(f"--live-port must lie in [0, 65535], got {args.live_port}")
    if args.show:
        Window.check()
    specs = [parse_source(text, index) for index, text in enumerate(args.source)]
    backend = open_backend(args.model, args.provider, args.threads)
    batch_size = backend.batch_size or args.batch_size or len(specs)
    server = LiveServer(args.live_port) if args.live_port is not None else None
    out = Path(args.out)
    pipeline = Pipeline(backend, specs, out, args.threshold, batch_size, args.batch_timeout_ms / 1000,
                        args.max_frames, args.timeout_ms, args.snapshot_every)
    window = Window(pipeline.latest, [spec.label for spec in specs], pipeline.snapshot) if args.show else None
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
        if server is not None:
            server.start(pipeline.latest, pipeline.live_figures)
            print(f"live view: {server.url}", file=sys.stderr, flush=True)
        printed = 0.0
        while not pipeline.done():
            if window is None or interrupted:  # stopping: the outputs are being flushed
                pipeline.writer.join(LIVE_REFRESH_S)
            elif window.refresh(WINDOW_WAIT_MS) == "q":
                interrupted.append("q")
                pipeline.stop()
            if live and time.monotonic() - printed >= LIVE_REFRESH_S:
                print(f"\r{pipeline.live_line()}\x1b[K", end="", file=sys.stderr, flush=True)
                printed = time.monotonic()
    finally:
        pipeline.close()
        if server is not None:
            server.stop()
        if window is not None:
            window.close()
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
