"""`segtrt eval`: COCO box and mask AP (pycocotools) and boundary F-score of a model.

`evaluate_predictions` is the core and needs no model: detections in
original-image coordinates from any source are scored the same way.
`evaluate_backend` runs any backend (PyTorch, ONNX Runtime, TensorRT) over a
dataset through the runtime's one loop and scores it. No torch here.
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np

from segtrt import SegtrtError

AP_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")  # the first six COCOeval stats


def add_arguments(parser) -> None:
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", help="segtrt checkpoint (.pt) from `segtrt train`, run in PyTorch")
    model.add_argument("--onnx", help="ONNX file from `segtrt export` (either flavour), run in ONNX Runtime")
    parser.add_argument("--data", required=True, help="dataset folder (annotations.json + images/) or COCO JSON")
    parser.add_argument("--images", help="image folder (default DATA/images, or images/ beside a JSON file)")
    parser.add_argument("--json", metavar="OUT", help="also write the metrics to this JSON file")
    parser.add_argument("--batch-size", type=int, default=4,
                        help="images per forward pass (default 4; an ONNX file with a fixed batch uses its own)")
    from segtrt.runtime.backends import add_backend_arguments

    add_backend_arguments(parser)


def main(args) -> int:
    from segtrt.files import atomic_write_text
    from segtrt.runtime.backends import open_backend

    backend = open_backend(args.checkpoint or args.onnx, args.provider, args.threads)
    metrics = evaluate_backend(backend, args.data, images=args.images, batch_size=args.batch_size)
    print(format_table(metrics))
    if args.json:
        atomic_write_text(args.json, json.dumps(metrics, indent=2) + "\n")
    return 0


def evaluate_predictions(coco_gt, predictions: list[dict], category_ids=None) -> dict:
    """COCO metrics of detections against a ground truth.

    coco_gt: pycocotools COCO object of the ground truth.
    predictions: one dict per evaluated image: {"image_id": int, "boxes": [n, 4] x1y1x2y2 pixels,
        "scores": [n], "labels": [n] 0-based, "masks": bool [n, h, w]}, all in original-image
        coordinates. Images of coco_gt without an entry are not evaluated.
    category_ids: COCO category id of each label; default the ground truth's ids in increasing order.
    Returns {"segm": {AP, AP50, AP75, APs, APm, APl}, "bbox": {...}, "boundary_f": float,
    "boundary_f_matches": int}; APs are fractions 0..1, -1 where undefined (as pycocotools).
    """
    from pycocotools import mask as mask_utils

    from segtrt.evaluation.boundary import boundary_f_score, boundary_tolerance, match_instances

    category_ids = list(category_ids) if category_ids is not None else sorted(coco_gt.getCatIds())
    box_results, mask_results, f_scores = [], [], []
    for prediction in predictions:
        image_id = int(prediction["image_id"])
        info = coco_gt.imgs[image_id]
        masks = np.asarray(prediction["masks"], dtype=bool)
        if masks.shape[1:] != (info["height"], info["width"]):
            raise SegtrtError(
                f"masks of image {image_id} are {masks.shape[1:]}, the image is {info['height']}x{info['width']}; "
                "map predictions back to original-image coordinates first"
            )
        labels = np.asarray(prediction["labels"]).astype(np.int64)
        scores = np.asarray(prediction["scores"], dtype=np.float64)
        boxes = np.asarray(prediction["boxes"], dtype=np.float64).reshape(-1, 4)
        for box, score, label, mask in zip(boxes, scores, labels, masks):
            common = {"image_id": image_id, "category_id": category_ids[label], "score": float(score)}
            box_results.append(dict(common, bbox=[box[0], box[1], box[2] - box[0], box[3] - box[1]]))
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode("ascii")
            mask_results.append(dict(common, segmentation=rle))

        gt_annotations = [a for a in coco_gt.imgToAnns[image_id] if not a.get("iscrowd", 0)]
        gt_masks = np.array([coco_gt.annToMask(a).astype(bool) for a in gt_annotations]).reshape(-1, *masks.shape[1:])
        gt_labels = np.array([category_ids.index(a["category_id"]) for a in gt_annotations], np.int64)
        tolerance = boundary_tolerance(info["height"], info["width"])
        for pred_index, gt_index in match_instances(masks, labels, scores, gt_masks, gt_labels):
            f_scores.append(boundary_f_score(masks[pred_index], gt_masks[gt_index], tolerance))

    image_ids = [int(p["image_id"]) for p in predictions]
    return {
        "segm": _coco_ap(coco_gt, mask_results, "segm", image_ids),
        "bbox": _coco_ap(coco_gt, box_results, "bbox", image_ids),
        "boundary_f": float(np.mean(f_scores)) if f_scores else -1.0,
        "boundary_f_matches": len(f_scores),
    }


def evaluate_backend(backend, data, images=None, batch_size: int = 4, progress: bool | str = True) -> dict:
    """Any backend (segtrt.runtime.backends) over a COCO dataset, scored at the original image size.

    progress: False for no progress bar, True for one labelled "eval", or the label itself."""
    from segtrt.data.coco import CocoDataset
    from segtrt.runtime.inference import predict_images

    dataset = CocoDataset(data, images)
    if list(backend.info.class_names) != dataset.class_names:
        raise SegtrtError(
            f"the model's classes {list(backend.info.class_names)} differ from the dataset's {dataset.class_names}; "
            "evaluate on a set with the categories the model was trained on"
        )
    results = predict_images(backend, dataset.iter_images(), batch_size, progress=_progress_label(progress),
                             total=len(dataset))
    predictions = [dict(result.instances, image_id=result.key) for result in results]
    return evaluate_predictions(dataset.coco_api(), predictions, dataset.category_ids)


def _progress_label(progress: bool | str) -> str | None:
    if isinstance(progress, str):
        return progress
    return "eval" if progress else None


def format_table(metrics: dict) -> str:
    """A readable table of `evaluate_predictions` output."""
    lines = [f"{'':6}" + "".join(f"{name:>8}" for name in AP_NAMES)]
    for kind in ("segm", "bbox"):
        lines.append(f"{kind:6}" + "".join(f"{metrics[kind][name]:8.3f}" for name in AP_NAMES))
    lines.append(
        f"boundary F-score {metrics['boundary_f']:.3f} over {metrics['boundary_f_matches']} matched instances "
        "(tolerance 0.75% of the image diagonal)"
    )
    return "\n".join(lines)


def _coco_ap(coco_gt, results: list[dict], iou_type: str, image_ids: list[int]) -> dict:
    """The six AP numbers of COCOeval for one IoU type; 0 for every defined AP when there are no results."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        if results:
            coco_dt = coco_gt.loadRes(results)
        else:  # loadRes cannot take an empty list
            coco_dt = COCO()
            coco_dt.dataset = dict(coco_gt.dataset, annotations=[])
            coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, iou_type)
        evaluator.params.imgIds = sorted(set(image_ids))
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(value) for name, value in zip(AP_NAMES, evaluator.stats[:6])}
