#!/usr/bin/env python3
"""CPU latency of ONNX variants in ONNX Runtime: the same images, one thread, one run each.

    python calib/bench_cpu_int8.py runs/solov2_edge.portable.onnx runs/solov2_edge.int8-cpu.onnx \
        --data /work/main/data/val --images 50 --threads 1

Prints per file the mean, p50 and p95 milliseconds of the model call (pre/post-processing excluded: it is the
same for every variant), the mean CPU milliseconds of the process over the same calls (time.process_time: on a
shared machine it moves less with load than wall time does), and the speed-up over the first file of each: mean
wall time, then CPU time. Warm-up: 3 calls, not timed. `--profile N` also prints the N op types ONNX Runtime's own
profiler spends most kernel time in, per image (plugin-free, i.e. portable-flavour, files only).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def main(argv=None) -> int:
    from segtrt.calibration.images import CalibrationImages
    from segtrt.runtime.backends.onnxruntime import OnnxRuntimeBackend

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("onnx", nargs="+", help="ONNX files; the first is the baseline")
    parser.add_argument("--data", required=True, help="image folder or COCO set")
    parser.add_argument("--images", type=int, default=50, help="images, the first N in sorted order (default 50)")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (default 1)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--profile", type=int, metavar="N", help="also print the N costliest op types per image")
    args = parser.parse_args(argv)

    images = CalibrationImages.sample(args.data, args.images, seed=0)
    baseline = baseline_cpu = None
    print(f"{'file':48}{'mean ms':>10}{'p50 ms':>10}{'p95 ms':>10}{'cpu ms':>10}{'speed-up':>10}{'cpu':>8}")
    for path in args.onnx:
        backend = OnnxRuntimeBackend(path, "cpu", args.threads)
        batches = list(images.model_inputs(backend.info.preprocess))
        for batch in batches[:args.warmup]:
            backend(batch)
        times, cpu_start = [], time.process_time()
        for batch in batches:
            start = time.perf_counter()
            backend(batch)
            times.append((time.perf_counter() - start) * 1000)
        cpu = (time.process_time() - cpu_start) * 1000 / len(batches)
        mean = float(np.mean(times))
        baseline, baseline_cpu = baseline or mean, baseline_cpu or cpu
        print(f"{path:48}{mean:10.1f}{np.percentile(times, 50):10.1f}{np.percentile(times, 95):10.1f}"
              f"{cpu:10.1f}{baseline / mean:9.2f}x{baseline_cpu / cpu:7.2f}x", flush=True)
        if args.profile:
            print("    " + op_profile(path, batches, args.threads, args.profile), flush=True)
    return 0


def op_profile(path, batches, threads: int, top: int) -> str:
    """'Conv 168.0, ReduceSum 93.8, ...': ms per image of the costliest op types, from ONNX Runtime's profiler."""
    import collections

    from segtrt.runtime.backends.onnxruntime import kernel_times
    from segtrt.runtime.model_info import read_info

    if read_info(path).flavour != "portable":
        return "(profile: portable-flavour files only; the trt flavour's plugins run as Python ops)"
    per_op = collections.Counter()
    for (_, op_type), ms in kernel_times(path, batches, threads).items():
        per_op[op_type] += ms / len(batches)
    return f"kernels {sum(per_op.values()):.1f} ms/image: " + ", ".join(
        f"{op} {ms:.1f}" for op, ms in per_op.most_common(top))


if __name__ == "__main__":
    sys.exit(main())
