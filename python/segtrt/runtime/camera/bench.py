"""Benchmarks of `segtrt run`, in one process and one run (the README's camera figures come from here):

    python -m segtrt.runtime.camera.bench --model runs/solov2_128.onnx --out runs/bench-camera

1. file: end-to-end FPS of the pipeline on a generated video against the bare inference FPS of the same
   backend and batch on the same frames (run_batch alone, no capture, pre/post-processing or output),
   alternating bare and pipeline passes so that a busy machine weighs on both alike. Target >= 0.95x.
2. live: an ffmpeg HTTP MPEG-TS stream on 127.0.0.1 faster than the model; p95 frame age (capture to
   inference start) against the model's frame interval (1 / bare FPS). Target < 2 intervals.
3. soak: --soak-frames segmented frames (10,000) of a live ffmpeg stream whose server is killed and
   restarted every --reconnect-every frames (1,000); resident memory after the first interval (warm-up)
   against the largest after it. Target < 5% growth, and one reconnect per restart.

Writes OUT/bench.json and prints a table. Needs ffmpeg (Debian's). --soak-model runs the soak on
another export (e.g. a smaller input, so 10,000 frames take minutes); --soak-frames 300
--reconnect-every 100 is a quick run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from segtrt import SegtrtError
from segtrt.runtime.camera import sources  # noqa: F401  (quiets FFmpeg's log before the first capture opens)

TARGET_FILE_RATIO = 0.95
TARGET_AGE_INTERVALS = 2.0
TARGET_SOAK_GROWTH = 0.05
STREAM_FPS = 25
MONITOR_S = 0.05


def ffmpeg_stream(video: Path, url: str) -> subprocess.Popen:
    """ffmpeg looping `video` in real time as MPEG-2 in MPEG-TS: serving http://127.0.0.1:PORT/... (to one
    client, -listen 1) or sending to udp://127.0.0.1:PORT. SegtrtError without ffmpeg. A video at the stream's
    rate opens quickly: FFmpeg's probe of a client's open reads about a second of stream (at 10 fps
    resampled to 25 it read past a 2 s open timeout)."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise SegtrtError("ffmpeg is not installed: `make setup` installs Debian's (requirements-system.txt)")
    listen = ["-listen", "1"] if url.startswith("http") else []
    target = url + ("?pkt_size=1316" if url.startswith("udp") else "")
    return subprocess.Popen([ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i",
                             str(video), "-c:v", "mpeg2video", "-q:v", "4", "-g", "5", "-f", "mpegts",
                             *listen, target], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port of 127.0.0.1 free now, for a TCP (or kind=socket.SOCK_DGRAM: UDP) server."""
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def resident_bytes() -> int:
    """This process's resident memory (Linux /proc)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def bare_fps(backend, inputs: np.ndarray, batch_size: int) -> float:
    """Frames per second of run_batch alone over model inputs [n, 3, H, W], in batches of batch_size."""
    from segtrt.runtime.inference import run_batch

    started = time.perf_counter()
    for start in range(0, len(inputs), batch_size):
        run_batch(backend, inputs[start:start + batch_size])
    return len(inputs) / (time.perf_counter() - started)


def run_pipeline(backend, sources: list[str], out: Path, batch_size: int, max_frames: int | None,
                 timeout_ms: int = 2000, monitor=None) -> dict:
    """One `segtrt run` in this process; monitor(pipeline) is called every MONITOR_S while it runs."""
    from segtrt.runtime.camera.pipeline import Pipeline
    from segtrt.runtime.camera.sources import parse_source

    specs = [parse_source(text, index) for index, text in enumerate(sources)]
    pipeline = Pipeline(backend, specs, out, threshold=0.3, batch_size=batch_size, batch_timeout_s=0.02,
                        max_frames=max_frames, timeout_ms=timeout_ms)
    try:
        pipeline.start()
        while not pipeline.done():
            pipeline.writer.join(MONITOR_S)
            if monitor is not None:
                monitor(pipeline)
    finally:
        pipeline.close()
    summary = pipeline.summary()
    if summary["error"]:
        raise SegtrtError(summary["error"])
    return summary


def bench_file(backend, video: Path, out: Path, passes: int) -> dict:
    """Part 1: pipeline FPS over a video file against bare inference FPS on the same frames."""
    import cv2

    from segtrt.runtime.preprocess import to_model_input

    capture, inputs = cv2.VideoCapture(str(video)), []
    while (image := capture.read()[1]) is not None:
        inputs.append(to_model_input([np.ascontiguousarray(image[..., ::-1])], backend.info.preprocess)[0])
    inputs = np.concatenate(inputs)
    batch_size = backend.batch_size or 1
    bare_fps(backend, inputs[:batch_size], batch_size)  # warm-up
    bare, pipeline = [], []
    for index in range(passes):
        bare.append(bare_fps(backend, inputs, batch_size))
        summary = run_pipeline(backend, [str(video)], out / f"file-{index}", batch_size, None)
        if summary["frames"] != len(inputs):
            raise SegtrtError(f"the pipeline segmented {summary['frames']} of {len(inputs)} frames")
        pipeline.append(summary["fps"])
    ratio = float(np.median(pipeline) / np.median(bare))
    return {"frames": len(inputs), "batch_size": batch_size, "passes": passes,
            "bare_fps": [round(v, 3) for v in bare], "pipeline_fps": [round(v, 3) for v in pipeline],
            "ratio": round(ratio, 3), "target": TARGET_FILE_RATIO, "met": ratio >= TARGET_FILE_RATIO}


def bench_live(backend, video: Path, out: Path, frames: int, interval_ms: float) -> dict:
    """Part 2: frame age of a live stream faster than the model."""
    url = f"http://127.0.0.1:{free_port()}/live.ts"
    server = ffmpeg_stream(video, url)
    try:
        summary = run_pipeline(backend, [url], out / "live", backend.batch_size or 1, frames)
    finally:
        stop_process(server)
    (source,) = summary["sources"]
    age_p95 = source["frame_age_ms"]["p95"]
    return {"frames": source["frames"], "stream_fps": STREAM_FPS, "model_interval_ms": round(interval_ms, 1),
            "frame_age_ms": source["frame_age_ms"], "total_latency_ms": source["latency_ms"]["total"],
            "dropped": source["dropped"], "age_p95_intervals": round(age_p95 / interval_ms, 3),
            "target": TARGET_AGE_INTERVALS, "met": age_p95 / interval_ms < TARGET_AGE_INTERVALS}


def bench_soak(backend, video: Path, out: Path, frames: int, reconnect_every: int) -> dict:
    """Part 3: a long live run with a server restart every reconnect_every frames; resident memory."""
    from tqdm import tqdm

    url = f"http://127.0.0.1:{free_port()}/live.ts"
    server = [ffmpeg_stream(video, url)]
    samples: list[tuple[int, int]] = []  # (segmented frames, resident bytes)
    restarts = [reconnect_every * k for k in range(1, (frames - 1) // reconnect_every + 1)]
    progress = tqdm(total=frames, desc="soak", unit="frame", disable=not sys.stderr.isatty())

    def monitor(pipeline) -> None:
        done = pipeline.stats[0].frames
        progress.update(done - progress.n)
        if not samples or done >= samples[-1][0] + max(1, reconnect_every // 10):
            samples.append((done, resident_bytes()))
        if restarts and done >= restarts[0]:
            restarts.pop(0)
            stop_process(server[0])
            server[0] = ffmpeg_stream(video, url)

    try:
        summary = run_pipeline(backend, [url], out / "soak", backend.batch_size or 1, frames, monitor=monitor)
    finally:
        stop_process(server[0])
        progress.close()
    warm = [rss for done, rss in samples if done <= reconnect_every]
    after = [rss for done, rss in samples if done > reconnect_every]
    baseline, peak = max(warm), max(after or warm)
    growth = peak / baseline - 1
    (source,) = summary["sources"]
    expected = (frames - 1) // reconnect_every
    return {"frames": source["frames"], "reconnect_every": reconnect_every, "server_restarts": expected,
            "reconnects": source["reconnects"], "dropped": source["dropped"], "corrupt": source["corrupt"],
            "seconds": summary["seconds"], "rss_mib_after_warmup": round(baseline / 2**20, 1),
            "rss_mib_peak_after": round(peak / 2**20, 1), "rss_mib_final": round(samples[-1][1] / 2**20, 1),
            "rss_growth": round(growth, 4), "target": TARGET_SOAK_GROWTH,
            "rss_mib_samples": [(done, round(rss / 2**20, 1)) for done, rss in samples],
            "met": growth < TARGET_SOAK_GROWTH and source["reconnects"] >= expected}


def main(argv=None) -> int:
    from segtrt.data.synth import write_demo_video
    from segtrt.files import atomic_write_text
    from segtrt.runtime.backends import open_backend

    parser = argparse.ArgumentParser(prog="python -m segtrt.runtime.camera.bench",
                                     description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="an exported .onnx (or engine) for parts 1 and 2")
    parser.add_argument("--soak-model", help="the model of the soak (default --model)")
    parser.add_argument("--out", required=True, help="output folder: bench.json, the runs' outputs")
    parser.add_argument("--threads", type=int, help="CPU threads of the backend (default: ONNX Runtime's)")
    parser.add_argument("--file-frames", type=int, default=60, help="frames of the generated video (default 60)")
    parser.add_argument("--passes", type=int, default=2, help="bare/pipeline pass pairs of part 1 (default 2)")
    parser.add_argument("--live-frames", type=int, default=60, help="segmented frames of part 2 (default 60)")
    parser.add_argument("--soak-frames", type=int, default=10_000, help="segmented frames of the soak (10000)")
    parser.add_argument("--reconnect-every", type=int, default=1000, help="server restart period, frames (1000)")
    parser.add_argument("--parts", default="file,live,soak", help="which parts, comma-separated (default all)")
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    if parts - {"file", "live", "soak"} or args.soak_frames <= args.reconnect_every:
        parser.error("--parts takes file, live and soak; --soak-frames must exceed --reconnect-every")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    backend = open_backend(args.model, "cpu", args.threads)
    height, width = backend.info.preprocess.input_size
    frame_hw = (height, width + width // 4)  # letterboxed like a camera's wider frame
    video = write_demo_video(out / "demo.mp4", args.file_frames, frame_hw, fps=STREAM_FPS)
    results = {"model": args.model, "backend": backend.name, "threads": args.threads, "frame_hw": frame_hw,
               "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()}
    if "file" in parts or "live" in parts:
        results["file"] = bench_file(backend, video, out, args.passes)
        print(f"file: pipeline {np.median(results['file']['pipeline_fps']):.2f} FPS vs bare inference "
              f"{np.median(results['file']['bare_fps']):.2f} FPS: {results['file']['ratio']:.3f}x", flush=True)
    if "live" in parts:
        interval_ms = 1000 / float(np.median(results["file"]["bare_fps"]))
        results["live"] = bench_live(backend, video, out, args.live_frames, interval_ms)
        live = results["live"]
        print(f"live: frame age p95 {live['frame_age_ms']['p95']:.0f} ms = {live['age_p95_intervals']:.2f} model "
              f"intervals of {interval_ms:.0f} ms ({live['dropped']} stale frames dropped)", flush=True)
    if "soak" in parts:
        soak_backend = open_backend(args.soak_model, "cpu", args.threads) if args.soak_model else backend
        results["soak_model"] = args.soak_model or args.model
        results["soak"] = bench_soak(soak_backend, video, out, args.soak_frames, args.reconnect_every)
        soak = results["soak"]
        print(f"soak: {soak['frames']} frames, {soak['reconnects']} reconnects for {soak['server_restarts']} "
              f"restarts, resident {soak['rss_mib_after_warmup']} MiB after warm-up, peak after "
              f"{soak['rss_mib_peak_after']} MiB: {100 * soak['rss_growth']:+.2f}%", flush=True)
    results["load_average_at_end"] = os.getloadavg()
    atomic_write_text(out / "bench.json", json.dumps(results, indent=1) + "\n")
    print(f"wrote {out / 'bench.json'}")
    return 0 if all(results[part]["met"] for part in ("file", "live", "soak") if part in results) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SegtrtError as error:
        sys.exit(f"bench: error: {error}")
