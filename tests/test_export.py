"""Export: plugin nodes match the plugins, the portable graph is standard ONNX, and PyTorch,
ORT-portable and ORT-trt (plugin nodes served by the CPU twins) give the same detections."""

import numpy as np
import onnx
import pytest
import torch

from segtrt import SegtrtError
from segtrt.models.checkpoint import save_checkpoint
from segtrt.cli import main as cli_main
from segtrt.engine.check import check_onnx
from segtrt.export import export_onnx
from segtrt.export.parity import run_parity
from segtrt.models import seeded_model as package_seeded_model
from segtrt.models.backend import TorchBackend
from segtrt.runtime.backends import open_backend
from segtrt.runtime.backends.onnxruntime import OnnxRuntimeBackend
from segtrt.runtime.model_info import PLUGIN_DOMAIN, read_info
from segtrt.runtime.preprocess import Preprocess

SIZE = 128
CLASSES = ("circle", "rectangle", "triangle", "star", "ring")


def seeded_model(kind):
    """Random weights biased so that detections exist (max 20 per image)."""
    return package_seeded_model(kind, len(CLASSES), max_detections=20)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from segtrt.data.coco import CocoDataset
    from segtrt.data.synth import write_dataset

    folder = tmp_path_factory.mktemp("synth")
    write_dataset(folder, 3, seed=7, size=(SIZE, SIZE), progress=False)
    return CocoDataset(folder)


@pytest.mark.parametrize("kind", ["maskrcnn", "solov2", "solo"])
def test_pytorch_ort_portable_and_ort_trt_agree(kind, dataset, tmp_path):
    model = seeded_model(kind)
    preprocess = Preprocess(input_size=(SIZE, SIZE))
    paths = {}
    for flavour in ("portable", "trt"):
        paths[flavour] = tmp_path / f"{kind}.{flavour}.onnx"
        export_onnx(model, paths[flavour], flavour, CLASSES, preprocess, simplify=flavour == "trt")
    backends = [TorchBackend(model, CLASSES, preprocess), *(OnnxRuntimeBackend(paths[f]) for f in ("portable", "trt"))]
    report = run_parity(backends, dataset.iter_images, len(dataset), dataset)
    rows = report["backends"]
    assert rows["pytorch"]["detections"] > 10
    for name in ("ort-portable", "ort-trt"):
        assert rows[name]["passed"], (name, rows[name])
        assert rows[name]["detections"] == rows["pytorch"]["detections"]

    # `segtrt eval --onnx` scores the exported file like `segtrt eval --checkpoint` scores the model
    checkpoint = tmp_path / f"{kind}.pt"
    save_checkpoint(checkpoint, model, CLASSES, preprocess)
    from segtrt.evaluation.coco import evaluate_backend

    reference = evaluate_backend(open_backend(checkpoint), dataset.annotation_file, progress=False)
    for flavour in ("portable", "trt"):
        exported = evaluate_backend(open_backend(paths[flavour]), dataset.annotation_file, progress=False)
        assert exported["segm"]["AP"] == pytest.approx(reference["segm"]["AP"], abs=1e-3), flavour
        assert exported["bbox"]["AP"] == pytest.approx(reference["bbox"]["AP"], abs=1e-3), flavour


def test_plugin_nodes_match_the_plugins_and_portable_is_standard(tmp_path):
    model = seeded_model("maskrcnn")
    preprocess = Preprocess(input_size=(SIZE, SIZE))
    trt = tmp_path / "m.trt.onnx"
    portable = tmp_path / "m.portable.onnx"
    export_onnx(model, trt, "trt", CLASSES, preprocess, simplify=False)
    export_onnx(model, portable, "portable", CLASSES, preprocess, simplify=False)
    graph = onnx.load(trt)
    nodes = [node for node in graph.graph.node if node.domain == PLUGIN_DOMAIN]
    assert [node.op_type for node in nodes] == ["MultilevelRoIAlign", "MultilevelRoIAlign"]
    A = onnx.AttributeProto
    expected_types = {
        "output_height": A.INT, "output_width": A.INT, "feature_strides": A.INTS, "sampling_ratio": A.INT,
        "aligned": A.INT, "mode": A.STRING, "canonical_scale": A.INT, "canonical_level": A.INT,
        "plugin_version": A.STRING,
    }
    heights = []
    for node in nodes:
        assert {a.name: a.type for a in node.attribute} == expected_types  # no plugin_namespace
        values = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert values["plugin_version"] == b"1" and values["aligned"] == 0 and values["sampling_ratio"] == 2
        assert list(values["feature_strides"]) == [4, 8, 16, 32] and len(node.input) == 5
        heights.append((values["output_height"], values["output_width"]))
    assert heights == [(7, 7), (14, 14)]  # the box head's pooler, then the mask head's
    inferred = onnx.shape_inference.infer_shapes(graph, strict_mode=True)
    types = {v.name: v.type.tensor_type for v in [*inferred.graph.value_info, *inferred.graph.input]}
    assert types[nodes[0].input[0]].elem_type == onnx.TensorProto.FLOAT  # rois FP32
    assert [d.dim_value for d in types[nodes[1].output[0]].shape.dim] == [1, 20, 96, 14, 14]
    assert not any(node.domain not in ("", "ai.onnx") for node in onnx.load(portable).graph.node)
    info = read_info(trt)
    assert (info.kind, info.flavour, info.mask_frame, info.mask_size) == ("maskrcnn", "trt", "box", (28, 28))
    assert info.class_names == CLASSES and info.preprocess.input_size == (SIZE, SIZE)


def test_matrix_nms_node_dtypes_and_dynamic_batch(tmp_path):
    model = seeded_model("solov2")
    path = tmp_path / "s.trt.onnx"
    export_onnx(model, path, "trt", CLASSES, Preprocess(input_size=(SIZE, SIZE)), dynamic_batch=True, simplify=False)
    graph = onnx.shape_inference.infer_shapes(onnx.load(path), strict_mode=True)
    node = next(node for node in graph.graph.node if node.op_type == "MatrixNMS")
    assert node.domain == PLUGIN_DOMAIN
    types = {v.name: v.type.tensor_type.elem_type for v in graph.graph.value_info}
    types.update({v.name: v.type.tensor_type.elem_type for v in graph.graph.output})
    I32, F32 = onnx.TensorProto.INT32, onnx.TensorProto.FLOAT
    assert [types[name] for name in node.input] == [F32, F32, I32]
    assert [types[name] for name in node.output] == [I32, I32, F32, I32]
    images = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3)) * 255
    with torch.no_grad():
        expected = model(images)
    outputs = OnnxRuntimeBackend(path)(images.numpy())
    assert outputs["masks"].shape == (2, 20, SIZE // 4, SIZE // 4)  # frame "image", stride 4
    np.testing.assert_array_equal(outputs["num_detections"], expected[0].numpy())
    np.testing.assert_array_equal(outputs["labels"], expected[3].numpy())
    np.testing.assert_allclose(outputs["boxes"], expected[1].numpy(), atol=1e-3)


@pytest.mark.parametrize("flavour", ["portable", "trt"])
def test_every_cell_rule_computes_masks_for_the_passing_cells_only(flavour, tmp_path):
    """max_candidates=0 (the ResNet default): the graph selects the cells holding a pair above score_thr
    (NonZero), so its mask count follows the image. It gives PyTorch's detections for a batch whose images
    pass different numbers of pairs, fewer than nms_pre (TopK's K, reached with zero-score pairs), and for a
    score_thr no pair passes (a selection of one cell)."""
    images = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3)) * 255
    images[1] *= 0.2
    nms_pre = 50
    for score_thr in (0.62, 1.0):
        model = package_seeded_model("solov2", len(CLASSES), max_detections=20, max_candidates=0,
                                     score_thr=score_thr, nms_pre=nms_pre)
        path = tmp_path / f"every_cell_{score_thr}.{flavour}.onnx"
        export_onnx(model, path, flavour, CLASSES, Preprocess(input_size=(SIZE, SIZE)), dynamic_batch=True,
                    simplify=flavour == "trt")
        assert "NonZero" in {node.op_type for node in onnx.load(path).graph.node}
        if flavour == "trt":
            assert not check_onnx(path).warnings  # `segtrt build --check` takes it (it raises otherwise)
        with torch.no_grad():
            expected = model(images)
            passing = model.candidate_pairs(images).tolist()
        if score_thr < 1:
            assert passing[0] != passing[1] and 0 < min(passing) and max(passing) < nms_pre, passing
            assert (expected[0] > 0).all()
        else:
            assert passing == [0, 0] and (expected[0] == 0).all()
        outputs = OnnxRuntimeBackend(path)(images.numpy())
        np.testing.assert_array_equal(outputs["num_detections"], expected[0].numpy())
        np.testing.assert_array_equal(outputs["labels"], expected[3].numpy())
        np.testing.assert_allclose(outputs["scores"], expected[2].numpy(), atol=1e-5)
        np.testing.assert_allclose(outputs["masks"], expected[4].numpy(), atol=1e-5)


def test_cli_errors_are_one_line_and_leave_no_file(tmp_path, capsys, monkeypatch):
    assert cli_main(["export", "--checkpoint", str(tmp_path / "missing.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    model = seeded_model("maskrcnn")
    checkpoint = tmp_path / "m.pt"
    save_checkpoint(checkpoint, model, CLASSES, Preprocess(input_size=(SIZE, SIZE)))
    assert cli_main(["export", "--checkpoint", str(checkpoint), "--input-size", "100", "128"]) == 2
    assert "multiple of 32" in capsys.readouterr().err
    assert cli_main(["export", "--checkpoint", str(checkpoint), "--dynamic-batch"]) == 2
    assert "fixed batch" in capsys.readouterr().err

    import segtrt.export as export_module

    def failing_check(graph):
        raise SegtrtError("the exported graph fails the ONNX checks: simulated")

    monkeypatch.setattr(export_module, "check_graph", failing_check)
    out = tmp_path / "out.onnx"
    assert cli_main(["export", "--checkpoint", str(checkpoint), "--flavour", "portable", "--out", str(out),
                     "--no-simplify"]) == 2
    assert "simulated" in capsys.readouterr().err
    assert list(tmp_path.glob("*.onnx")) == [] and list(tmp_path.glob(".*.tmp")) == []


def test_cli_exports_both_flavours_with_the_checkpoints_facts(tmp_path, capsys):
    model = seeded_model("solov2")
    checkpoint = tmp_path / "solov2.pt"
    save_checkpoint(checkpoint, model, CLASSES, Preprocess(input_size=(SIZE, SIZE)))
    assert cli_main(["export", "--checkpoint", str(checkpoint), "--batch", "2", "--check"]) == 0
    printed = capsys.readouterr().out
    for flavour in ("trt", "portable"):
        path = tmp_path / f"solov2.{flavour}.onnx"
        info = read_info(path)
        assert (info.kind, info.flavour, info.class_names) == ("solov2", flavour, CLASSES)
        assert info.preprocess == Preprocess(input_size=(SIZE, SIZE))
        graph = onnx.load(path)
        assert [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim] == [2, 3, SIZE, SIZE]
        assert str(path) in printed
    assert printed.count("check: ONNX Runtime matches PyTorch") == 2
