"""`segtrt strip`: a training checkpoint made small for shipping (no optimizer state, fp16 weights)."""

from __future__ import annotations


def add_arguments(parser) -> None:
    parser.add_argument("--checkpoint", required=True, help="checkpoint written by `segtrt train`")
    parser.add_argument("--out", required=True, help="stripped checkpoint to write")


def main(args) -> int:
    from segtrt.models.checkpoint import strip_checkpoint

    size = strip_checkpoint(args.checkpoint, args.out)
    print(f"wrote {args.out} ({size / 1e6:.1f} MB, float16 weights, no training state)")
    return 0
