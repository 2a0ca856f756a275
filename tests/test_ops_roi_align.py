"""segtrt.ops RoIAlign twins against ONNX's RoiAlign conformance cases and torchvision."""

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from segtrt import SegtrtError, ops
from segtrt.ops import _native

STRIDES = (4, 8, 16, 32)
IMAGE = 128


def onnx_roialign_cases():
    """The RoiAlign cases ONNX ships (onnx/backend/test/case/node/roialign.py), collected without running ONNX."""
    import onnx.helper
    from onnx.backend.test.case.node import roialign

    cases = []

    def collect(node, inputs, outputs, name, **_):
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        cases.append((name, attributes, inputs, outputs[0]))

    original = roialign.expect
    roialign.expect = collect
    try:
        for export in (roialign.RoiAlign.export_roialign_aligned_false, roialign.RoiAlign.export_roialign_aligned_true,
                       roialign.RoiAlign.export_roialign_mode_max):
            export()
    finally:
        roialign.expect = original
    return cases


@pytest.mark.parametrize("case", onnx_roialign_cases(), ids=lambda c: c[0])
def test_roi_align_matches_onnx_conformance_data(case):
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    _, attributes, (x, rois, batch_indices), expected = case
    out = ops.roi_align(
        x, rois, batch_indices, output_size=(attributes["output_height"], attributes["output_width"]),
        spatial_scale=attributes["spatial_scale"], sampling_ratio=attributes["sampling_ratio"],
        aligned=attributes["coordinate_transformation_mode"] == b"half_pixel",
        mode=attributes.get("mode", b"avg").decode(),
    )
    # The shipped expected tables are printed with 4 decimals (and differ from ONNX's own reference
    # evaluator by up to 8.4e-5), so they bound the error at 1e-4; the reference evaluator bounds it at 1e-5.
    assert np.abs(out - expected).max() <= 1e-4
    node = helper.make_node("RoiAlign", ["x", "rois", "batch_indices"], ["y"], **attributes)
    reference = ReferenceEvaluator(node).run(None, {"x": x, "rois": rois, "batch_indices": batch_indices})[0]
    assert np.abs(out - reference).max() <= 1e-5


def random_rois(rng, count, low=2.0, high=120.0, start_range=(-8, IMAGE - 4)):
    """Boxes x1y1x2y2 of widely varying size (so every FPN level gets some), by default partly outside the image."""
    size = np.exp(rng.uniform(np.log(low), np.log(high), (count, 2)))
    start = rng.uniform(*start_range, (count, 2))
    return np.concatenate([start, start + size], axis=1).astype(np.float32)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_roi_align_matches_torchvision(aligned, sampling_ratio):
    torch = pytest.importorskip("torch")
    from torchvision.ops import roi_align as tv_roi_align

    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 20, 24)).astype(np.float32)
    rois = random_rois(rng, 12, high=80.0)
    batch_indices = rng.integers(0, 2, 12)
    out = ops.roi_align(x, rois, batch_indices, (5, 4), 0.25, sampling_ratio, aligned)
    boxes = torch.from_numpy(np.concatenate([batch_indices[:, None], rois], axis=1).astype(np.float32))
    expected = tv_roi_align(torch.from_numpy(x), boxes, (5, 4), 0.25, sampling_ratio, aligned).numpy()
    assert np.abs(out - expected).max() <= 1e-5


def pyramid(rng, batch=2, channels=3):
    return [rng.standard_normal((batch, channels, IMAGE // s, IMAGE // s)).astype(np.float32) for s in STRIDES]


@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_multilevel_roi_align_matches_torchvision_multiscale(sampling_ratio):
    torch = pytest.importorskip("torch")
    from torchvision.ops import MultiScaleRoIAlign

    rng = np.random.default_rng(3)
    features = pyramid(rng)
    rois = np.stack([random_rois(rng, 16), random_rois(rng, 16)])
    out = ops.multilevel_roi_align(features, rois, STRIDES, (7, 7), sampling_ratio, aligned=False)
    # torchvision's MultiScaleRoIAlign pools with aligned=False.
    pooler = MultiScaleRoIAlign(["0", "1", "2", "3"], (7, 7), sampling_ratio)
    expected = pooler(
        {str(i): torch.from_numpy(f) for i, f in enumerate(features)},
        [torch.from_numpy(r) for r in rois], [(IMAGE, IMAGE)] * 2,
    ).numpy().reshape(out.shape)
    assert np.abs(out - expected).max() <= 1e-5


def test_level_assignment_matches_torchvision_level_mapper():
    torch = pytest.importorskip("torch")
    from torchvision.ops.poolers import LevelMapper

    rng = np.random.default_rng(11)
    # Each level's map is filled with its own index, so the pooled value names the chosen level; the boxes start
    # near the origin so that their first bin samples inside every map.
    features = [np.full((1, 1, IMAGE // s, IMAGE // s), level, np.float32) for level, s in enumerate(STRIDES)]
    rois = random_rois(rng, 200, low=1.0, high=1000.0, start_range=(0, 10))[None]
    chosen = ops.multilevel_roi_align(features, rois, STRIDES, (8, 8), 1, aligned=True)[0, :, 0, 0, 0]
    mapper = LevelMapper(k_min=2, k_max=5, canonical_scale=224, canonical_level=4)
    expected = mapper([torch.from_numpy(rois[0])]).numpy()
    np.testing.assert_array_equal(np.rint(chosen), expected)  # bilinear weights sum to 1 within an ulp
    assert set(expected) == {0, 1, 2, 3}


@pytest.mark.parametrize(
    ("kwargs", "attribute"),
    [
        ({"output_size": (0, 7)}, "output_height"),
        ({"mode": "median"}, "mode"),
        ({"sampling_ratio": -1}, "sampling_ratio"),
        ({"strides": (4, 8, 16)}, "feature_strides"),  # three strides for four maps
        ({"strides": (4, 8, 24, 32)}, "feature_strides"),
    ],
)
def test_bad_attributes_are_rejected_naming_the_attribute(kwargs, attribute):
    features = pyramid(np.random.default_rng(0), batch=1, channels=1)
    rois = np.array([[[0, 0, 10, 10]]], np.float32)
    with pytest.raises(SegtrtError, match=attribute):
        ops.multilevel_roi_align(features, rois, **kwargs)


def test_plugin_validation_runs_without_tensorrt():
    _native.validate_multilevel_roi_align_attributes((7, 7), STRIDES, 0, 1, "avg", 224, 4, num_feature_maps=4)
    with pytest.raises(SegtrtError, match="canonical_scale"):
        _native.validate_multilevel_roi_align_attributes((7, 7), STRIDES, 0, 1, "avg", 0, 4, num_feature_maps=4)
    with pytest.raises(SegtrtError, match="aligned"):
        _native.validate_multilevel_roi_align_attributes((7, 7), STRIDES, 0, 2, "avg", 224, 4, num_feature_maps=4)


def test_missing_library_says_how_to_build_it(monkeypatch, tmp_path):
    monkeypatch.setenv("SEGTRT_OPS_LIB", str(tmp_path / "absent.so"))
    _native._library.cache_clear()
    try:
        with pytest.raises(SegtrtError, match="make native"):
            ops.roi_align(np.zeros((1, 1, 4, 4)), np.zeros((1, 4)), [0])
    finally:
        monkeypatch.delenv("SEGTRT_OPS_LIB")
        _native._library.cache_clear()


def test_non_finite_and_huge_boxes_pool_in_bounded_time():
    """Adaptive sampling takes ceil(roi_size / bins) samples a side: a 1e9-pixel box must not loop ~1e17 times, and
    a NaN or infinite box (a float-to-int cast of infinity is undefined) pools nothing. Run apart, with a timeout,
    since the failure is a hang."""
    script = (
        "import numpy as np; from segtrt import ops\n"
        "x = np.arange(64, dtype=np.float32).reshape(1, 1, 8, 8)\n"
        "rois = np.array([[0, 0, 1e9, 1e9], [0, 0, np.inf, 4], [np.nan, 0, 4, 4], [-3e38, 0, 3e38, 4]], np.float32)\n"
        "out = ops.roi_align(x, rois, np.zeros(4, np.int32), output_size=(2, 2), sampling_ratio=0)\n"
        "levels = ops.multilevel_roi_align([x], rois[None], strides=(1,), output_size=(2, 2), sampling_ratio=0)\n"
        "np.save('out.npy', np.stack([out, levels[0]]))\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-c", script], cwd=tmp, check=True, timeout=60)
        single, multi = np.load(Path(tmp) / "out.npy")
    np.testing.assert_array_equal(single, multi)
    assert np.isfinite(single).all()
    np.testing.assert_array_equal(single[1:], 0)
