"""Do PyTorch and the exported ONNX files (in ONNX Runtime) give the same detections?

Each image is letterboxed once; PyTorch's deployable outputs and each ONNX file's
go through the same `segtrt.runtime.postprocess.detections_to_instances`, so what is
compared is the graphs. Per image: the same count; instances paired by label and
box have boxes within BOX_RTOL relative (of max(|coordinate|, 1 px)) and masks with
IoU >= MIN_MASK_IOU, the masks as the graphs output them (thresholded at 0.5: a
box edge a hair either side of a pixel boundary moves a pasted row, and boxes are
compared on their own); and over the set, each backend's mask AP (pasted at the
original size, as deployed) within AP_TOLERANCE of PyTorch's.

A mask cell whose two probabilities differ by at most TIE_TOLERANCE counts as agreeing
even when they fall either side of the threshold: over thousands of masks some cell sits
within float noise of 0.5 (the shipped Mask R-CNN: min IoU 0.987 counted strictly, while
no probability of its 3898 masks differed by more than 4.6e-5). The report gives the
largest probability difference, so such ties stay visible.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segtrt import SegtrtError
from segtrt.runtime.postprocess import MASK_THRESHOLD

BOX_RTOL = 1e-3
MIN_MASK_IOU = 0.99
TIE_TOLERANCE = 1e-3
AP_TOLERANCE = 0.001


def compare_instances(reference: dict, candidate: dict, boxes_from_masks: bool = False) -> dict:
    """One image's detections vs the reference: {"count_equal", "labels_equal", "box_rel", "min_iou",
    "max_prob_diff", "box_ties"}; "boxes" are the graphs' (input pixels), "masks" their mask probabilities.

    Instances are paired by label and nearest box rather than by row, so two backends
    that order equal scores differently still compare as the same detections. With
    `boxes_from_masks` (SOLO: a box is the extent of its thresholded mask), a box that
    moved by at most one pixel while its mask probabilities agree within TIE_TOLERANCE
    is a threshold tie: counted in "box_ties", left out of "box_rel".
    """
    failed = {"box_rel": float("inf"), "min_iou": 0.0, "max_prob_diff": 1.0, "box_ties": 0}
    if len(reference["labels"]) != len(candidate["labels"]):
        return {"count_equal": False, "labels_equal": False, **failed}
    pairs = _pair_by_label_and_box(reference, candidate)
    if len(pairs) < len(reference["labels"]):
        return {"count_equal": True, "labels_equal": False, **failed}
    ref_rows, cand_rows = (np.array(rows, dtype=np.int64) for rows in zip(*pairs)) if pairs else ([], [])
    ref_boxes, cand_boxes = reference["boxes"][ref_rows], candidate["boxes"][cand_rows]
    box_error = np.abs(ref_boxes - cand_boxes)
    box_rel = (box_error / np.maximum(np.abs(ref_boxes), 1.0)).max(axis=1, initial=0.0)
    ious = [mask_iou(reference["masks"][i], candidate["masks"][j]) for i, j in pairs]
    prob_diffs = np.array([np.abs(reference["masks"][i] - candidate["masks"][j]).max() for i, j in pairs])
    ties = np.zeros(len(pairs), dtype=bool)
    if boxes_from_masks:
        ties = (box_rel > BOX_RTOL) & (box_error.max(axis=1, initial=0.0) <= 1.0)
        ties &= prob_diffs <= TIE_TOLERANCE
    return {
        "count_equal": True,
        "labels_equal": True,
        "box_rel": float(box_rel[~ties].max(initial=0.0)),
        "min_iou": float(min(ious)) if ious else 1.0,
        "max_prob_diff": float(prob_diffs.max(initial=0.0)),
        "box_ties": int(ties.sum()),
    }


def _pair_by_label_and_box(reference: dict, candidate: dict) -> list[tuple[int, int]]:
    """Greedy (reference row, candidate row) pairs: same label, smallest largest-coordinate difference."""
    unused = np.ones(len(candidate["labels"]), dtype=bool)
    pairs = []
    for row, (label, box) in enumerate(zip(reference["labels"], reference["boxes"])):
        distance = np.abs(candidate["boxes"] - box).max(axis=1) if len(unused) else np.zeros(0)
        distance[~unused | (candidate["labels"] != label)] = np.inf
        if len(distance) and np.isfinite(distance.min()):
            best = int(distance.argmin())
            unused[best] = False
            pairs.append((row, best))
    return pairs


def mask_iou(reference: np.ndarray, candidate: np.ndarray) -> float:
    """IoU of two probability masks thresholded at 0.5, cells within TIE_TOLERANCE of each other agreeing."""
    a = reference > MASK_THRESHOLD
    b = np.where(np.abs(reference - candidate) <= TIE_TOLERANCE, a, candidate > MASK_THRESHOLD)
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def run_parity(backends: list, images, total: int, dataset=None, progress: bool = False) -> dict:
    """Compare backends[0] (the reference, e.g. PyTorch) with each other backend over the same images.

    backends: segtrt.runtime.backends.Backend objects, each with its own pre- and
        post-processing facts (they must agree: the ONNX files carry the checkpoint's).
    images: a callable returning a fresh iterable of (key, RGB image) each time it is
        called (one pass per backend, run side by side); total: how many it yields.
    dataset: the CocoDataset the keys are image ids of, for mask/box AP; None (a bare
        image folder) leaves AP not computed.
    Returns {"images": n, "backends": {name: {"detections", "mask_AP", "box_AP", and for
    the candidates "worst_box_rel", "worst_mask_iou", "max_prob_diff", "box_ties",
    "count_mismatches", "label_mismatches", "passed"}}}; the APs are None without a dataset.
    """
    from segtrt.runtime.inference import predict_images

    names = [backend.name for backend in backends]
    if len(set(names)) != len(names):
        raise SegtrtError(f"backends to compare need distinct names, got {names}")
    streams = [predict_images(backend, images(), progress="parity" if progress and index == 0 else None, total=total)
               for index, backend in enumerate(backends)]
    boxes_from_masks = backends[0].info.mask_frame == "image"
    predictions = {name: [] for name in names}
    comparisons = {name: [] for name in names[1:]}
    for results in zip(*streams):
        reference = results[0]
        for name, result in zip(names, results):
            predictions[name].append(dict(result.instances, image_id=result.key))
            if result is not reference:
                comparisons[name].append(compare_instances(reference.outputs, result.outputs, boxes_from_masks))

    metrics = {name: None for name in names}
    if dataset is not None:
        from segtrt.evaluation.coco import evaluate_predictions

        coco_gt = dataset.coco_api()
        metrics = {name: evaluate_predictions(coco_gt, preds, dataset.category_ids)
                   for name, preds in predictions.items()}
    reference_ap = metrics[names[0]] and metrics[names[0]]["segm"]["AP"]
    rows = {names[0]: _backend_row(metrics[names[0]], predictions[names[0]], [], reference_ap)}
    for name in names[1:]:
        rows[name] = _backend_row(metrics[name], predictions[name], comparisons[name], reference_ap)
    return {"images": len(predictions[names[0]]), "backends": rows}


def _backend_row(metrics, predictions, comparisons, reference_ap) -> dict:
    row = {
        "detections": int(sum(len(p["labels"]) for p in predictions)),
        "mask_AP": metrics["segm"]["AP"] if metrics else None,
        "box_AP": metrics["bbox"]["AP"] if metrics else None,
    }
    if comparisons:
        matched = [c for c in comparisons if c["count_equal"]]
        row.update(
            count_mismatches=sum(not c["count_equal"] for c in comparisons),
            label_mismatches=sum(not c["labels_equal"] for c in matched),
            worst_box_rel=max((c["box_rel"] for c in matched), default=0.0),
            worst_mask_iou=min((c["min_iou"] for c in matched), default=1.0),
            max_prob_diff=max((c["max_prob_diff"] for c in matched), default=0.0),
            box_ties=sum(c["box_ties"] for c in matched),
        )
        row["passed"] = bool(
            row["count_mismatches"] == 0
            and row["label_mismatches"] == 0
            and row["worst_box_rel"] <= BOX_RTOL
            and row["worst_mask_iou"] >= MIN_MASK_IOU
            and (reference_ap is None or abs(row["mask_AP"] - reference_ap) <= AP_TOLERANCE)
        )
    return row


def format_report(report: dict) -> str:
    """A table of `run_parity`'s result."""
    header = (f"{'backend':14} {'dets':>6} {'mask AP':>8} {'box AP':>7} {'box rel':>9} {'min IoU':>8} "
              f"{'max |dp|':>9} {'count/label diff':>17}  verdict")
    lines = [f"parity over {report['images']} images", header, "-" * len(header)]
    for name, row in report["backends"].items():
        aps = " ".join(f"{'n/a':>{width}}" if row[key] is None else f"{row[key]:{width}.4f}"
                       for key, width in (("mask_AP", 8), ("box_AP", 7)))
        if "passed" not in row:
            lines.append(f"{name:14} {row['detections']:6d} {aps} {'':>9} {'':>8} {'':>9} {'':>17}  reference")
            continue
        diffs = f"{row['count_mismatches']}/{row['label_mismatches']}"
        lines.append(
            f"{name:14} {row['detections']:6d} {aps} {row['worst_box_rel']:9.2e} "
            f"{row['worst_mask_iou']:8.4f} {row['max_prob_diff']:9.2e} {diffs:>17}  {'PASS' if row['passed'] else 'FAIL'}"
            + (f" ({row['box_ties']} box(es) one pixel off at a mask-threshold tie)" if row["box_ties"] else "")
        )
    return "\n".join(lines)


# ---- `segtrt parity` ----------------------------------------------------------------------------------------

FULL_SIZE = (800, 1344)
SEEDED_SIZE = (192, 192)


def add_arguments(parser) -> None:
    from segtrt.models import MODELS
    from segtrt.runtime.backends import add_backend_arguments

    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="segtrt checkpoint (.pt)")
    source.add_argument("--model", choices=list(MODELS), help="seeded random weights of this model kind")
    parser.add_argument("--full-size", action="store_true",
                        help=f"with --model: the resnet50 architecture at {FULL_SIZE[0]}x{FULL_SIZE[1]}")
    images = parser.add_mutually_exclusive_group(required=True)
    images.add_argument("--data", help="dataset folder (annotations.json + images/): detections compared, AP reported")
    images.add_argument("--images", help="image folder, file or glob without annotations: detections compared only")
    parser.add_argument("--images-limit", type=int, help="only the first N images")
    parser.add_argument("--out", help="run folder for the ONNX files and parity.json "
                        "(default runs/parity/<checkpoint stem or model>)")
    parser.add_argument("--json", help="report path (default OUT/parity.json)")
    parser.add_argument("--reexport", action="store_true",
                        help="export again even where OUT holds ONNX files of this checkpoint")
    add_backend_arguments(parser)


def main(args) -> int:
    import json
    import time

    from segtrt.files import atomic_write_text
    from segtrt.models.backend import TorchBackend
    from segtrt.runtime.backends.onnxruntime import OnnxRuntimeBackend

    if args.images_limit is not None and args.images_limit < 1:
        raise SegtrtError(f"--images-limit must be at least 1, got {args.images_limit}")
    dataset, keys, load = _parity_images(args)
    model, class_names, preprocess, stem, source = _parity_model(args, dataset)
    out = Path(args.out or Path("runs") / "parity" / stem)
    exports = {flavour: _export_or_reuse(model, out / f"{stem}.{flavour}.onnx", flavour, class_names, preprocess,
                                         source, args.reexport)
               for flavour in ("portable", "trt")}
    backends = [TorchBackend(model, class_names, preprocess, args.threads)]
    backends += [OnnxRuntimeBackend(path, args.provider, args.threads) for path in exports.values()]
    start = time.perf_counter()
    report = run_parity(backends, lambda: ((key, load(key)) for key in keys), len(keys), dataset, progress=True)
    report.update(kind=model.kind, input_size=list(preprocess.input_size),
                  parity_seconds=time.perf_counter() - start, onnx={f: str(p) for f, p in exports.items()})
    print(format_report(report))
    report_path = Path(args.json) if args.json else out / "parity.json"
    atomic_write_text(report_path, json.dumps(report, indent=2) + "\n")
    print(f"report: {report_path}")
    return 0 if all(row.get("passed", True) for row in report["backends"].values()) else 1


def _parity_images(args):
    """(CocoDataset or None, the keys of the images to compare, key -> RGB image)."""
    from segtrt.data.coco import CocoDataset
    from segtrt.runtime.sources import image_files, read_image

    if args.data:
        dataset = CocoDataset(args.data)
        keys, load = dataset.image_ids, dataset.load_image
    else:
        dataset, keys, load = None, image_files(args.images), read_image
    return dataset, list(keys[: args.images_limit] if args.images_limit else keys), load


def _parity_model(args, dataset):
    """(model, class names, Preprocess, file stem, source id) of --checkpoint or --model."""
    from segtrt.data.synth import CLASS_NAMES
    from segtrt.files import file_sha256
    from segtrt.models import seeded_model
    from segtrt.models.checkpoint import load_checkpoint
    from segtrt.runtime.preprocess import Preprocess

    if args.checkpoint:
        model, meta = load_checkpoint(args.checkpoint)
        stem = Path(args.checkpoint).stem
        return model, meta["class_names"], meta["preprocess"], stem, file_sha256(args.checkpoint)
    class_names = dataset.class_names if dataset else list(CLASS_NAMES)
    backbone = "resnet50" if args.full_size else "edge"
    model = seeded_model(args.model, len(class_names), backbone)
    preprocess = Preprocess(input_size=FULL_SIZE if args.full_size else SEEDED_SIZE)
    stem = f"{args.model}_{backbone}_seeded"
    return model, class_names, preprocess, stem, f"seeded:{args.model}:{backbone}:{len(class_names)}"


def _export_or_reuse(model, path, flavour, class_names, preprocess, source, reexport: bool):
    """Export `flavour` to `path` unless it already holds an export of the same source and pre-processing."""
    from segtrt.export import export_onnx
    from segtrt.runtime.model_info import read_info

    if path.is_file() and not reexport:
        try:
            info = read_info(path)
        except SegtrtError:
            info = None
        if info and info.source == source and info.preprocess == preprocess and info.flavour == flavour:
            print(f"reusing {path} (exported from the same source; --reexport to export again)", flush=True)
            return path
    summary = export_onnx(model, path, flavour, class_names, preprocess, source=source)
    print(f"exported {summary.path} ({summary.size_mb:.1f} MB, {summary.nodes_before_simplify}->{summary.nodes} "
          f"nodes, {summary.seconds:.1f} s)", flush=True)
    return path
