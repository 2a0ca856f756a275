"""`segtrt demo`: the whole pipeline on built-in data, as the commands a user would type.

Today the pipeline is: synthetic data -> a brief training run -> evaluation, and for
every model shipped with segtrt: evaluation in PyTorch, export of the TensorRT graph,
and evaluation of that graph in ONNX Runtime (plugin nodes on their CPU twins). Each step is printed as the `segtrt`
command it runs, so the demo doubles as a tutorial.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from segtrt import SegtrtError
from segtrt.models import MODELS

WEIGHTS_DIR = Path(__file__).parent / "weights"
VALIDATION_SEED = 1000  # never used for training data


def shipped_checkpoints() -> dict[str, Path]:
    """The models shipped with segtrt: {file stem: path}, e.g. {"maskrcnn_edge": ...}."""
    return {path.stem: path for path in sorted(WEIGHTS_DIR.glob("*.pt"))}


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="runs/demo", help="working directory (default runs/demo)")
    parser.add_argument("--model", default="solov2", choices=list(MODELS),
                        help="model for the brief training run (default solov2)")
    parser.add_argument("--train-images", type=int, default=64, help="synthetic training images (default 64)")
    parser.add_argument("--val-images", type=int, default=50, help="synthetic validation images (default 50)")
    parser.add_argument("--iterations", type=int, default=30, help="brief training iterations (default 30)")


def main(args) -> int:
    out = Path(args.out)
    train_dir, val_dir = out / "train", out / "val"
    _run(["synth", "--out", str(train_dir), "--num-images", str(args.train_images), "--seed", "0"])
    _run(["synth", "--out", str(val_dir), "--num-images", str(args.val_images), "--seed", str(VALIDATION_SEED)])

    brief = out / f"{args.model}_brief.pt"
    _run(["train", "--model", args.model, "--data", str(train_dir), "--out", str(brief),
          "--iterations", str(args.iterations), "--warmup", str(max(1, args.iterations // 3)),
          "--checkpoint-every", str(args.iterations)])

    rows = []
    for name, checkpoint in [*shipped_checkpoints().items(), (f"{args.model}_brief", brief)]:
        rows.append((name, "PyTorch", _evaluate(["--checkpoint", str(checkpoint)], val_dir, out / f"{name}.pytorch")))
        if name in shipped_checkpoints():
            trt_onnx = out / f"{name}.trt.onnx"
            _run(["export", "--checkpoint", str(checkpoint), "--flavour", "trt", "--out", str(trt_onnx)])
            rows.append((name, "ORT, trt graph", _evaluate(["--onnx", str(trt_onnx)], val_dir, out / f"{name}.trt")))
    print()
    print(_summary(rows, args.val_images))
    return 0


def _evaluate(model_arguments: list[str], val_dir: Path, stem: Path) -> dict:
    metrics_path = stem.parent / f"{stem.name}.metrics.json"
    _run(["eval", *model_arguments, "--data", str(val_dir), "--json", str(metrics_path)])
    return json.loads(metrics_path.read_text())


def _run(argv: list[str]) -> None:
    from segtrt.cli import main as cli_main

    print(f"\n$ segtrt {shlex.join(argv)}", flush=True)
    status = cli_main(argv)
    if status:
        raise SegtrtError(f"`segtrt {argv[0]}` failed (exit {status}); see the message above")


def _summary(rows, val_images: int) -> str:
    header = f"{'model':18}{'backend':16}{'mask AP':>9}{'AP50':>7}{'AP75':>7}{'box AP':>8}{'boundary F':>12}"
    lines = [f"Accuracy on {val_images} synthetic validation images (seed {VALIDATION_SEED}):", header]
    for name, backend, metrics in rows:
        segm = metrics["segm"]
        lines.append(f"{name:18}{backend:16}{segm['AP']:9.3f}{segm['AP50']:7.3f}{segm['AP75']:7.3f}"
                     f"{metrics['bbox']['AP']:8.3f}{metrics['boundary_f']:12.3f}")
    return "\n".join(lines)
