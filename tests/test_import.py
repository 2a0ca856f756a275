"""`segtrt import`: foreign checkpoints become segtrt checkpoints that give their frameworks' detections.

torchvision is a project dependency, so its reference runs live here on a seeded,
perturbed maskrcnn_resnet50_fpn; mmdetection is not, so its reference outputs come
from tests/fixtures/mmdet (made once by tests/fixtures/make_mmdet_fixtures.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from segtrt.cli import main
from segtrt.models.checkpoint import load_checkpoint
from segtrt.models.backend import TorchBackend
from segtrt.runtime.inference import predict_images
from test_maskrcnn import _perturb_every_tensor

# torchvision's transform with a small (max_size, min_size), so the test is quick
TORCHVISION_SCALE = (384, 224)
# Original sizes whose resized sizes are multiples of 32: torchvision clips boxes to the resized image,
# segtrt to the padded input, and these agree only where the two are equal (README "torchvision").
TORCHVISION_SHAPES = [(112, 176), (176, 112)]
# Float rounding: torchvision normalises before resizing, segtrt's model after (inside the graph).
BOX_TOLERANCE = 5e-3


def _photo_like(shape, seed):
    """A smooth random RGB uint8 image of (h, w)."""
    coarse = torch.rand(1, 3, 6, 8, generator=torch.Generator().manual_seed(seed))
    image = torch.nn.functional.interpolate(coarse, size=shape, mode="bilinear", align_corners=False)[0]
    return (image.permute(1, 2, 0).numpy() * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def torchvision_model(tmp_path_factory):
    """(torchvision's reference model, its state dict file): 91-way COCO classifier, perturbed weights."""
    torch.manual_seed(0)
    reference = torchvision.models.detection.maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=91,
        max_size=TORCHVISION_SCALE[0], min_size=TORCHVISION_SCALE[1]).eval()
    _perturb_every_tensor(reference)
    path = tmp_path_factory.mktemp("torchvision") / "maskrcnn.pth"
    torch.save(reference.state_dict(), path)
    return reference, path


def test_torchvision_import_gives_torchvisions_detections(torchvision_model, tmp_path, capsys):
    reference, state_dict = torchvision_model
    out = tmp_path / "maskrcnn.pt"
    assert main(["import", "--from", "torchvision", str(state_dict), "--out", str(out),
                 "--set", f"scale={TORCHVISION_SCALE}"]) == 0
    assert "min_max" in capsys.readouterr().out
    model, meta = load_checkpoint(out)
    assert meta["preprocess"].resize == "min_max" and meta["preprocess"].paste == "torchvision"
    assert meta["class_names"][0] == "person" and meta["class_names"][11] == "N/A" and len(meta["class_names"]) == 90
    backend = TorchBackend(model, meta["class_names"], meta["preprocess"])
    images = [(index, _photo_like(shape, index)) for index, shape in enumerate(TORCHVISION_SHAPES)]
    for (index, image), prediction in zip(images, predict_images(backend, images)):
        with torch.no_grad():
            expected = reference([torch.from_numpy(image).permute(2, 0, 1).float() / 255])[0]
        got = prediction.instances
        assert len(got["boxes"]) == len(expected["boxes"]) >= 50
        order = match_detections(got, expected["boxes"].numpy(), expected["labels"].numpy() - 1)
        np.testing.assert_allclose(got["boxes"][order], expected["boxes"].numpy(), rtol=0, atol=BOX_TOLERANCE)
        np.testing.assert_allclose(got["scores"][order], expected["scores"].numpy(), rtol=0, atol=1e-4)
        # torchvision's paste rule: its masks, thresholded at 0.5, except pixels whose probability is 0.5 +- 1e-3
        probabilities = expected["masks"][:, 0].numpy()
        settled = np.abs(probabilities - 0.5) > 1e-3
        np.testing.assert_array_equal(got["masks"][order][settled], (probabilities > 0.5)[settled])


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
    assert not (tmp_path / "out.pt").exists()
