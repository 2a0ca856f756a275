"""Times the Matrix NMS CPU twin against a float32 BLAS product `masks @ masks.T` of the same masks, one thread each.

    PYTHONPATH=python .venv/bin/python plugins/matrixNMS/bench_matrix_nms.py [--library path/to/libsegtrt_cpu_ops.so]
        [--frame python/segtrt/weights/solov2_edge.pt]

Cases: SOLOv2 at 800x1344 (n = 500 masks of 200x336) and the shipped solov2_edge at 256x256 (n = 500 of 64x64).
The twin is its C function called directly (segtrt.ops.matrix_nms adds NumPy input checks), with nms_pre = n and
max_num = 100 as the SOLO graphs call it. --library times another build of the twin (e.g. an older commit's) through
the same C interface. Prints the best of --repeat runs per case.

--frame CHECKPOINT exports the checkpoint's trt flavour and runs it in ONNX Runtime on one thread over synthetic
images, timing the MatrixNMS node's CPU serving (ort_runtime.matrix_nms_padded: binarise, the twin, padding)
against the whole frame.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def masks_like_solo(rng, n, height, width):
    """n binary masks of blobs of every size, many overlapping (as SOLOv2's candidates for a few objects are)."""
    masks = np.zeros((n, height, width), np.float32)
    centres = rng.uniform(0.1, 0.9, (12, 2)) * (height, width)
    for i in range(n):
        cy, cx = centres[i % len(centres)] + rng.normal(0, 0.05, 2) * (height, width)
        ry, rx = rng.uniform(0.05, 0.3, 2) * (height, width)
        y0, y1 = int(max(cy - ry, 0)), int(min(cy + ry, height))
        x0, x1 = int(max(cx - rx, 0)), int(min(cx + rx, width))
        masks[i, y0:y1, x0:x1] = 1.0
    return masks


def best_of(repeat, function):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", help="libsegtrt_cpu_ops.so to time (default: segtrt.ops' own)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--frame", help="checkpoint whose trt flavour's frame time to split (e.g. solov2_edge.pt)")
    parser.add_argument("--frames", type=int, default=10)
    args = parser.parse_args()
    if args.library:
        os.environ["SEGTRT_OPS_LIB"] = os.path.abspath(args.library)
    import torch

    from segtrt.ops import _native

    torch.set_num_threads(1)
    print(f"twin: {_native.library_path()}")
    rng = np.random.default_rng(0)
    for name, n, height, width in [("SOLOv2 800x1344", 500, 200, 336), ("solov2_edge 256x256", 500, 64, 64)]:
        masks = masks_like_solo(rng, n, height, width).reshape(n, -1)
        labels = rng.integers(0, 3, n).astype(np.int32)
        scores = rng.uniform(0.05, 1.0, n).astype(np.float32)
        count = np.zeros(1, np.int32)
        keep = np.zeros(n, np.int32)
        kept_scores = np.zeros(n, np.float32)
        kept_labels = np.zeros(n, np.int32)

        def twin():
            _native.call(
                "segtrt_matrix_nms", _native.f32(masks), n, masks.shape[1], _native.i32(labels), _native.f32(scores),
                b"gaussian", 2.0, 0.5, n, 100, 0.05, _native.i32(count), _native.i32(keep), _native.f32(kept_scores),
                _native.i32(kept_labels),
            )

        tensor = torch.from_numpy(masks)
        twin_s = best_of(args.repeat, twin)
        blas_s = best_of(args.repeat, lambda: tensor @ tensor.T)
        words = (masks.shape[1] + 63) // 64
        print(f"{name}: n={n} masks {height}x{width}: twin {twin_s * 1e3:.1f} ms, float32 masks @ masks.T "
              f"{blas_s * 1e3:.1f} ms (twin/BLAS {twin_s / blas_s:.2f}); kernel workspace per image: bit masks "
              f"{n * words * 8 / 1e6:.1f} MB + intersections {n * n * 4 / 1e6:.1f} MB (was float masks "
              f"{n * masks.shape[1] * 4 / 1e6:.1f} MB + Gram {n * n * 4 / 1e6:.1f} MB)")

    if args.frame:
        frame_share(args.frame, args.frames)


def frame_share(checkpoint, frames):
    from segtrt import ort_runtime
    from segtrt.checkpoint import load_checkpoint
    from segtrt.data.synth import render_image
    from segtrt.export import export_onnx
    from segtrt.preprocess import to_model_input

    model, meta = load_checkpoint(checkpoint)
    spent = []
    served = ort_runtime.matrix_nms_padded

    def timed(*args):
        start = time.perf_counter()
        result = served(*args)
        spent.append(time.perf_counter() - start)
        return result

    ort_runtime.matrix_nms_padded = timed  # the custom op looks the name up at each call
    rng = np.random.default_rng(0)
    size = tuple(meta["preprocess"].input_size)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.trt.onnx"
        export_onnx(model, path, "trt", meta["class_names"], meta["preprocess"])
        session = ort_runtime.create_session(path, threads=1)
        images = [to_model_input([render_image(rng, size)[0]], meta["preprocess"])[0] for _ in range(frames + 1)]
        ort_runtime.run(session, images[0])  # warm-up
        spent.clear()
        start = time.perf_counter()
        for image in images[1:]:
            ort_runtime.run(session, image)
        frame = (time.perf_counter() - start) / frames
    nms = sum(spent) / frames
    print(f"{Path(checkpoint).name} trt flavour, ONNX Runtime 1 thread, {size[0]}x{size[1]}, {frames} frames: "
          f"{frame * 1e3:.1f} ms per frame, MatrixNMS node {nms * 1e3:.1f} ms ({100 * nms / frame:.1f}%)")


if __name__ == "__main__":
    main()
