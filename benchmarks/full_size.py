"""Full-size performance of the R50 models: what a user meets at real resolutions.

For each model (kind and input size) it times PyTorch eager and ONNX Runtime on both exported flavours
(portable; trt with the plugin nodes on their CPU twins) and on the int8-cpu variant of the portable one
(segtrt calibrate --precision int8-cpu) over the same synthetic photos: median and p95
ms per image, peak resident memory of the process, and where ONNX Runtime spends the portable graph's
time (its profiler, grouped by stage). Each measurement runs in its own process, so peak memory is
that backend's alone.

    python benchmarks/full_size.py                                  # the README's table
    python benchmarks/full_size.py --models solov2:800x1344 --runs 5 --threads 1
    python benchmarks/full_size.py --checkpoint mine.pt --models solov2:800x1344
    python benchmarks/full_size.py --memory 100                     # ORT peak RSS over 100 runs
    python benchmarks/full_size.py --models solov2:800x1216:500     # SOLO capped at 500 candidates

A SOLO model's optional third field is its max_candidates (segtrt.models.solo): the ResNet default 0
(mmdetection's rule) computes the masks of the grid cells holding a (cell, class) pair above score_thr,
so its cost follows the photo; K > 0 computes K masks whatever the photo. The seeded classifier's bias
(SOLO_CLASS_BIAS) makes the timed photos pass about 2k pairs, as real COCO photos did through random
mmdetection weights; the table says how many. A trained model passes fewer and runs faster.

Weights are seeded and random (or a user's checkpoint), with frozen-BatchNorm statistics measured on
the photos themselves, so activations have a trained network's scale rather than random growth.

The int8-cpu file is calibrated on CALIBRATION_PHOTOS synthetic photos: enough for timing, since a u8 graph's
speed does not depend on its scales; its accuracy is measured on the shipped models (README "Calibration").
The fp16 and TensorRT-style int8 variants are not timed: ONNX Runtime's CPU kernels only emulate them (casts
and float convolutions between Q/DQ pairs), so their CPU time says nothing about a GPU's.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_MODELS = ("solov2:800x1216", "maskrcnn:800x1344")  # both R50 models in under 15 minutes here
BACKENDS = ("pytorch", "ort-portable", "ort-trt", "ort-int8-cpu")
CALIBRATION_PHOTOS = 2
STAGES = ("backbone", "heads", "mask kernels", "conv layout", "post-processing")  # of the portable graph
NUM_CLASSES = 80  # COCO's
# 1.6-2.0k (cell, class) pairs above score_thr on the timed photos (the real photos: 1.9-2.5k)
SOLO_CLASS_BIAS = -3.2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), metavar="KIND:HxW")
    parser.add_argument("--checkpoint", help="a segtrt checkpoint to time instead of seeded R50 weights")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--threads", nargs="+", type=int, default=[1, os.cpu_count() or 1])
    parser.add_argument("--runs", type=int, default=2, help="timed images per measurement, after one warm-up")
    parser.add_argument("--memory", type=int, metavar="N",
                        help="instead: ORT peak RSS after each of N runs of the first model's portable graph")
    parser.add_argument("--out", default="runs/bench", help="models and results (default runs/bench)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_measure(json.loads(args.worker))))
        return 0

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    specs = [_parse_model(text, args.checkpoint) for text in args.models]
    if args.memory:
        kind, size, options = specs[0]
        files = _prepare(kind, size, options, args.checkpoint, out)
        result = _in_worker({"backend": "ort-portable", "files": files, "size": size, "threads": 1,
                             "runs": args.memory, "warmup": 0, "memory_trace": True})
        trace = result["peak_rss_trace_mb"]
        marks = [n for n in (1, 2, 5, 10, 50, 100, args.memory) if n <= len(trace)]
        print(f"{kind} {size[0]}x{size[1]} portable, 1 thread: peak RSS after "
              + ", ".join(f"{n} runs {trace[n - 1]:.0f} MB" for n in sorted(set(marks))))
        growth = trace[-1] / trace[min(5, len(trace)) - 1] - 1
        print(f"growth after the first 5 runs: {growth:+.1%}")
        (out / "memory.json").write_text(json.dumps(result, indent=1))
        return 0

    rows = []
    for kind, size, options in specs:
        files = _prepare(kind, size, options, args.checkpoint, out, int8_cpu="ort-int8-cpu" in args.backends)
        candidates = {} if kind == "maskrcnn" else {"candidate_pairs": _candidate_pairs(files, size, args.runs)}
        for backend in args.backends:
            for threads in args.threads:
                job = {"backend": backend, "files": files, "size": size, "threads": threads,
                       "runs": args.runs, "warmup": 1, "profile": backend == "ort-portable" and threads == 1}
                result = _in_worker(job)
                rows.append({"model": _model_name(kind, size, options), **job, **candidates, **result})
                print(_row_text(rows[-1]), flush=True)
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    print()
    print(_table(rows))
    return 0


def _parse_model(text: str, checkpoint):
    """KIND:HxW[:MAX_CANDIDATES] -> (kind, (H, W), model options)."""
    kind, size, *rest = text.split(":")
    height, width = (int(v) for v in size.lower().split("x"))
    options = {"max_candidates": int(rest[0])} if rest else {}
    if options and (kind == "maskrcnn" or checkpoint):
        raise SystemExit(f"{text}: a max_candidates field is for seeded SOLO models only")
    return kind, (height, width), options


def _model_name(kind: str, size, options: dict) -> str:
    name = f"{kind} R50 {size[0]}x{size[1]}"
    return f"{name} K={options['max_candidates']}" if options else name


# ---- models and inputs ----------------------------------------------------------------------------

def _prepare(kind: str, size, options: dict, checkpoint, out: Path, int8_cpu: bool = False) -> dict:
    """Checkpoint, both exported flavours and (with int8_cpu) the portable one's int8-cpu variant for
    (kind, size, options), made once and reused."""
    suffix = f"_k{options['max_candidates']}" if options else ""
    stem = out / f"{kind}_r50_{size[0]}x{size[1]}{suffix}" if not checkpoint else out / f"{Path(checkpoint).stem}_{size[0]}x{size[1]}"
    files = {"checkpoint": checkpoint or f"{stem}.pt", "portable": f"{stem}.portable.onnx", "trt": f"{stem}.trt.onnx"}
    if not all(Path(f).is_file() for f in files.values()):
        _export(kind, size, options, checkpoint, files)
    if int8_cpu:
        files["int8-cpu"] = f"{stem}.int8-cpu.onnx"
        if not Path(files["int8-cpu"]).is_file():
            _quantize_for_cpu(files["portable"], files["int8-cpu"], size, out)
    return files


def _export(kind: str, size, options: dict, checkpoint, files: dict) -> None:
    from segtrt.export import export_onnx
    from segtrt.models.checkpoint import load_checkpoint, save_checkpoint
    from segtrt.runtime.preprocess import Preprocess

    if checkpoint:
        model, class_names, preprocess = _load(checkpoint, load_checkpoint)
        preprocess = Preprocess.from_dict({**preprocess.to_dict(), "input_size": list(size)})
    else:
        model, class_names, preprocess = _seeded_r50(kind, size, options)
        save_checkpoint(files["checkpoint"], model, class_names, preprocess)
    for flavour in ("portable", "trt"):
        print(f"exporting {files[flavour]} ...", flush=True)
        export_onnx(model, files[flavour], flavour, class_names, preprocess)


def _quantize_for_cpu(portable: str, target: str, size, out: Path) -> None:
    """segtrt calibrate --precision int8-cpu of `portable`, on CALIBRATION_PHOTOS photos written as PNG files."""
    import cv2

    from segtrt.calibration.images import CalibrationImages
    from segtrt.calibration.int8_cpu import int8_cpu_model
    from segtrt.files import atomic_write

    folder = out / f"photos_{size[0]}x{size[1]}"
    folder.mkdir(exist_ok=True)
    photos = _photos(size, CALIBRATION_PHOTOS, seed=2).numpy().transpose(0, 2, 3, 1).astype(np.uint8)
    for index, photo in enumerate(photos):
        cv2.imwrite(str(folder / f"photo{index}.png"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    print(f"quantizing {target} (int8-cpu, calibrated on {len(photos)} photos) ...", flush=True)
    model = int8_cpu_model(portable, CalibrationImages.sample(folder, count=len(photos)))
    data = model.SerializeToString()
    atomic_write(target, lambda file: file.write(data))  # an interrupted run leaves no half model to be reused


def _load(checkpoint, load_checkpoint):
    model, meta = load_checkpoint(checkpoint)
    return model, meta["class_names"], meta["preprocess"]


def _seeded_r50(kind: str, size, options: dict):
    """Seeded R50 weights whose frozen BatchNorm statistics are measured on the benchmark photos."""
    import torch

    from segtrt.models import seeded_model
    from segtrt.runtime.preprocess import Preprocess

    model = seeded_model(kind, NUM_CLASSES, "resnet50", **options)
    from torchvision.ops import FrozenBatchNorm2d

    def measure(module, inputs):
        (x,) = inputs
        module.running_mean.copy_(x.mean((0, 2, 3)))
        module.running_var.copy_(x.var((0, 2, 3)))

    hooks = [m.register_forward_pre_hook(measure) for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    with torch.no_grad():
        model(_photos(size, 2))
    for hook in hooks:
        hook.remove()
    if kind != "maskrcnn":
        with torch.no_grad():
            model.mask_head.conv_cls.bias.fill_(SOLO_CLASS_BIAS)
    class_names = [f"class{i}" for i in range(NUM_CLASSES)]
    return model, class_names, Preprocess(input_size=size)


def _photos(size, count: int, seed: int = 0):
    """Synthetic photo-like images [count, 3, H, W] float32 0..255 (segtrt synth's renderer)."""
    import torch

    from segtrt.data.synth import render_image

    rng = np.random.default_rng(seed)
    images = np.stack([render_image(rng, size)[0] for _ in range(count)]).transpose(0, 3, 1, 2)
    return torch.from_numpy(images.astype(np.float32))


# ---- one measurement, in its own process ------------------------------------------------------------

def _in_worker(job: dict) -> dict:
    command = [sys.executable, __file__, "--worker", json.dumps(job)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"measurement {job['backend']} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _timed_photos(size, runs: int, warmup: int):
    """(warm-up photos, timed photos) of a measurement, [1, 3, H, W] each: a cycle of at most 3 photos."""
    photos = _photos(size, min(runs + warmup, 3), seed=1).numpy()
    cycle = [photos[index % len(photos)][None] for index in range(warmup + runs)]
    return cycle[:warmup], cycle[warmup:]


def _candidate_pairs(files: dict, size, runs: int) -> list[int]:
    """A SOLO model's (cell, class) pairs above score_thr on each timed photo: its mask work follows them."""
    import torch

    from segtrt.models.checkpoint import load_checkpoint

    model, _ = load_checkpoint(files["checkpoint"])
    with torch.inference_mode():
        return [int(model.candidate_pairs(torch.from_numpy(photo))[0]) for photo in _timed_photos(size, runs, 1)[1]]


def _measure(job: dict) -> dict:
    warmup_photos, timed_photos = _timed_photos(tuple(job["size"]), job["runs"], job["warmup"])
    run = _runner(job)
    for photo in warmup_photos:
        run(photo)
    times, cpu_times, trace = [], [], []
    for photo in timed_photos:
        start, cpu_start = time.perf_counter(), time.process_time()
        run(photo)
        times.append((time.perf_counter() - start) * 1000)
        cpu_times.append((time.process_time() - cpu_start) * 1000)
        trace.append(_peak_rss_mb())
    # CPU time beside wall time: on a shared machine a worker may get a small share of a core (11% in
    # one run here), which inflates its wall time by whatever else runs at that moment.
    result = {"median_ms": statistics.median(times), "p95_ms": float(np.percentile(times, 95)),
              "median_cpu_ms": statistics.median(cpu_times), "peak_rss_mb": trace[-1]}
    if job.get("memory_trace"):
        result["peak_rss_trace_mb"] = trace
    if job.get("profile"):
        result["stages_ms"], result["top_ops_ms"], result["conv_ms"] = _profile(job, timed_photos[0])
        result["conv_gmacs"] = _convolution_gmacs(job["files"]["portable"])
        result["matmul_gmacs_per_s"] = _matrix_product_rate()
    return result


def _peak_rss_mb() -> float:
    """This process's own peak resident memory (the high-water mark of its address space), MB.

    Not getrusage's ru_maxrss: a child spawned by subprocess (vfork + exec) starts with its parent's
    peak, so every worker reported the exporting parent's 2588 MB."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def _runner(job: dict):
    threads = job["threads"]
    if job["backend"] == "pytorch":
        import torch

        from segtrt.models.checkpoint import load_checkpoint

        torch.set_num_threads(threads)
        model, _ = load_checkpoint(job["files"]["checkpoint"])

        def run(images):
            with torch.inference_mode():
                return model(torch.from_numpy(images))
        return run
    from segtrt.runtime.backends.onnxruntime import OnnxRuntimeBackend

    return OnnxRuntimeBackend(job["files"][job["backend"].removeprefix("ort-")], threads=threads)


def _profile(job: dict, image) -> tuple[dict, dict, float]:
    """(ms per stage, ms of the costliest op types, ms of all convolutions) of one run of the portable graph,
    from ONNX Runtime's profiler.

    Stages by the exported node names: backbone (+FPN), heads, SOLOv2's dynamic mask kernels (the
    top-level MatMul), convolution layout (ONNX Runtime's NCHWc reorders, which carry no scope), and
    post-processing (everything else: scoring, maskness, Matrix NMS, boxes)."""
    from segtrt.runtime.backends.onnxruntime import kernel_times

    stages, ops = collections.Counter(), collections.Counter()
    for (node_name, op_type), ms in kernel_times(job["files"]["portable"], [image], threads=1).items():
        stages[_stage(node_name, op_type)] += ms
        ops[op_type] += ms
    return dict(stages), dict(ops.most_common(6)), ops["Conv"] + ops["FusedConv"]


def _matrix_product_rate(size: int = 2048, repeats: int = 5) -> float:
    """GMAC/s of a size x size float32 matrix product in PyTorch on 1 thread: what one core's FP32 units give."""
    import torch

    torch.set_num_threads(1)
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return repeats * size**3 / (time.perf_counter() - start) / 1e9


def _convolution_gmacs(path) -> float:
    """Multiply-adds (1e9) of a fixed-size ONNX file's convolutions: output elements x weights per output."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    shapes = {value.name: [dim.dim_value for dim in value.type.tensor_type.shape.dim]
              for value in [*model.graph.value_info, *model.graph.output]}
    weights = {tensor.name: tensor.dims for tensor in model.graph.initializer}
    macs = 0
    for node in model.graph.node:
        if node.op_type == "Conv":
            output, weight = shapes[node.output[0]], weights[node.input[1]]
            macs += math.prod(output) * math.prod(weight[1:])
    return macs / 1e9


def _stage(node_name: str, op_type: str) -> str:
    scope = node_name.split("/")[1] if node_name.startswith("/") and node_name.count("/") > 1 else ""
    if scope == "backbone":
        return "backbone"
    # a head's last convolution fused with the activation after it takes the activation's top-level name
    # ("/Sigmoid_output_0_nchwc" is SOLO's category convolution): a convolution is never post-processing
    if scope in ("mask_head", "rpn", "roi_heads") or op_type in ("Conv", "FusedConv"):
        return "heads"
    if op_type in ("ReorderInput", "ReorderOutput"):
        return "conv layout"
    if op_type == "MatMul" and not scope:
        return "mask kernels"
    return "post-processing"


# ---- output ------------------------------------------------------------------------------------------

def _row_text(row: dict) -> str:
    return (f"{row['model']:28s} {row['backend']:13s} {row['threads']} thr  median {row['median_ms']:8.0f} ms  "
            f"p95 {row['p95_ms']:8.0f} ms  CPU {row['median_cpu_ms']:8.0f} ms  peak RSS {row['peak_rss_mb']:6.0f} MB")


def _table(rows: list[dict]) -> str:
    lines = ["| model | backend | threads | median ms | p95 ms | median CPU ms | peak RSS MB | post-processing share |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        stages = row.get("stages_ms")
        share = f"{stages['post-processing'] / sum(stages.values()):.1%}" if stages else ""
        lines.append(f"| {row['model']} | {row['backend']} | {row['threads']} | {row['median_ms']:.0f} | "
                     f"{row['p95_ms']:.0f} | {row['median_cpu_ms']:.0f} | {row['peak_rss_mb']:.0f} | {share} |")
    counted = {row["model"]: row["candidate_pairs"] for row in rows if "candidate_pairs" in row}
    if counted:
        lines += [""] + [f"{model}: the timed photos pass {', '.join(map(str, pairs))} (cell, class) pairs above "
                         "score_thr." for model, pairs in counted.items()]
    profiled = [row for row in rows if row.get("stages_ms")]
    if profiled:
        lines += ["", "ONNX Runtime's profile of the portable graph, 1 thread, ms of kernel time per image:", "",
                  "| model | " + " | ".join(STAGES) + " | costliest op types |",
                  "|---|" + "---|" * (len(STAGES) + 1)]
        for row in profiled:
            stages, ops = row["stages_ms"], row["top_ops_ms"]
            lines.append(f"| {row['model']} | " + " | ".join(f"{stages.get(s, 0):.0f}" for s in STAGES) + " | "
                         + ", ".join(f"{op} {ms:.0f}" for op, ms in ops.items()) + " |")
        # the rate a core's FP32 units allow bounds what any FP32 runtime on this CPU can gain
        lines += [""] + [f"{row['model']}: convolutions {row['conv_gmacs']:.1f} GMAC (multiply-adds) in "
                         f"{row['conv_ms']:.0f} ms, {row['conv_gmacs'] / row['conv_ms'] * 1000:.1f} GMAC/s on 1 thread "
                         f"(a 2048x2048 float32 matrix product in PyTorch, just after: "
                         f"{row['matmul_gmacs_per_s']:.1f} GMAC/s)." for row in profiled]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
