#!/usr/bin/env python3
"""Throughput of segtrt's Python-backend model in a real tritonserver on 127.0.0.1, with 1 and N concurrent clients.

    python benchmarks/triton_throughput.py                                   # shipped maskrcnn_edge, 64 requests per run
    python benchmarks/triton_throughput.py --onnx m.portable.onnx --images data/val/images --clients 1 4 8

Writes a repository with `segtrt triton-repo`, serves it with the tritonserver of .venv-triton (`make
triton-venv`; CPU, Python backend), sends the same encoded images from each number of client threads
(each client waits for its answer before sending the next) and prints images/s, latency percentiles
and the average batch Triton's dynamic batcher formed (from the server's statistics). For reference,
the same model in this process: ONNX Runtime over the images one at a time (segtrt predict's loop).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

SHIPPED = Path(__file__).resolve().parents[1] / "python" / "segtrt" / "weights" / "maskrcnn_edge.pt"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=SHIPPED, help=f"exported first (default {SHIPPED.name})")
    parser.add_argument("--onnx", type=Path, help="an exported ONNX file instead of --checkpoint")
    parser.add_argument("--images", type=Path, help="image folder (default: 16 synthetic 192x192 images)")
    parser.add_argument("--requests", type=int, default=64, help="requests per client count (default 64)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4], help="client counts (default 1 4)")
    parser.add_argument("--instances", type=int, default=1, help="model instances (default 1)")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads per instance (default 2)")
    parser.add_argument("--max-batch", type=int, default=4, help="dynamic batcher's largest batch (default 4)")
    parser.add_argument("--queue-delay-us", type=int, default=2000, help="batcher's wait (default 2000)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args(argv)


def run_clients(url: str, images: list[bytes], requests: int, clients: int) -> dict:
    from segtrt.serving.client import infer

    def one(index: int) -> float:
        start = time.perf_counter()
        infer(url, "segtrt", images[index % len(images)])
        return time.perf_counter() - start

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = np.array(list(pool.map(one, range(requests))))
    seconds = time.perf_counter() - start
    return {"clients": clients, "requests": requests, "seconds": seconds, "images_per_s": requests / seconds,
            "latency_ms_p50": 1000 * float(np.percentile(latencies, 50)),
            "latency_ms_p95": 1000 * float(np.percentile(latencies, 95))}


def main(argv=None) -> int:
    from segtrt.cli import main as cli_main
    from segtrt.runtime.backends.onnxruntime import OnnxRuntimeBackend
    from segtrt.runtime.inference import predict_images
    from segtrt.runtime.sources import image_files, read_image
    from segtrt.serving.client import statistics
    from segtrt.serving.local import LocalTriton
    from segtrt.serving.repository import RepositoryOptions, write_repository

    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="segtrt-bench-triton-") as work:
        work = Path(work)
        onnx = args.onnx
        if onnx is None:
            onnx = work / f"{args.checkpoint.stem}.portable.onnx"
            if cli_main(["export", "--checkpoint", str(args.checkpoint), "--flavour", "portable",
                         "--out", str(onnx)]) != 0:
                return 2
        if args.images is None:
            from segtrt.data.synth import write_dataset

            write_dataset(work / "images", 16, seed=1000, size=(192, 192), progress=False)
            files = image_files(work / "images" / "images")
        else:
            files = image_files(args.images)
        images = [path.read_bytes() for path in files]
        repository = work / "repo"
        write_repository(repository, RepositoryOptions(max_batch=args.max_batch, instances=args.instances,
                                                       queue_delay_us=args.queue_delay_us, threads=args.threads),
                         onnx=onnx)

        backend = OnnxRuntimeBackend(onnx, threads=args.threads)
        decoded = [(path, read_image(path)) for path in files]
        list(predict_images(backend, decoded[:2]))  # warm-up
        start = time.perf_counter()
        count = 0
        while count < args.requests:
            count += len(list(predict_images(backend, decoded[: args.requests - count])))
        local = {"images_per_s": count / (time.perf_counter() - start)}

        rows = []
        started = time.perf_counter()
        with LocalTriton(repository, ["segtrt"]) as server:
            ready = time.perf_counter() - started
            run_clients(server.url, images, 4, 1)  # warm-up
            for clients in args.clients:
                before = statistics(server.url, "segtrt")
                row = run_clients(server.url, images, args.requests, clients)
                after = statistics(server.url, "segtrt")
                executions = int(after["execution_count"]) - int(before["execution_count"])
                row["mean_batch"] = (int(after["inference_count"]) - int(before["inference_count"])) / executions
                rows.append(row)

    print(f"\n{onnx.name}: {len(files)} images, {args.requests} requests per row; tritonserver ready in {ready:.1f} s; "
          f"{args.instances} instance(s) x {args.threads} ORT thread(s), max batch {args.max_batch}, "
          f"queue delay {args.queue_delay_us} us")
    print(f"{'clients':>7}  {'images/s':>8}  {'p50 ms':>7}  {'p95 ms':>7}  {'mean batch':>10}")
    for row in rows:
        print(f"{row['clients']:>7}  {row['images_per_s']:>8.2f}  {row['latency_ms_p50']:>7.0f}  "
              f"{row['latency_ms_p95']:>7.0f}  {row['mean_batch']:>10.2f}")
    print(f"in-process ONNX Runtime, one image at a time: {local['images_per_s']:.2f} images/s")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "local": local, "ready_seconds": ready}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
