"""Mask R-CNN: equivalence with torchvision, multi-level RoIAlign, losses, deployable outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torchvision.models.detection.roi_heads import paste_masks_in_image

from segtrt import SegtrtError
from segtrt.models import predict
from segtrt.models.maskrcnn import MaskRCNN, load_torchvision_state_dict
from segtrt.models.roi_align import MultilevelRoIAlign
from segtrt.runtime.preprocess import IMAGENET_MEAN, IMAGENET_STD

NUM_CLASSES = 3
SIZE = 160


# Two tensors of the same shape that a wrong key mapping could exchange without any load error.
SWAPS = {
    "BatchNorm weights": ("backbone.body.layer1.0.bn1.weight", "backbone.body.layer1.0.bn2.weight"),
    "BatchNorm running stats": ("backbone.body.layer2.1.bn1.running_var", "backbone.body.layer2.1.bn2.running_var"),
    "FPN biases": ("backbone.fpn.inner_blocks.2.0.bias", "backbone.fpn.inner_blocks.3.0.bias"),
}


def _perturb_every_tensor(model, seed: int = 1) -> None:
    """Give every parameter and buffer values of its own: fresh BatchNorm is the identity and FPN biases
    are zero, so a state dict whose mapping exchanged two of them would otherwise load to the same model."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if not tensor.is_floating_point():
                continue
            spread = float(tensor.std()) if tensor.numel() > 1 and float(tensor.std()) > 0 else 0.0
            scale = 0.1 * spread if spread else 0.2 * max(abs(float(tensor.flatten()[0])), 0.5)
            tensor.add_((torch.rand(tensor.shape, generator=generator) - 0.5) * 2 * scale)


def _torchvision_pair(swap=None):
    """A seeded torchvision Mask R-CNN whose random weights give varied detections, and our copy of it
    (loaded from its state dict with the tensors named in `swap` exchanged, when given)."""
    torch.manual_seed(0)
    limits = {"rpn_pre_nms_top_n": [300, 300], "rpn_post_nms_top_n": [150, 150], "max_detections": 30}
    reference = torchvision.models.detection.maskrcnn_resnet50_fpn(
        weights=None,
        weights_backbone=None,
        num_classes=NUM_CLASSES + 1,
        min_size=SIZE,  # with max_size, torchvision's transform keeps a SIZE x SIZE image as it is
        max_size=SIZE,
        image_mean=[value / 255 for value in IMAGENET_MEAN],
        image_std=[value / 255 for value in IMAGENET_STD],
        rpn_pre_nms_top_n_test=300,
        rpn_post_nms_top_n_test=150,
        box_detections_per_img=30,
    ).eval()
    _perturb_every_tensor(reference)
    image = torch.nn.functional.interpolate(torch.rand(1, 3, 6, 6), size=(SIZE, SIZE)) * 255
    # Random weights score one class everywhere. Centre the classifier on this image's RoI
    # features so every class wins somewhere with spread-out scores, and sharpen the mask
    # logits so thresholded masks do not hinge on rounding.
    captured = {}
    classifier = reference.roi_heads.box_predictor.cls_score
    hook = classifier.register_forward_hook(lambda module, inputs, output: captured.update(features=inputs[0]))
    with torch.no_grad():
        reference([image[0] / 255])
        hook.remove()
        classifier.weight.mul_(2)
        classifier.bias.copy_(-classifier.weight @ captured["features"].mean(0))
        reference.roi_heads.mask_predictor.mask_fcn_logits.weight.mul_(20)
    ours = MaskRCNN(NUM_CLASSES, backbone="resnet50", **limits).eval()
    state_dict = dict(reference.state_dict())
    if swap:
        first, second = swap
        state_dict[first], state_dict[second] = state_dict[second], state_dict[first]
    load_torchvision_state_dict(ours, state_dict)
    return reference, ours, image


def test_matches_torchvision_detections():
    _assert_matches_torchvision(*_torchvision_pair())


@pytest.mark.parametrize("swap", SWAPS.values(), ids=SWAPS.keys())
def test_the_equivalence_sees_every_tensor(swap):
    """Exchanging two same-shape tensors in the state dict must make the equivalence fail."""
    with pytest.raises(AssertionError):
        _assert_matches_torchvision(*_torchvision_pair(swap))


def _assert_matches_torchvision(reference, ours, image):
    pooled_rois = []
    ours.roi_heads.box_roi_pool.register_forward_hook(lambda module, inputs, output: pooled_rois.append(inputs[1]))
    with torch.no_grad():
        expected = reference([image[0] / 255])[0]
        num_detections, boxes, _, _, box_masks = ours(image)
    got = predict(ours, image)[0]

    assert len(expected["boxes"]) == len(got["boxes"]) == int(num_detections[0]) >= 20
    count = len(got["boxes"])
    assert len(np.unique(got["labels"])) == NUM_CLASSES  # the comparison covers every class
    box_rois = pooled_rois[0].reshape(-1, 4)
    sizes = torch.sqrt((box_rois[:, 2:] - box_rois[:, :2]).prod(dim=1))
    assert sizes.max() > 112 and sizes.min() < 56  # the box head's RoIs came from P2 and P3 at least
    np.testing.assert_allclose(got["boxes"], expected["boxes"].numpy(), rtol=1e-3, atol=1e-2)
    np.testing.assert_array_equal(got["labels"], expected["labels"].numpy() - 1)
    # 5e-4: a 2-pixel-wide box at the image edge samples its RoIAlign bins at near-integer positions,
    # where the two models' float rounding (boxes within 2e-3 px) moves its score by 2.4e-4
    np.testing.assert_allclose(got["scores"], expected["scores"].numpy(), atol=5e-4)
    # Our 28x28 masks, pasted by torchvision's rule, are torchvision's masks. (segtrt pastes
    # by its own rule, the exact inverse of the RoIAlign: tests/test_postprocess.py.)
    pasted = paste_masks_in_image(box_masks[0, :count, None], boxes[0, :count], (SIZE, SIZE))[:, 0]
    assert (pasted - expected["masks"][:, 0]).abs().max() < 1e-2


def test_multilevel_roi_align_matches_torchvision_pooler():
    torch.manual_seed(0)
    strides = (4, 8, 16, 32)
    image_size = 1024  # large enough for boxes of every level, including P5 (sqrt area >= 448)
    features = [torch.rand(2, 3, image_size // s, image_size // s) for s in strides]
    corners = torch.rand(2, 40, 2) * 500
    sizes = 2 ** (torch.rand(2, 40, 2) * 9 + 1)  # 2 .. 1024 pixels
    rois = torch.cat((corners, (corners + sizes).clamp(max=image_size)), dim=2)
    pooler = torchvision.ops.MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)
    expected = pooler(
        {str(i): f for i, f in enumerate(features)}, list(rois), [(image_size, image_size)] * 2
    )
    module = MultilevelRoIAlign(7, strides)
    assert set(module.levels(rois).flatten().tolist()) == {0, 1, 2, 3}
    for training in (False, True):  # one path in both modes (and in the export: tests/test_export.py)
        got = module.train(training)(features, rois)
        assert got.shape == (2, 40, 3, 7, 7)
        torch.testing.assert_close(got.flatten(0, 1), expected, rtol=0, atol=1e-6)


def _tiny_scene():
    """A 64x64 image with a bright square (class 0) and a dark disc (class 2)."""
    image = torch.full((1, 3, 64, 64), 120.0)
    masks = torch.zeros(2, 64, 64, dtype=torch.uint8)
    masks[0, 6:34, 4:30] = 1
    ys, xs = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    masks[1] = ((ys - 44) ** 2 + (xs - 42) ** 2 <= 14**2).to(torch.uint8)
    image[:, :, masks[0].bool()] = 250.0
    image[:, :, masks[1].bool()] = 10.0
    target = {
        "boxes": torch.tensor([[4.0, 6.0, 30.0, 34.0], [28.0, 30.0, 57.0, 59.0]]),
        "labels": torch.tensor([0, 2]),
        "masks": masks,
    }
    return image, [target]


def test_losses_finite_and_decrease():
    torch.manual_seed(0)
    model = MaskRCNN(NUM_CLASSES, backbone="edge").train()
    image, targets = _tiny_scene()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    totals = []
    for _ in range(5):
        losses = model.loss(image, targets)
        assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask"}
        assert all(torch.isfinite(value) for value in losses.values())
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    assert totals[-1] < 0.8 * totals[0], totals


def test_mask_loss_uses_only_the_ground_truth_class():
    torch.manual_seed(0)
    model = MaskRCNN(NUM_CLASSES, backbone="edge").train()
    image, targets = _tiny_scene()
    logits = model.roi_heads.mask_predictor.mask_fcn_logits

    def mask_loss():
        torch.manual_seed(1)  # same proposal sampling each time
        return model.loss(image, targets)["loss_mask"].item()

    before = mask_loss()
    with torch.no_grad():
        logits.bias[2] += 5.0  # internal class 2 = object class 1, absent from the targets
    assert mask_loss() == pytest.approx(before, abs=1e-6)
    with torch.no_grad():
        logits.bias[3] += 5.0  # internal class 3 = object class 2, the disc
    assert abs(mask_loss() - before) > 1e-3


def test_deployable_outputs_and_onnx_export(tmp_path):
    import onnx

    torch.manual_seed(0)
    model = MaskRCNN(NUM_CLASSES, backbone="edge", max_detections=20).eval()
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.bias.copy_(torch.tensor([-3.0, 1.0, 0.0, 0.5]))
    images = torch.rand(2, 3, 192, 192) * 255
    with torch.no_grad():
        num_detections, boxes, scores, labels, masks = model(images)
    assert num_detections.dtype == labels.dtype == torch.int32
    assert boxes.dtype == scores.dtype == masks.dtype == torch.float32
    assert boxes.shape == (2, 20, 4) and scores.shape == (2, 20) and labels.shape == (2, 20)
    assert masks.shape == (2, 20, 28, 28)
    assert 0 < int(num_detections.min()) and int(num_detections.max()) <= 20
    for b, count in enumerate(num_detections.tolist()):
        assert (scores[b, :count] > 0.05).all() and (labels[b, :count] >= 0).all()
        assert (scores[b, count:] == 0).all() and (labels[b, count:] == -1).all()
        assert (boxes[b, count:] == 0).all() and (masks[b, count:] == 0).all()
    path = tmp_path / "maskrcnn.onnx"
    with torch.no_grad():
        torch.onnx.export(model, (images[:1],), str(path), opset_version=17, dynamo=False)
    onnx.checker.check_model(onnx.load(str(path)))


def test_edge_model_is_small():
    model = MaskRCNN(NUM_CLASSES, backbone="edge")
    assert 3e6 <= sum(p.numel() for p in model.parameters()) <= 4.5e6


def test_bad_option_and_foreign_weights_are_clear_errors():
    with pytest.raises(SegtrtError, match="unknown Mask R-CNN option"):
        MaskRCNN(NUM_CLASSES, backbone="edge", mask_channels=3)
    edge = MaskRCNN(NUM_CLASSES, backbone="edge")
    with pytest.raises(SegtrtError, match="resnet50"):
        load_torchvision_state_dict(edge, {})
