"""`segtrt predict`: segment images with any model file and write what a person and a script need.

    segtrt predict --model python/segtrt/weights/solov2_edge.pt --source photos/ --out runs/predict

writes OUT/predictions.json (COCO results: one entry per detection with image_id,
file_name, category_id, bbox [x, y, w, h], score and segmentation as COCO RLE, all
at the original image size) and OUT/<image name>, each input with its detections
drawn. category_id is the label + 1 (class names in order, as `segtrt synth`
numbers its categories); the class names are in OUT/classes.json. No torch unless
the model is a checkpoint.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import numpy as np

from segtrt import SegtrtError

DEFAULT_THRESHOLD = 0.3
JPEG_QUALITY = 95


def add_arguments(parser) -> None:
    from segtrt.runtime.backends import add_backend_arguments

    parser.add_argument("--model", required=True, help="a segtrt checkpoint (.pt, PyTorch), ONNX file (.onnx) or "
                        "TensorRT engine (.engine/.plan from `segtrt build`)")
    parser.add_argument("--source", required=True, help="an image, a folder of images, or a glob ('photos/*.jpg')")
    parser.add_argument("--out", required=True, help="output folder (predictions.json, annotated images)")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                        help=f"keep detections scoring at least this (default {DEFAULT_THRESHOLD})")
    parser.add_argument("--batch-size", type=int, default=1,
                        help="images per forward pass (default 1; an ONNX file with a fixed batch uses its own)")
    parser.add_argument("--no-images", action="store_true", help="write predictions.json only")
    add_backend_arguments(parser)


def main(args) -> int:
    from segtrt.runtime.backends import open_backend
    from segtrt.runtime.sources import image_files

    if not 0.0 <= args.threshold <= 1.0:
        raise SegtrtError(f"--threshold must lie in [0, 1], got {args.threshold}")
    files = image_files(args.source)
    backend = open_backend(args.model, args.provider, args.threads)
    start = time.perf_counter()
    summary = predict_files(backend, files, Path(args.out), args.threshold, args.batch_size, not args.no_images)
    seconds = time.perf_counter() - start
    print(format_summary(summary, backend, len(files), seconds, Path(args.out)))
    return 0


def predict_files(backend, files, out: Path, threshold: float, batch_size: int = 1, annotate: bool = True) -> Counter:
    """Run `backend` over image files; write predictions.json, classes.json and annotated images to `out`.

    Returns the number of detections per class name.
    """
    import cv2

    from segtrt.files import atomic_write, atomic_write_text
    from segtrt.runtime.draw import draw_instances
    from segtrt.runtime.inference import predict_images
    from segtrt.runtime.sources import file_images

    class_names = backend.info.class_names
    names = _output_names(files)
    image_ids = {path: index + 1 for index, path in enumerate(files)}
    results, per_class = [], Counter()
    images = {}

    def remember(pairs):  # the loop decodes each image once; drawing needs it again
        for path, image in pairs:
            images[path] = image
            yield path, image

    for prediction in predict_images(backend, remember(file_images(files)), batch_size, progress="predict",
                                     total=len(files)):
        image = images.pop(prediction.key)
        instances = above_threshold(prediction.instances, threshold)
        results.extend(coco_results(instances, image_ids[prediction.key], prediction.key.name))
        per_class.update(class_names[label] for label in instances["labels"])
        if annotate:
            drawn = cv2.cvtColor(draw_instances(image, instances, class_names), cv2.COLOR_RGB2BGR)
            target = out / names[prediction.key]
            ok, encoded = cv2.imencode(target.suffix, drawn, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                raise SegtrtError(f"OpenCV cannot encode {target.suffix} images; cannot write {target}")
            atomic_write(target, lambda file: file.write(encoded.tobytes()))
    atomic_write_text(out / "predictions.json", json.dumps(results) + "\n")
    categories = [{"id": label + 1, "name": name} for label, name in enumerate(class_names)]
    atomic_write_text(out / "classes.json", json.dumps(categories, indent=1) + "\n")
    return per_class


def coco_results(instances: dict, image_id: int, file_name: str) -> list[dict]:
    """One COCO result dict per instance (bbox x, y, w, h; segmentation compressed RLE, counts as text)."""
    from pycocotools import mask as mask_utils

    results = []
    for box, score, label, mask in zip(instances["boxes"], instances["scores"], instances["labels"],
                                       instances["masks"]):
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        x1, y1, x2, y2 = (float(v) for v in box)
        results.append({
            "image_id": image_id, "file_name": file_name, "category_id": int(label) + 1,
            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score), "segmentation": rle,
        })
    return results


def format_summary(per_class: Counter, backend, images: int, seconds: float, out: Path) -> str:
    total = sum(per_class.values())
    classes = ", ".join(f"{count} {name}" for name, count in per_class.most_common()) or "none"
    return (f"{images} image(s), {total} detection(s) ({classes}) with {backend.name} in {seconds:.1f} s "
            f"({1000 * seconds / max(images, 1):.0f} ms per image, reading and writing included)\n"
            f"results: {out / 'predictions.json'}")


def above_threshold(instances: dict, threshold: float) -> dict:
    """The instances scoring at least `threshold`."""
    keep = instances["scores"] >= threshold
    return {key: value[keep] for key, value in instances.items()}


def _output_names(files) -> dict:
    """Annotated-image file name per input: its own name, numbered where two inputs share one."""
    names, seen = {}, Counter()
    for path in files:
        seen[path.name] += 1
        names[path] = path.name if seen[path.name] == 1 else f"{path.stem}_{seen[path.name]}{path.suffix}"
    return names
