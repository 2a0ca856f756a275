"""How far torchvision's own Mask R-CNN detections move with the torch thread count alone.

    python benchmarks/torchvision_spread.py              # 1 and 4 threads against 2, tests/test_import.py's model

The model, photos and transform are tests/test_import.py's (seeded, perturbed maskrcnn_resnet50_fpn at scale
(384, 224), two 112x176 / 176x112 photos). Each photo goes through torchvision's transform once, on 2 threads,
then its backbone, RPN and box head run on that same tensor with 1, 2 and 4 torch threads: only the order of
float sums changes. The largest box and score differences against the 2-thread run (the thread count of the
tests' reference) are the floor under any bound on how closely another runtime (ONNX Runtime's own
convolutions, or a GPU) can reproduce torchvision on this random-weight model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_import import TORCHVISION_SHAPES, _photo_like, match_detections, torchvision_reference  # noqa: E402

REFERENCE_THREADS = 2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 4], help="thread counts set against 2")
    args = parser.parse_args()
    reference = torchvision_reference()
    print("| photo | threads | detections | max box diff px | max score diff |\n|---|---|---|---|---|")
    for seed, shape in enumerate(TORCHVISION_SHAPES):
        image = torch.from_numpy(_photo_like(shape, seed)).permute(2, 0, 1).float() / 255
        with torch.no_grad():
            torch.set_num_threads(REFERENCE_THREADS)
            batch, _ = reference.transform([image])
            base = _detections(reference, batch, REFERENCE_THREADS)
            for threads in args.threads:
                other = _detections(reference, batch, threads)
                order = match_detections(other, base["boxes"], base["labels"])
                print(f"| {shape[0]}x{shape[1]} | {threads} vs {REFERENCE_THREADS} | "
                      f"{len(other['boxes'])}/{len(base['boxes'])} | "
                      f"{np.abs(other['boxes'][order] - base['boxes']).max():.1e} | "
                      f"{np.abs(other['scores'][order] - base['scores']).max():.1e} |")
    return 0


def _detections(reference, batch, threads: int) -> dict:
    """torchvision's boxes, scores and labels (numpy) of the transformed `batch`, on `threads` torch threads."""
    torch.set_num_threads(threads)
    features = reference.backbone(batch.tensors)
    proposals, _ = reference.rpn(batch, features)
    detections = reference.roi_heads(features, proposals, batch.image_sizes)[0][0]
    return {key: value.numpy() for key, value in detections.items()}


if __name__ == "__main__":
    sys.exit(main())
