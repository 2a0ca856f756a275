"""Focal and dice losses against independent references, and training that lowers them."""

import math

import pytest
import torch
from torchvision.ops import sigmoid_focal_loss as torchvision_focal

from segtrt.models import build_model
from segtrt.models.losses import dice_loss, sigmoid_focal_loss


def test_focal_loss_matches_torchvision():
    torch.manual_seed(0)
    logits = torch.randn(64, 5) * 3
    targets = (torch.rand(64, 5) > 0.8).float()
    for alpha, gamma in [(0.25, 2.0), (0.5, 0.0), (0.75, 1.5)]:
        expected = torchvision_focal(logits, targets, alpha=alpha, gamma=gamma, reduction="none")
        torch.testing.assert_close(sigmoid_focal_loss(logits, targets, alpha, gamma), expected)


def test_focal_loss_hand_value():
    # logit 0 -> p = 0.5; positive: 0.25 * 0.5^2 * ln 2; negative: 0.75 * 0.5^2 * ln 2
    loss = sigmoid_focal_loss(torch.zeros(2), torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(loss, torch.tensor([0.25, 0.75]) * 0.25 * math.log(2))


def test_dice_loss_hand_values():
    eps = 1e-3
    probs = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5], [1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    targets = torch.tensor([[1, 0, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.uint8)
    expected = torch.tensor([
        1 - 2 * 1 / (2 + eps + 2 + eps),  # half overlap
        1 - 2 * 2 / (1 + eps + 4 + eps),  # soft prediction: sum p*t = 2, sum p^2 = 1
        1 - 2 * 2 / (2 + eps + 2 + eps),  # perfect match: about 0
        1.0,  # both empty: 1 - 0 / (2 eps)
    ])
    torch.testing.assert_close(dice_loss(probs, targets), expected)
    assert dice_loss(probs[2:3], targets[2:3]).item() == pytest.approx(0.0, abs=1e-3)


def _two_object_image(size=128):
    torch.manual_seed(0)
    image = torch.full((1, 3, size, size), 40.0)
    masks = torch.zeros(2, size, size, dtype=torch.uint8)
    masks[0, 16:48, 20:60] = 1  # 40 x 32 rectangle
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    masks[1] = ((yy - 85) ** 2 + (xx - 80) ** 2 <= 22**2).to(torch.uint8)  # disc of radius 22
    image[0, 0][masks[0].bool()] = 220.0
    image[0, 1][masks[1].bool()] = 200.0
    boxes = torch.tensor([[20, 16, 60, 48], [58, 63, 103, 108]], dtype=torch.float32)
    target = {"boxes": boxes, "labels": torch.tensor([0, 1]), "masks": masks}
    return image, [target]


# SOLO's per-cell mask channels start at the 1 % prior, so its dice loss moves slowly at first.
@pytest.mark.parametrize("kind, options, cls_ratio, mask_drop", [
    ("solov2", {}, 0.3, 0.9), ("solo", {}, 0.3, 0.01), ("solo", {"decoupled": False}, 0.3, 0.01)
])
def test_losses_decrease_when_training(kind, options, cls_ratio, mask_drop):
    torch.manual_seed(0)
    images, targets = _two_object_image()
    model = build_model(kind, num_classes=2, backbone="edge", **options).train()
    # a large first step (Adam 1e-3, SGD 5e-3 without warm-up) saturates the masks at 0
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    history = []
    for _ in range(6):
        losses = model.loss(images, targets)
        history.append({k: v.item() for k, v in losses.items()})
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    first, last = history[0], history[-1]
    assert last["loss_cls"] < cls_ratio * first["loss_cls"], history
    assert last["loss_mask"] < first["loss_mask"] - mask_drop, history
