"""SOLO's boxes come from its masks upsampled to the input size; upsampled_mask_boxes finds them without
upsampling. These tests hold it to the upsampled rule it replaces."""

import io

import numpy as np
import pytest
import torch

from segtrt.models.solo_ops import masks_to_boxes, resize_bilinear, upsampled_mask_boxes

THRESHOLD = 0.5


def blobs(count: int, height: int, width: int, seed: int, noise: float = 0.0) -> torch.Tensor:
    """[1, count, height, width] probabilities: 0-2 soft ellipses per mask (so some are empty), plus noise."""
    generator = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    masks = torch.zeros(1, count, height, width)
    for index in range(count):
        for _ in range(int(torch.randint(0, 3, (), generator=generator))):
            cy, cx = torch.randint(0, height, (), generator=generator), torch.randint(0, width, (), generator=generator)
            ry, rx = 0.5 + 5 * torch.rand(2, generator=generator)
            blob = torch.sigmoid(3 * (1 - ((ys - cy) / ry) ** 2 - ((xs - cx) / rx) ** 2))
            masks[0, index] = torch.maximum(masks[0, index], blob)
    return masks + noise * torch.rand(masks.shape, generator=generator)


def upsampled_rule(probs, scale):
    return masks_to_boxes(resize_bilinear(probs, (scale * probs.shape[-2], scale * probs.shape[-1])) > THRESHOLD)


@pytest.mark.parametrize("scale", [4, 3, 2, 1])
@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_equals_the_upsampled_rule(scale, noise):
    probs = blobs(40, 13, 19, seed=scale, noise=noise)
    expected = upsampled_rule(probs, scale)
    assert (expected.sum(-1) == 0).any() and (expected.sum(-1) > 0).any()  # empty and non-empty masks both met
    assert torch.equal(upsampled_mask_boxes(probs, scale, THRESHOLD), expected)


def test_thin_ridges_barely_over_the_threshold():
    # Sparse speckle just over the threshold: low-resolution rows exceed while the full-size rows between
    # them, mixing in their neighbours, mostly do not.
    generator = torch.Generator().manual_seed(3)
    speckle = torch.rand(1, 200, 16, 24, generator=generator) > 0.9
    probs = speckle * (THRESHOLD + 0.1 * torch.rand(1, 200, 16, 24, generator=generator))
    assert torch.equal(upsampled_mask_boxes(probs, 4, THRESHOLD), upsampled_rule(probs, 4))


def test_onnx_runtime_gives_the_same_boxes_at_any_exported_size():
    onnxruntime = pytest.importorskip("onnxruntime")

    class Boxes(torch.nn.Module):
        def forward(self, probs):
            return upsampled_mask_boxes(probs, 4, THRESHOLD)

    buffer = io.BytesIO()
    torch.onnx.export(Boxes(), (blobs(30, 13, 19, seed=11),), buffer, dynamo=False, opset_version=17,
                      input_names=["probs"], dynamic_axes={"probs": {2: "h", 3: "w"}})
    session = onnxruntime.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    for height, width in [(13, 19), (24, 10)]:  # the traced size and another
        probs = blobs(30, height, width, seed=height, noise=0.3)
        boxes = session.run(None, {"probs": probs.numpy()})[0]
        np.testing.assert_array_equal(boxes, upsampled_rule(probs, 4).numpy())
