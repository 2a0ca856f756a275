"""`segtrt triton-repo`: a Triton Inference Server model repository for a segtrt model, and how to serve it."""

from __future__ import annotations

import argparse
from pathlib import Path

from segtrt.serving.repository import DEVICES, RepositoryOptions


def add_arguments(parser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "models written (NAME is --name):\n"
        "  NAME        Python backend running segtrt's runtime: one encoded image per request in, its detections\n"
        "              (boxes, scores, labels, masks at the original size) out; dynamic batching across requests\n"
        "  NAME_onnx   onnxruntime backend with the portable ONNX (from a portable --onnx only)\n"
        "  NAME_trt    tensorrt_plan with the engine and the plugin library it was built against (--engine only)\n"
        "examples:\n"
        "  segtrt triton-repo --onnx maskrcnn_edge.portable.onnx --out triton-repo\n"
        "  segtrt triton-repo --onnx maskrcnn_edge.portable.onnx --engine maskrcnn_edge.engine --out triton-repo\n"
        "  segtrt triton-repo --onnx v2.portable.onnx --out triton-repo --version 2    # add a version"
    )
    parser.add_argument("--onnx", type=Path, help="exported segtrt ONNX file (portable flavour for NAME_onnx)")
    parser.add_argument("--engine", type=Path, help="TensorRT engine from `segtrt build` (with its .json sidecar)")
    parser.add_argument("--out", type=Path, required=True, help="model repository folder (created or added to)")
    parser.add_argument("--name", default="segtrt", help="model name (default segtrt)")
    parser.add_argument("--version", type=int, default=1, help="model version folder to write (default 1)")
    parser.add_argument("--max-batch", type=int, default=8,
                        help="largest batch Triton's dynamic batcher forms (default 8; a raw model with a fixed "
                             "batch does not batch)")
    parser.add_argument("--queue-delay-us", type=int, default=2000,
                        help="how long the batcher waits to fill a batch, microseconds (default 2000)")
    parser.add_argument("--instances", type=int, default=1, help="model instances per device (default 1)")
    parser.add_argument("--device", choices=DEVICES, default="cpu",
                        help="where the ONNX and Python models run (default cpu; an engine runs on the GPU)")
    parser.add_argument("--threads", type=int, help="ONNX Runtime threads per Python-model instance")
    parser.add_argument("--plugins", type=Path, help="the plugin library the engine was built against "
                                                     "(default: segtrt's build output)")


def main(args) -> int:
    from segtrt.serving.local import DEFAULT_VENV, SEGTRT_PYTHON
    from segtrt.serving.repository import write_repository

    options = RepositoryOptions(name=args.name, max_batch=args.max_batch, instances=args.instances,
                                device=args.device, queue_delay_us=args.queue_delay_us, version=args.version,
                                threads=args.threads)
    repository = write_repository(args.out, options, onnx=args.onnx, engine=args.engine, plugins=args.plugins)
    print(f"wrote version {args.version} of {', '.join(repository.models)} in {repository.path}")
    print(f"serve it with Triton; its Python backend must import segtrt's runtime (pip install segtrt into that "
          f"Python, or a .pth file naming {SEGTRT_PYTHON} in its site-packages: the stub ignores PYTHONPATH):")
    print(f"  {repository.serve_command()}")
    if repository.plugin_library is not None:
        print(f"  (or LD_PRELOAD={repository.plugin_library} instead of --backend-config)")
    print(f"here, on CPU (Python backend only; `make triton-venv` makes {DEFAULT_VENV.name}):")
    print(f"  python -m segtrt.serving.local {repository.path} --model {args.name} --port 8000")
    return 0
