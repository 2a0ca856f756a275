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

import numpy as np

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


def run_parity(model, onnx_paths: dict, dataset, image_ids=None, progress=False) -> dict:
    """Compare PyTorch with each ONNX file ({name: path}) over dataset images (a segtrt CocoDataset).

    The ONNX files must take batch 1 (or a dynamic batch). Returns {"images": n,
    "backends": {name: {"detections", "mask_AP", "box_AP", "worst_box_rel", "worst_mask_iou",
    "count_mismatches", "label_mismatches", "passed"}}} with "pytorch" the reference.
    """
    from tqdm import tqdm

    from segtrt.evaluation.coco import evaluate_predictions
    from segtrt.runtime.model_info import read_info
    from segtrt.runtime.backends.onnxruntime import create_session, run
    from segtrt.models import deployable_outputs
    from segtrt.runtime.postprocess import detections_to_instances
    from segtrt.runtime.preprocess import to_model_input

    image_ids = list(dataset.image_ids if image_ids is None else image_ids)
    sessions = {name: (create_session(path), read_info(path)) for name, path in onnx_paths.items()}
    preprocess = next(iter(sessions.values()))[1].preprocess
    predictions = {name: [] for name in ("pytorch", *sessions)}
    comparisons = {name: [] for name in sessions}
    model.eval()
    for image_id in tqdm(image_ids, desc="parity", unit="image", disable=not progress):
        original = dataset.load_image(image_id)
        hw = original.shape[:2]
        batch, (scale,) = to_model_input([original], preprocess)
        backend_outputs = {"pytorch": deployable_outputs(model, batch)}
        backend_outputs.update({name: run(session, batch) for name, (session, _) in sessions.items()})
        graph_views = {}
        for name, outputs in backend_outputs.items():
            instances = detections_to_instances(outputs, model.mask_frame, preprocess.input_size, scale, hw)[0]
            predictions[name].append(dict(instances, image_id=image_id))
            count = len(instances["labels"])
            graph_views[name] = dict(instances, boxes=outputs["boxes"][0, :count], masks=outputs["masks"][0, :count])
        for name in sessions:
            comparisons[name].append(
                compare_instances(graph_views["pytorch"], graph_views[name], model.mask_frame == "image")
            )

    coco_gt = dataset.coco_api()
    metrics = {name: evaluate_predictions(coco_gt, preds, dataset.category_ids) for name, preds in predictions.items()}
    reference_ap = metrics["pytorch"]["segm"]["AP"]
    backends = {"pytorch": _backend_row(metrics["pytorch"], predictions["pytorch"], [], reference_ap)}
    for name in sessions:
        backends[name] = _backend_row(metrics[name], predictions[name], comparisons[name], reference_ap)
    return {"images": len(image_ids), "backends": backends}


def _backend_row(metrics, predictions, comparisons, reference_ap) -> dict:
    row = {
        "detections": int(sum(len(p["labels"]) for p in predictions)),
        "mask_AP": metrics["segm"]["AP"],
        "box_AP": metrics["bbox"]["AP"],
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
            and abs(row["mask_AP"] - reference_ap) <= AP_TOLERANCE
        )
    return row


def format_report(report: dict) -> str:
    """A table of `run_parity`'s result."""
    header = (f"{'backend':14} {'dets':>6} {'mask AP':>8} {'box AP':>7} {'box rel':>9} {'min IoU':>8} "
              f"{'max |dp|':>9} {'count/label diff':>17}  verdict")
    lines = [f"parity over {report['images']} images", header, "-" * len(header)]
    for name, row in report["backends"].items():
        if "passed" not in row:
            lines.append(f"{name:14} {row['detections']:6d} {row['mask_AP']:8.4f} {row['box_AP']:7.4f} "
                         f"{'':>9} {'':>8} {'':>9} {'':>17}  reference")
            continue
        diffs = f"{row['count_mismatches']}/{row['label_mismatches']}"
        lines.append(
            f"{name:14} {row['detections']:6d} {row['mask_AP']:8.4f} {row['box_AP']:7.4f} {row['worst_box_rel']:9.2e} "
            f"{row['worst_mask_iou']:8.4f} {row['max_prob_diff']:9.2e} {diffs:>17}  {'PASS' if row['passed'] else 'FAIL'}"
            + (f" ({row['box_ties']} box(es) one pixel off at a mask-threshold tie)" if row["box_ties"] else "")
        )
    return "\n".join(lines)
