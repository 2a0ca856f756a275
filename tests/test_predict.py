"""`segtrt predict`: COCO results that pycocotools loads and scores like `segtrt eval`, and annotated
images whose drawn masks sit where the detections are."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from segtrt.cli import main as cli_main
from segtrt.runtime.draw import MASK_OPACITY, class_colour

SHIPPED = Path(__file__).parents[1] / "python" / "segtrt" / "weights"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from segtrt.data.synth import write_dataset

    folder = tmp_path_factory.mktemp("val")
    write_dataset(folder, 4, seed=1000, size=(192, 192), progress=False)
    return folder


@pytest.mark.parametrize("name", ["maskrcnn_edge", "solov2_edge"])
def test_predictions_load_in_pycocotools_and_score_as_eval_does(name, dataset, tmp_path, capsys):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from segtrt.evaluation.coco import evaluate_backend
    from segtrt.runtime.backends import open_backend

    out = tmp_path / "out"
    assert cli_main(["predict", "--model", str(SHIPPED / f"{name}.pt"), "--source", str(dataset / "images"),
                     "--out", str(out), "--threshold", "0"]) == 0
    assert "4 image(s)" in capsys.readouterr().out
    results = json.loads((out / "predictions.json").read_text())
    assert results and {"image_id", "file_name", "category_id", "bbox", "score", "segmentation"} <= set(results[0])
    truth = COCO(str(dataset / "annotations.json"))
    detections = truth.loadRes(results)  # image ids and category ids follow the synthetic set's numbering
    evaluator = COCOeval(truth, detections, "segm")
    evaluator.evaluate(), evaluator.accumulate(), evaluator.summarize()
    expected = evaluate_backend(open_backend(SHIPPED / f"{name}.pt"), dataset, progress=False)
    assert evaluator.stats[0] == pytest.approx(expected["segm"]["AP"], abs=1e-9)
    assert evaluator.stats[0] > 0.2  # the shipped model finds the shapes


def test_annotated_images_show_each_mask_where_its_detection_is(dataset, tmp_path):
    from pycocotools import mask as mask_utils

    out = tmp_path / "out"
    assert cli_main(["predict", "--model", str(SHIPPED / "solov2_edge.pt"), "--source", str(dataset / "images" / "*.png"),
                     "--out", str(out), "--threshold", "0.3"]) == 0
    results = json.loads((out / "predictions.json").read_text())
    assert results and min(r["score"] for r in results) >= 0.3
    checked = 0
    for image_path in sorted((dataset / "images").glob("*.png")):
        original = cv2.imread(str(image_path)).astype(np.float32)
        drawn = cv2.imread(str(out / image_path.name)).astype(np.float32)
        mine = [r for r in results if r["file_name"] == image_path.name]
        masks = np.array([mask_utils.decode(r["segmentation"]).astype(bool) for r in mine]).reshape(-1, *original.shape[:2])
        coverage = masks.sum(0)
        untouched = coverage == 0
        for r in mine:  # boxes, outlines and labels are drawn too: keep well away from them
            x, y, w, h = r["bbox"]
            untouched[max(int(y) - 3, 0): int(y + h) + 3, max(int(x) - 3, 0): int(x + w) + 3] = False
            untouched[max(int(y) - 14, 0): int(y) + 14, max(int(x) - 3, 0): int(x) + 120] = False  # its label
        np.testing.assert_array_equal(drawn[untouched], original[untouched])  # nothing drawn elsewhere
        for r, mask in zip(mine, masks):
            inside = cv2.erode((mask & (coverage == 1)).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
            x, y, w, h = (int(v) for v in r["bbox"])
            inside[max(y - 14, 0): y + 3, :] = False  # the label sits above the box's top edge
            if inside.sum() < 10:
                continue
            colour = np.array(class_colour(r["category_id"] - 1)[::-1], np.float32)  # BGR on disk
            blended = original[inside] * (1 - MASK_OPACITY) + colour * MASK_OPACITY
            assert np.median(np.abs(drawn[inside] - blended)) <= 1.0, (image_path.name, r["category_id"])
            checked += 1
    assert checked >= 4


def test_bad_sources_are_one_line_errors(tmp_path, capsys):
    model = str(SHIPPED / "solov2_edge.pt")
    assert cli_main(["predict", "--model", model, "--source", str(tmp_path / "nothing"), "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    assert cli_main(["predict", "--model", model, "--source", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "cannot decode image" in capsys.readouterr().err
    assert not (tmp_path / "out" / "predictions.json").exists()
    assert cli_main(["predict", "--model", str(tmp_path / "broken.jpg"), "--source", str(tmp_path),
                     "--out", str(tmp_path / "out")]) == 2
    assert "unknown model file type" in capsys.readouterr().err
