"""`segtrt import`: foreign checkpoints become segtrt checkpoints that give their frameworks' detections.

torchvision is a project dependency, so its reference runs live here on a seeded,
perturbed maskrcnn_resnet50_fpn; mmdetection is not, so its reference outputs come
from tests/fixtures/mmdet (made once by tests/fixtures/make_mmdet_fixtures.py).
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torchvision
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from pycocotools import mask as mask_utils

from segtrt.cli import main
from segtrt.models.backend import TorchBackend
from segtrt.models.checkpoint import load_checkpoint
from segtrt.models.maskrcnn import MaskRCNN, load_torchvision_state_dict
from segtrt.runtime.backends import open_backend
from segtrt.runtime.inference import predict_images
from test_maskrcnn import _perturb_every_tensor
from test_preprocess import torch_threads

FIXTURES = Path(__file__).parent / "fixtures"
MMDET = FIXTURES / "mmdet"
MMDET_CONFIG = MMDET / "solov2_r18_tiny.py"
sys.path.insert(0, str(FIXTURES))
from mmdet_match import match_mmdet  # noqa: E402
from mmdet_weights import digest, seeded_state_dict  # noqa: E402

# mmdetection's detections are reproduced to float noise: an input change of 1e-3 grey levels moves this
# random-weight model's scores by up to 1.1e-4 (through Matrix NMS's binarised mask IoUs); measured
# differences to mmdetection: 7e-7 (PyTorch), 8e-5 (ONNX Runtime) on the wide and tall image, 1.3e-4 on one
# of the square image's 100 detections.
MMDET_SCORE_TOLERANCE = 2e-4

# torchvision's transform with a small (max_size, min_size), so the test is quick
TORCHVISION_SCALE = (384, 224)
# Original sizes whose resized sizes are multiples of 32: torchvision clips boxes to the resized image,
# segtrt to the padded input, and these agree only where the two are equal (README "torchvision").
TORCHVISION_SHAPES = [(112, 176), (176, 112)]
# ONNX Runtime's convolutions round differently from PyTorch's, and this perturbed random-weight net turns
# that into box differences: measured 1.6e-3 px and scores 2.2e-5 on the wide image (trt flavour, 224x352).
ONNX_BOX_TOLERANCE, ONNX_SCORE_TOLERANCE = 2.5e-3, 1e-4


def _photo_like(shape, seed):
    """A smooth random RGB uint8 image of (h, w)."""
    coarse = torch.rand(1, 3, 6, 8, generator=torch.Generator().manual_seed(seed))
    image = torch.nn.functional.interpolate(coarse, size=shape, mode="bilinear", align_corners=False)[0]
    return (image.permute(1, 2, 0).numpy() * 255).astype(np.uint8)


def torchvision_reference() -> torch.nn.Module:
    """torchvision's seeded, perturbed Mask R-CNN (91-way COCO classifier), built as maskrcnn_resnet50_fpn builds
    every pretrained or fine-tuned model: FrozenBatchNorm2d (with weights=None it uses nn.BatchNorm2d, whose
    eval arithmetic differs: README "torchvision")."""
    torch.manual_seed(0)
    body = torchvision.models.resnet50(norm_layer=torchvision.ops.FrozenBatchNorm2d)
    reference = torchvision.models.detection.MaskRCNN(
        _resnet_fpn_extractor(body, trainable_layers=3), num_classes=91,
        max_size=TORCHVISION_SCALE[0], min_size=TORCHVISION_SCALE[1]).eval()
    _perturb_every_tensor(reference)
    return reference


@pytest.fixture(scope="module")
def torchvision_model(tmp_path_factory):
    """(torchvision_reference(), its state dict file)."""
    reference = torchvision_reference()
    path = tmp_path_factory.mktemp("torchvision") / "maskrcnn.pth"
    torch.save(reference.state_dict(), path)
    return reference, path


@pytest.fixture(scope="module")
def torchvision_photos(torchvision_model):
    """[(key, RGB uint8 image)] and torchvision's own detections of each (its transform, network and paste),
    on 2 torch threads: on 1, torch resizes 3-channel images with another kernel (see bilinear_resize)."""
    reference, _ = torchvision_model
    images = [(index, _photo_like(shape, index)) for index, shape in enumerate(TORCHVISION_SHAPES)]
    with torch.no_grad(), torch_threads(2):
        expected = [reference([torch.from_numpy(image).permute(2, 0, 1).float() / 255])[0] for _, image in images]
    return images, expected


@pytest.fixture(scope="module")
def imported_torchvision(torchvision_model, tmp_path_factory):
    _, state_dict = torchvision_model
    out = tmp_path_factory.mktemp("imported") / "maskrcnn.pt"
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        assert main(["import", "--from", "torchvision", str(state_dict), "--out", str(out),
                     "--set", f"scale={TORCHVISION_SCALE}"]) == 0
    expected = "min_max to (384, 224), pad to /32, RGB, normalise before_resize, paste rule torchvision"
    assert expected in summary.getvalue()
    return out


def test_torchvision_import_gives_torchvisions_detections_bit_for_bit(imported_torchvision, torchvision_photos):
    """segtrt normalises before resizing as torchvision does, so its input is torchvision's tensor bit for bit
    (tests/test_preprocess.py) and, with the network's arithmetic torchvision's (the test below), so are
    the boxes, scores and labels, in torchvision's order."""
    model, meta = load_checkpoint(imported_torchvision)
    preprocess = meta["preprocess"]
    assert (preprocess.resize, preprocess.normalise, preprocess.paste) == ("min_max", "before_resize", "torchvision")
    assert meta["class_names"][0] == "person" and meta["class_names"][11] == "N/A" and len(meta["class_names"]) == 90
    backend = TorchBackend(model, meta["class_names"], preprocess)
    images, expected = torchvision_photos
    for prediction, reference in zip(predict_images(backend, images), expected):
        got = prediction.instances
        assert len(got["boxes"]) == len(reference["boxes"]) >= 50
        np.testing.assert_array_equal(got["boxes"], reference["boxes"].numpy())
        np.testing.assert_array_equal(got["scores"], reference["scores"].numpy())
        np.testing.assert_array_equal(got["labels"], reference["labels"].numpy() - 1)
        # torchvision's paste rule: its masks thresholded at 0.5; measured: 1 of 3.9 M pixels differs, at
        # probability 0.5 exactly (torch pastes boxes of h + w <= 128 px with its vectorised bilinear kernel,
        # which rounds differently from the generic one segtrt reproduces)
        probabilities = reference["masks"][:, 0].numpy()
        settled = np.abs(probabilities - 0.5) > 1e-6
        np.testing.assert_array_equal(got["masks"][settled], (probabilities > 0.5)[settled])


def test_exported_torchvision_import_predicts_torchvisions_detections(imported_torchvision, torchvision_photos,
                                                                      tmp_path):
    """The exported graph takes the normalised tensor (its input feeds the first convolution) and, at the
    wide image's padded size, gives torchvision's detections to ONNX Runtime's arithmetic."""
    out = tmp_path / "maskrcnn.onnx"
    assert main(["export", "--checkpoint", str(imported_torchvision), "--flavour", "trt", "--out", str(out),
                 "--input-size", "224", "352", "--no-simplify"]) == 0
    graph = onnx.load(out)
    assert [node.op_type for node in graph.graph.node if graph.graph.input[0].name in node.input] == ["Conv"]
    backend = open_backend(out)
    assert backend.info.preprocess.normalise == "before_resize"
    images, expected = torchvision_photos
    (prediction,) = predict_images(backend, images[:1])
    got, reference = prediction.instances, expected[0]
    assert len(got["boxes"]) == len(reference["boxes"]) >= 50
    order = match_detections(got, reference["boxes"].numpy(), reference["labels"].numpy() - 1)
    np.testing.assert_allclose(got["boxes"][order], reference["boxes"].numpy(), rtol=0, atol=ONNX_BOX_TOLERANCE)
    np.testing.assert_allclose(got["scores"][order], reference["scores"].numpy(), rtol=0, atol=ONNX_SCORE_TOLERANCE)


def test_torchvision_network_is_torchvisions_bit_for_bit(torchvision_model):
    """Same input tensor -> the same features, proposals and boxes: segtrt's RPN, RoIAlign, box decoding and
    padded NMS do torchvision's arithmetic in torchvision's order."""
    reference, state_dict = torchvision_model
    model = MaskRCNN(90, backbone="resnet50").eval()
    load_torchvision_state_dict(model, torch.load(state_dict, weights_only=True))
    image = torch.from_numpy(_photo_like(TORCHVISION_SHAPES[0], 0)).permute(2, 0, 1).float() / 255
    with torch.no_grad():
        batch, _ = reference.transform([image])
        features = reference.backbone(batch.tensors)
        proposals, _ = reference.rpn(batch, features)
        expected = reference.roi_heads(features, proposals, batch.image_sizes)[0][0]
        pyramid = list(model.backbone(batch.tensors).values())
        image_size = tuple(batch.tensors.shape[-2:])
        ours, valid = model.rpn(pyramid, image_size)
        count, boxes, scores, labels, _ = model.roi_heads(pyramid[:4], ours, valid, image_size)
    assert torch.equal(ours[0][valid[0]], proposals[0])
    assert int(count[0]) == len(expected["boxes"]) >= 50
    assert torch.equal(boxes[0, : int(count[0])], expected["boxes"])
    assert torch.equal(scores[0, : int(count[0])], expected["scores"])
    assert torch.equal(labels[0, : int(count[0])].long() + 1, expected["labels"])


def match_detections(got: dict, boxes: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """For each expected detection, the index of ours with its label and the nearest box (each used once):
    scores within float noise of each other may come in either order."""
    order, free = [], np.ones(len(got["labels"]), bool)
    for box, label in zip(boxes, labels):
        distance = np.abs(got["boxes"] - box).max(axis=1) + np.where(free & (got["labels"] == label), 0, np.inf)
        order.append(int(distance.argmin()))
        free[order[-1]] = False
    return np.array(order)


def _fails(capsys, *argv) -> str:
    assert main(list(argv)) == 2
    message = capsys.readouterr().err.strip()
    assert "\n" not in message and "Traceback" not in message
    return message


def test_bad_torchvision_inputs_are_one_clear_line(torchvision_model, tmp_path, capsys):
    _, state_dict = torchvision_model
    out = str(tmp_path / "out.pt")
    weights = torch.load(state_dict, weights_only=True)
    mmdet_like = tmp_path / "mmdet_like.pth"
    torch.save({"state_dict": {"mask_head.conv_cls.weight": torch.zeros(80, 8, 3, 3)}}, mmdet_like)
    assert "use --from mmdet" in _fails(capsys, "import", "--from", "torchvision", str(mmdet_like), "--out", out)
    assert "use --from torchvision" in _fails(capsys, "import", "--from", "mmdet", str(state_dict), "--out", out)
    few_classes = tmp_path / "few.pth"
    torch.save({**weights, "roi_heads.box_predictor.cls_score.weight": torch.zeros(4, 1024),
                "roi_heads.box_predictor.cls_score.bias": torch.zeros(4),
                "roi_heads.box_predictor.bbox_pred.weight": torch.zeros(16, 1024),
                "roi_heads.box_predictor.bbox_pred.bias": torch.zeros(16)}, few_classes)
    assert "3 classes and the checkpoint names none" in _fails(
        capsys, "import", "--from", "torchvision", str(few_classes), "--out", out)
    assert "names 2 classes, the weights have 3" in _fails(
        capsys, "import", "--from", "torchvision", str(few_classes), "--out", out, "--set", "class_names=a,b")
    pickled = tmp_path / "pickled.pth"
    torch.save({"model": weights, "args": torch.nn.Identity()}, pickled)
    assert "pickled Python objects" in _fails(capsys, "import", "--from", "torchvision", str(pickled), "--out", out)
    assert "unknown Mask R-CNN option" in _fails(
        capsys, "import", "--from", "torchvision", str(state_dict), "--out", out, "--set", "max_candidate=5")
    assert "unknown normalise step 'after_resize'" in _fails(
        capsys, "import", "--from", "torchvision", str(state_dict), "--out", out, "--set", "normalise=after_resize")
    assert not (tmp_path / "out.pt").exists()


# ---- mmdetection ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mmdet_spec():
    return json.loads((MMDET / "shapes.json").read_text())


@pytest.fixture(scope="module")
def mmdet_weights(mmdet_spec):
    weights = seeded_state_dict(mmdet_spec["shapes"], mmdet_spec["seed"], mmdet_spec["class_bias"])
    assert digest(weights) == mmdet_spec["digest"], "torch's generator no longer makes the fixture's weights"
    return weights


@pytest.fixture(scope="module")
def mmdet_checkpoint(mmdet_spec, mmdet_weights, tmp_path_factory):
    """The fixture model as mmdetection's Runner saves it (meta with the class names, state_dict)."""
    path = tmp_path_factory.mktemp("mmdet") / "solov2_r18_tiny.pth"
    torch.save({"meta": {"dataset_meta": {"classes": mmdet_spec["classes"]}}, "state_dict": mmdet_weights}, path)
    return path


@pytest.fixture(scope="module")
def imported_solov2(mmdet_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("imported") / "solov2.pt"
    assert main(["import", "--from", "mmdet", str(mmdet_checkpoint), "--config", str(MMDET_CONFIG),
                 "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def mmdet_expected():
    return json.loads((MMDET / "expected.json").read_text())["images"]


def assert_predict_gives_mmdetections_detections(model, expected: dict, out: Path, names=None) -> None:
    """`segtrt predict` over the fixture images: every mmdetection detection has one of ours with its label,
    a mask IoU >= 0.99 at the original size and its score."""
    source = out / "images"
    source.mkdir(parents=True)
    for name in names or expected:
        (source / name).write_bytes((MMDET / name).read_bytes())
    assert main(["predict", "--model", str(model), "--source", str(source), "--out", str(out / "predictions"),
                 "--threshold", "0", "--no-images"]) == 0
    results = json.loads((out / "predictions" / "predictions.json").read_text())
    for name in names or expected:
        rows = [row for row in results if row["file_name"] == name]
        instances = {"labels": np.array([row["category_id"] - 1 for row in rows]),
                     "scores": np.array([row["score"] for row in rows]),
                     "masks": np.array([mask_utils.decode(row["segmentation"]).astype(bool) for row in rows])}
        figures = match_mmdet(instances, expected[name])
        assert figures["detections"] == figures["expected"] == figures["matched"] >= 50, (name, figures)
        assert figures["max_score_diff"] <= MMDET_SCORE_TOLERANCE, (name, figures)


def test_mmdet_import_records_the_config(imported_solov2, mmdet_spec):
    model, meta = load_checkpoint(imported_solov2)
    assert (model.kind, model.backbone_name, model.num_classes) == ("solov2", "resnet18", 3)
    assert meta["class_names"] == list(mmdet_spec["classes"])
    options = model.options
    assert (options["feat_channels"], options["stacked_convs"], options["norm_groups"]) == (64, 2, 8)
    assert (options["mask_feat_channels"], options["mask_out_channels"], options["fpn_channels"]) == (32, 32, 64)
    assert options["max_candidates"] == 0 and options["nms_pre"] == 500
    preprocess = meta["preprocess"]
    assert (preprocess.resize, preprocess.scale, preprocess.paste) == ("keep_ratio", (448, 320), "mmdet")
    assert not preprocess.fixed_size and preprocess.input_size == (448, 448)


def test_mmdet_import_predicts_mmdetections_detections(imported_solov2, mmdet_expected, tmp_path):
    assert_predict_gives_mmdetections_detections(imported_solov2, mmdet_expected, tmp_path)


def test_exported_mmdet_import_predicts_mmdetections_detections(imported_solov2, mmdet_expected, tmp_path):
    out = tmp_path / "solov2.onnx"
    assert main(["export", "--checkpoint", str(imported_solov2), "--out", str(out), "--no-simplify"]) == 0
    wide_and_tall = list(mmdet_expected)[:2]
    for flavour in ("trt", "portable"):
        model = tmp_path / f"solov2.{flavour}.onnx"
        assert not open_backend(model).info.preprocess.fixed_size  # the graph takes each image's padded size
        assert_predict_gives_mmdetections_detections(model, mmdet_expected, tmp_path / flavour, wide_and_tall)


def test_mmdet_import_without_config_infers_the_widths(mmdet_checkpoint, imported_solov2, tmp_path, capsys):
    out = tmp_path / "inferred.pt"
    assert main(["import", "--from", "mmdet", str(mmdet_checkpoint), "--out", str(out), "--set", "norm_groups=8",
                 "--set", "scale=(448, 320)"]) == 0
    assert "no config" in capsys.readouterr().out
    inferred, inferred_meta = load_checkpoint(out)
    configured, configured_meta = load_checkpoint(imported_solov2)
    assert inferred.options == configured.options
    assert inferred_meta["preprocess"] == configured_meta["preprocess"]


def test_bad_mmdet_inputs_are_one_clear_line(mmdet_checkpoint, mmdet_weights, tmp_path, capsys):
    out = str(tmp_path / "out.pt")
    wrong_classes = tmp_path / "four_classes.py"
    wrong_classes.write_text(MMDET_CONFIG.read_text().replace("num_classes=3", "num_classes=4"))
    assert "describes 4 classes" in _fails(capsys, "import", "--from", "mmdet", str(mmdet_checkpoint),
                                           "--config", str(wrong_classes), "--out", out)
    wrong_width = tmp_path / "wide_head.py"
    wrong_width.write_text(MMDET_CONFIG.read_text().replace("feat_channels=64", "feat_channels=128"))
    assert "does not match the checkpoint" in _fails(capsys, "import", "--from", "mmdet", str(mmdet_checkpoint),
                                                     "--config", str(wrong_width), "--out", out)
    solo_config = tmp_path / "solo.py"
    solo_config.write_text(MMDET_CONFIG.read_text().replace("type='SOLOV2Head'", "type='SOLOHead'"))
    assert "the weights are a solov2" in _fails(capsys, "import", "--from", "mmdet", str(mmdet_checkpoint),
                                                "--config", str(solo_config), "--out", out)
    unnamed = tmp_path / "unnamed.pth"
    torch.save({"state_dict": mmdet_weights}, unnamed)
    assert "3 classes and the checkpoint names none" in _fails(capsys, "import", "--from", "mmdet", str(unnamed),
                                                               "--config", str(MMDET_CONFIG), "--out", out)
    two_stage = tmp_path / "mask_rcnn.pth"
    torch.save({"state_dict": {"backbone.conv1.weight": torch.zeros(1), "roi_head.bbox_head.fc_cls.weight":
                               torch.zeros(1)}}, two_stage)
    assert "two-stage" in _fails(capsys, "import", "--from", "mmdet", str(two_stage), "--out", out)
    assert "TensorRT takes K < 3840" in _fails(capsys, "import", "--from", "mmdet", str(mmdet_checkpoint),
                                               "--config", str(MMDET_CONFIG), "--out", out,
                                               "--set", "max_candidates=4000")
    assert "goes with resize 'min_max', not 'keep_ratio'" in _fails(
        capsys, "import", "--from", "mmdet", str(mmdet_checkpoint), "--config", str(MMDET_CONFIG), "--out", out,
        "--set", "normalise=before_resize")
    assert not (tmp_path / "out.pt").exists()


def test_mmdet_import_runs_on_a_video_with_its_own_preprocessing(imported_solov2, tmp_path):
    """`segtrt run` takes an imported checkpoint: each frame gets what `predict` gives that image (keep_ratio
    resize, mmdetection's paste), at the frame's own size."""
    import cv2

    from segtrt.data.synth import write_demo_video

    video = write_demo_video(tmp_path / "demo.mp4", num_frames=5)
    out = tmp_path / "run"
    assert main(["run", "--model", str(imported_solov2), "--source", str(video), "--out", str(out),
                 "--max-frames", "3", "--threshold", "0"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 3
    lines = [json.loads(line) for line in (out / summary["sources"][0]["jsonl"]).read_text().splitlines()]
    ok, frame = cv2.VideoCapture(str(video)).read()
    assert ok and len(lines) == 3
    model, meta = load_checkpoint(imported_solov2)
    backend = TorchBackend(model, meta["class_names"], meta["preprocess"])
    (expected,) = predict_images(backend, [(0, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))])
    detections = lines[0]["detections"]
    assert len(detections) == len(expected.instances["scores"]) > 0
    np.testing.assert_allclose([d["score"] for d in detections], expected.instances["scores"], rtol=0, atol=1e-6)
    assert {tuple(d["segmentation"]["size"]) for d in detections} == {frame.shape[:2]}
    assert [d["category_id"] - 1 for d in detections] == expected.instances["labels"].tolist()
