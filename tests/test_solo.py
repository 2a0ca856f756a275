"""SOLOv2 / SOLO: mmdetection key mapping, Matrix NMS semantics, targets, deployable pass and ONNX export."""

import io
import math

import numpy as np
import pytest
import torch

from segtrt import SegtrtError
from segtrt.models import build_model, predict, seeded_model
from segtrt.models.matrix_nms import MatrixNMS, matrix_nms
from segtrt.models.mmdet_keys import load_mmdet_state_dict, mmdet_to_segtrt
from segtrt.models.solo_targets import assign_targets

# ---------------------------------------------------------------------------------------
# mmdetection SOLOv2-R50 (configs/solov2/solov2_r50_fpn_1x_coco.py) key names and shapes,
# written from mmdetection's module structure: ResNet (BN with num_batches_tracked),
# FPN (ConvModule .conv), SOLOV2Head (ConvModule .conv/.gn, conv_cls, conv_kernel,
# MaskFeatModule convs_all_levels.<level>.conv<step>).


def mmdet_solov2_r50_shapes(num_classes=80):
    shapes = {}

    def bn(prefix, channels):
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (channels,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    shapes["backbone.conv1.weight"] = (64, 3, 7, 7)
    bn("backbone.bn1", 64)
    in_channels = 64
    for stage, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), start=1):
        for block in range(blocks):
            prefix = f"backbone.layer{stage}.{block}"
            shapes[f"{prefix}.conv1.weight"] = (width, in_channels, 1, 1)
            bn(f"{prefix}.bn1", width)
            shapes[f"{prefix}.conv2.weight"] = (width, width, 3, 3)
            bn(f"{prefix}.bn2", width)
            shapes[f"{prefix}.conv3.weight"] = (width * 4, width, 1, 1)
            bn(f"{prefix}.bn3", width * 4)
            if block == 0:
                shapes[f"{prefix}.downsample.0.weight"] = (width * 4, in_channels, 1, 1)
                bn(f"{prefix}.downsample.1", width * 4)
            in_channels = width * 4
    for level, channels in enumerate((256, 512, 1024, 2048)):
        shapes[f"neck.lateral_convs.{level}.conv.weight"] = (256, channels, 1, 1)
        shapes[f"neck.lateral_convs.{level}.conv.bias"] = (256,)
        shapes[f"neck.fpn_convs.{level}.conv.weight"] = (256, 256, 3, 3)
        shapes[f"neck.fpn_convs.{level}.conv.bias"] = (256,)

    def conv_gn(prefix, out_channels, in_channels, kernel):
        shapes[f"{prefix}.conv.weight"] = (out_channels, in_channels, kernel, kernel)
        shapes[f"{prefix}.gn.weight"] = (out_channels,)
        shapes[f"{prefix}.gn.bias"] = (out_channels,)

    for i in range(4):
        conv_gn(f"mask_head.kernel_convs.{i}", 512, 258 if i == 0 else 512, 3)
        conv_gn(f"mask_head.cls_convs.{i}", 512, 256 if i == 0 else 512, 3)
    shapes["mask_head.conv_cls.weight"] = (num_classes, 512, 3, 3)
    shapes["mask_head.conv_cls.bias"] = (num_classes,)
    shapes["mask_head.conv_kernel.weight"] = (256, 512, 3, 3)
    shapes["mask_head.conv_kernel.bias"] = (256,)
    conv_gn("mask_head.mask_feature_head.convs_all_levels.0.conv0", 128, 256, 3)
    for level in range(1, 4):
        for step in range(level):
            in_channels = 128 if step else (258 if level == 3 else 256)
            conv_gn(f"mask_head.mask_feature_head.convs_all_levels.{level}.conv{step}", 128, in_channels, 3)
    conv_gn("mask_head.mask_feature_head.conv_pred", 256, 128, 1)
    return shapes


@pytest.fixture(scope="module")
def mmdet_state_dict():
    generator = torch.Generator().manual_seed(0)
    return {
        name: torch.randint(0, 100, shape, generator=generator) if name.endswith("num_batches_tracked")
        else torch.randn(shape, generator=generator)
        for name, shape in mmdet_solov2_r50_shapes().items()
    }


@pytest.fixture(scope="module")
def solov2_r50():
    return build_model("solov2", num_classes=80, backbone="resnet50")


def test_mmdet_state_dict_loads_strictly_into_the_right_places(mmdet_state_dict, solov2_r50):
    load_mmdet_state_dict(solov2_r50, {"meta": {}, "state_dict": mmdet_state_dict})
    ours = solov2_r50.state_dict()
    pairs = {
        "backbone.layer3.5.conv2.weight": "backbone.body.layer3.5.conv2.weight",
        "backbone.layer4.0.downsample.1.running_var": "backbone.body.layer4.0.downsample.1.running_var",
        "neck.lateral_convs.2.conv.weight": "backbone.fpn.inner_blocks.2.0.weight",
        "neck.fpn_convs.3.conv.bias": "backbone.fpn.layer_blocks.3.0.bias",
        "mask_head.kernel_convs.0.conv.weight": "mask_head.kernel_convs.0.conv.weight",
        "mask_head.mask_feature_head.convs_all_levels.3.conv2.gn.bias":
            "mask_head.mask_feature_head.convs_all_levels.3.conv2.gn.bias",
        "mask_head.conv_kernel.weight": "mask_head.conv_kernel.weight",
    }
    for mmdet_name, our_name in pairs.items():
        assert torch.equal(ours[our_name], mmdet_state_dict[mmdet_name]), mmdet_name
    # and the modules use them: the FPN's lateral conv of C4 is the mmdet tensor
    assert torch.equal(solov2_r50.backbone.fpn.inner_blocks[2][0].weight, mmdet_state_dict["neck.lateral_convs.2.conv.weight"])


def test_mapping_covers_every_key_of_our_model(mmdet_state_dict, solov2_r50):
    mapped = mmdet_to_segtrt(mmdet_state_dict)
    assert set(mapped) == set(solov2_r50.state_dict())
    for name, value in mapped.items():
        assert value.shape == solov2_r50.state_dict()[name].shape, name


def test_mmdet_mapping_rejects_foreign_weights(mmdet_state_dict, solov2_r50):
    with pytest.raises(SegtrtError, match="not part of"):
        mmdet_to_segtrt({"roi_head.bbox_head.fc_cls.weight": torch.zeros(1)})
    wrong_classes = build_model("solov2", num_classes=3, backbone="resnet50")
    with pytest.raises(SegtrtError, match="do not fit"):
        load_mmdet_state_dict(wrong_classes, mmdet_state_dict)


# ---------------------------------------------------------------------------------------
# Matrix NMS


def strip_masks(spans, width=10):
    """Masks [1, N, 1, width] with ones on the given [start, stop) spans."""
    masks = torch.zeros(1, len(spans), 1, width)
    for index, (start, stop) in enumerate(spans):
        masks[0, index, 0, start:stop] = 1
    return masks


# A: pixels 0-3, B: 2-5, C: 4-7. IoU(A,B) = IoU(B,C) = 2/6 = 1/3, IoU(A,C) = 0.
SPANS = [(0, 4), (2, 6), (4, 8)]
SCORES = torch.tensor([[0.9, 0.8, 0.7]])


def run(masks, scores, labels, **settings):
    """matrix_nms on one image -> (kept indices, their scores, their labels, the padded outputs)."""
    count, keep, out_scores, out_labels = matrix_nms(masks, scores, labels, **settings)
    n = int(count[0])
    return keep[0, :n].tolist(), out_scores[0, :n], out_labels[0, :n].tolist(), (count, keep, out_scores, out_labels)


def test_matrix_nms_gaussian_by_hand():
    keep, scores, labels, _ = run(strip_masks(SPANS), SCORES, torch.zeros(1, 3, dtype=torch.int64), sigma=2.0)
    # B decays by f(1/3)/f(0); C's only overlap is B, itself decayed by 1/3: f(1/3)/f(1/3) = 1
    assert keep == [0, 2, 1]
    torch.testing.assert_close(scores, torch.tensor([0.9, 0.7, 0.8 * math.exp(-2.0 / 9)]))


def test_matrix_nms_linear_by_hand():
    keep, scores, _, _ = run(strip_masks(SPANS), SCORES, torch.zeros(1, 3, dtype=torch.int64), kernel="linear")
    assert keep == [0, 2, 1]
    torch.testing.assert_close(scores, torch.tensor([0.9, 0.7, 0.8 * (1 - 1 / 3)]))


def test_matrix_nms_suppresses_within_a_class_only():
    labels = torch.tensor([[0, 1, 1]])
    keep, scores, out_labels, _ = run(strip_masks(SPANS), SCORES, labels)
    # A cannot touch B (other class); B decays C by f(1/3) with no compensation
    assert keep == [0, 1, 2] and out_labels == [0, 1, 1]
    torch.testing.assert_close(scores, torch.tensor([0.9, 0.8, 0.7 * math.exp(-2.0 / 9)]))


def test_matrix_nms_cuts_and_padding():
    labels = torch.zeros(1, 3, dtype=torch.int64)
    keep, scores, _, _ = run(strip_masks(SPANS), SCORES, labels, nms_pre=2)
    assert keep == [0, 1]  # C never entered
    torch.testing.assert_close(scores, torch.tensor([0.9, 0.8 * math.exp(-2.0 / 9)]))

    keep, _, _, (count, all_keep, all_scores, all_labels) = run(strip_masks(SPANS), SCORES, labels, max_num=2)
    assert keep == [0, 2] and all_keep.shape == (1, 2)

    _, _, _, (count, all_keep, all_scores, all_labels) = run(strip_masks(SPANS), SCORES, labels, max_num=5)
    assert int(count[0]) == 3 and all_keep.shape == (1, 5)
    assert all_keep[0, 3:].tolist() == [-1, -1] and all_labels[0, 3:].tolist() == [-1, -1]
    assert all_scores[0, 3:].tolist() == [0.0, 0.0]


def test_matrix_nms_filter_removes_everything_and_empty_input():
    labels = torch.zeros(1, 3, dtype=torch.int64)
    keep, _, _, (count, all_keep, all_scores, _) = run(strip_masks(SPANS), SCORES, labels, filter_thr=0.95)
    assert keep == [] and all_keep.eq(-1).all() and all_scores.eq(0).all()

    keep, _, _, (count, all_keep, _, _) = run(strip_masks(SPANS), torch.zeros(1, 3), labels)  # all padding
    assert int(count[0]) == 0 and all_keep.eq(-1).all()

    count, keep, _, _ = matrix_nms(torch.zeros(2, 0, 4, 4), torch.zeros(2, 0), torch.zeros(2, 0, dtype=torch.int64))
    assert count.tolist() == [0, 0] and keep.shape == (2, 100) and keep.eq(-1).all()


def reference_matrix_nms(masks, scores, labels, kernel, sigma, nms_pre, max_num, filter_thr):
    """mmdetection's mask_matrix_nms on a variable-length list, pair by pair in NumPy.

    masks: bool [n, hw]. Returns (indices into the input, decayed scores).
    """
    f = (lambda iou: np.exp(-sigma * iou**2)) if kernel == "gaussian" else (lambda iou: 1 - iou)
    order = list(np.argsort(-scores, kind="stable"))[:nms_pre]
    m = masks[order].astype(np.float64)
    inter = m @ m.T
    area = m.sum(1)
    iou = inter / (area[:, None] + area[None, :] - inter)
    same = labels[order][:, None] == labels[order][None, :]
    n = len(order)
    compensate = [max([iou[k, i] for k in range(i) if same[k, i]], default=0.0) for i in range(n)]
    decayed = []
    for j in range(n):
        ratios = [f(iou[i, j]) / f(compensate[i]) for i in range(j) if same[i, j]]
        decayed.append(scores[order[j]] * min([1.0] + ratios))
    kept = [(s, order[j]) for j, s in enumerate(decayed) if s >= filter_thr]
    kept.sort(key=lambda item: -item[0])
    kept = kept[:max_num]
    return [index for _, index in kept], np.array([s for s, _ in kept])


@pytest.mark.parametrize("kernel", ["gaussian", "linear"])
def test_matrix_nms_padded_batch_equals_unpadded_reference(kernel):
    rng = np.random.default_rng(1)
    settings = dict(kernel=kernel, sigma=2.0, nms_pre=20, max_num=12, filter_thr=0.3)
    batch_masks, batch_scores, batch_labels, expected = [], [], [], []
    for _ in range(2):
        # overlapping random boxes as masks on a 16x16 grid, 25 real candidates + 7 padding rows
        masks = np.zeros((32, 16, 16), dtype=bool)
        for index in range(25):
            y, x = rng.integers(0, 10, 2)
            h, w = rng.integers(3, 7, 2)
            masks[index, y : y + h, x : x + w] = True
        scores = np.concatenate([rng.uniform(0.2, 1.0, 25), np.zeros(7)])
        labels = np.concatenate([rng.integers(0, 2, 25), np.zeros(7, dtype=np.int64)])
        permutation = rng.permutation(32)  # padding rows anywhere, not only at the end
        masks, scores, labels = masks[permutation], scores[permutation], labels[permutation]
        real = scores > 0
        real_index = np.flatnonzero(real)
        indices, ref_scores = reference_matrix_nms(
            masks[real].reshape(25, -1), scores[real], labels[real], **settings
        )
        expected.append((real_index[indices].tolist(), ref_scores))
        batch_masks.append(masks)
        batch_scores.append(scores)
        batch_labels.append(labels)
    # probabilities, thresholded inside at 0.5
    probs = torch.tensor(np.stack(batch_masks), dtype=torch.float32) * 0.6 + 0.2
    count, keep, out_scores, out_labels = MatrixNMS(mask_threshold=0.5, **settings)(
        probs, torch.tensor(np.stack(batch_scores), dtype=torch.float32), torch.tensor(np.stack(batch_labels))
    )
    assert keep.shape == (2, 12)
    for image, (ref_indices, ref_scores) in enumerate(expected):
        n = int(count[image])
        assert 0 < n and keep[image, :n].tolist() == ref_indices
        np.testing.assert_allclose(out_scores[image, :n].numpy(), ref_scores, rtol=1e-5)
        assert out_labels[image, :n].tolist() == batch_labels[image][ref_indices].tolist()
        assert keep[image, n:].eq(-1).all() and out_scores[image, n:].eq(0).all()


# ---------------------------------------------------------------------------------------
# targets


def test_targets_centre_cells_and_scale_levels():
    masks = torch.zeros(2, 128, 128, dtype=torch.uint8)
    masks[0, 40:60, 40:60] = 1  # 20 px: levels with range holding 20
    masks[1, 0:100, 0:100] = 1  # 100 px
    boxes = torch.tensor([[40, 40, 60, 60], [0, 0, 100, 100]], dtype=torch.float32)
    levels = assign_targets(
        boxes, torch.tensor([1, 0]), masks, num_grids=[8, 4], scale_ranges=[[1, 30], [25, 200]],
        pos_scale=0.2, num_classes=2,
    )
    # small square: centre of mass 49.5 -> cell 3 of 8 (16 px cells); the centre region
    # 49.5 +- 2 px (0.2 x half the box) starts at 47.5, in cell 2: rows and columns 2..3
    assert levels[0].cells.tolist() == [2 * 8 + 2, 2 * 8 + 3, 3 * 8 + 2, 3 * 8 + 3]
    assert levels[0].objects.tolist() == [0] * 4
    assert levels[0].labels.view(8, 8)[2:4, 2:4].eq(1).all() and (levels[0].labels == 2).sum() == 60
    # large square: centre 49.5 -> cell 1 of 4; +-10 px spans cells 1 (39.5/32) to 1 (59.5/32)
    assert levels[1].cells.tolist() == [1 * 4 + 1] and levels[1].objects.tolist() == [1]
    assert levels[1].labels.view(4, 4)[1, 1] == 0


# ---------------------------------------------------------------------------------------
# deployable pass


def _with_detections(model):
    """Random weights biased so that cells score and their masks cover something."""
    with torch.no_grad():
        model.mask_head.conv_cls.bias.fill_(0.0)
        for name, parameter in model.mask_head.named_parameters():
            if name.startswith("conv_mask_list") and name.endswith("bias"):
                parameter.fill_(2.0)
    return model


@pytest.mark.parametrize("kind, options", [("solov2", {}), ("solo", {}), ("solo", {"decoupled": False})])
def test_forward_contract_shapes_and_padding(kind, options):
    torch.manual_seed(0)
    model = build_model(kind, num_classes=3, backbone="edge", max_detections=20, score_thr=0.0, filter_thr=0.0,
                        **options).eval()
    _with_detections(model)
    images = torch.rand(2, 3, 64, 128) * 255
    with torch.no_grad():
        count, boxes, scores, labels, masks = model(images)
    assert count.dtype == torch.int32 and count.shape == (2,) and (count > 0).all()
    assert boxes.dtype == torch.float32 and boxes.shape == (2, 20, 4)
    assert scores.shape == (2, 20) and labels.dtype == torch.int32 and labels.shape == (2, 20)
    assert masks.dtype == torch.float32 and masks.shape == (2, 20, 16, 32)  # the mask-feature stride 4
    for image in range(2):
        n = int(count[image])
        assert (scores[image, :n] > 0).all() and scores[image, n:].eq(0).all()
        assert labels[image, n:].eq(-1).all() and ((labels[image, :n] >= 0) & (labels[image, :n] < 3)).all()
        assert masks[image, n:].eq(0).all() and boxes[image, n:].eq(0).all()
        assert (scores[image, :n].diff() <= 0).all()
    results = predict(model, images)
    assert len(results) == 2 and results[0]["masks"].dtype == bool
    assert results[0]["masks"].shape == (int(count[0]), 64, 128)  # pasted at the input size


def test_forward_boxes_are_the_tight_boxes_of_the_masks():
    torch.manual_seed(0)
    model = build_model("solov2", num_classes=2, backbone="edge", score_thr=0.0, filter_thr=0.0).eval()
    with torch.no_grad():
        count, boxes, _, _, masks = model(torch.rand(1, 3, 128, 128) * 255)
    full_size = torch.nn.functional.interpolate(masks, size=(128, 128), mode="bilinear", align_corners=False)
    for index in range(int(count[0])):
        ys, xs = np.nonzero(full_size[0, index].numpy() > 0.5)
        if len(ys):
            assert boxes[0, index].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_unknown_option_is_a_clear_error():
    with pytest.raises(SegtrtError, match="unknown solov2 option"):
        build_model("solov2", num_classes=2, backbone="edge", num_grid=[3])


def test_edge_solov2_exports_to_onnx():
    onnx = pytest.importorskip("onnx")
    model = build_model("solov2", num_classes=3, backbone="edge").eval()
    buffer = io.BytesIO()
    torch.onnx.export(
        model, (torch.rand(1, 3, 192, 192) * 255,), buffer, dynamo=False, opset_version=17,
        input_names=["images"], output_names=["num_detections", "boxes", "scores", "labels", "masks"],
    )
    graph = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(graph)
    shapes = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in graph.graph.output}
    assert shapes["masks"] == [1, 100, 48, 48] and shapes["num_detections"] == [1]


@pytest.mark.parametrize("upsample_logits, levels", [(True, [0, 1, 3]), (False, [0, 1])])
def test_decoupled_solo_deploys_the_masks_it_trains(upsample_logits, levels):
    """The deployable pass's cell -> (column, row) channel lookup matches the training path's.
    With upsample_logits both work at stride 4 on every level; without (mmdetection's way), only
    levels 0 and 1 are already at stride 4, so the two agree exactly only there."""
    torch.manual_seed(0)
    model = _with_detections(build_model("solo", num_classes=3, backbone="edge", upsample_logits=upsample_logits))
    model.eval()
    assert model.options["decoupled"]
    grids = model.options["num_grids"]
    with torch.no_grad():
        head_outputs = model.mask_head(model._pyramid(torch.rand(2, 3, 64, 96) * 255))
        level_cells = {level: torch.tensor([0, grids[level] + 2, grids[level] ** 2 - 1]) for level in levels}
        pyramid_cells = torch.cat([sum(g**2 for g in grids[:level]) + cells for level, cells in level_cells.items()])
        deployed = model._candidate_masks(head_outputs, pyramid_cells.expand(2, -1))
        for image in range(2):
            trained = torch.cat([model._cell_masks(head_outputs, image, level, cells)
                                 for level, cells in level_cells.items()])
            torch.testing.assert_close(deployed[image], trained)


def test_max_candidates_zero_is_the_cap_free_rule_and_equals_a_cap_that_holds_every_candidate(kind="solov2"):
    """max_candidates=0 rescores every cell (mmdetection's rule); a cap K changes nothing while at most K
    pairs pass score_thr, and drops pairs (mmdetection ranks after rescoring) once more do."""
    capped = seeded_model(kind, num_classes=3, score_thr=0.5, max_candidates=3000).eval()
    every_cell = build_model(kind, num_classes=3, score_thr=0.5, max_candidates=0).eval()
    every_cell.load_state_dict(capped.state_dict())
    images = torch.rand(1, 3, 96, 128, generator=torch.Generator().manual_seed(4)) * 255
    with torch.no_grad():
        expected, got = capped(images), every_cell(images)
        passing = int(capped.candidate_pairs(images).sum())
    assert 0 < passing <= 3000
    assert int(got[0].min()) > 5
    for a, b in zip(expected, got):
        torch.testing.assert_close(a, b)
    small_cap = build_model(kind, num_classes=3, score_thr=0.5, max_candidates=5).eval()
    small_cap.load_state_dict(capped.state_dict())
    with torch.no_grad():
        assert not torch.equal(small_cap(images)[2], got[2])


def test_max_candidates_respects_tensorrts_topk_limit():
    with pytest.raises(SegtrtError, match="K < 3840"):
        build_model("solov2", num_classes=3, max_candidates=3840)
