"""`segtrt build --check` on the shipped models' exports (both flavours) and on broken copies of them: every
problem TensorRT's ONNX parser would meet is one line naming it, and exit status 2; a buildable file prints
the plan and the trtexec line and exits 0."""

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from segtrt import SegtrtError
from segtrt.cli import main as cli_main
from segtrt.engine.check import check_onnx
from segtrt.engine.parser_support import TOPK_MAX_K
from segtrt.runtime.model_info import INPUT_NAME

from pathlib import Path

WEIGHTS = Path(__file__).parents[1] / "python" / "segtrt" / "weights"


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """{(model, flavour): path} of `segtrt export --flavour both` of each shipped model, made once."""
    folder = tmp_path_factory.mktemp("exports")
    paths = {}
    for model in ("solov2_edge", "maskrcnn_edge"):
        assert cli_main(["export", "--checkpoint", str(WEIGHTS / f"{model}.pt"), "--flavour", "both",
                         "--out", str(folder / f"{model}.onnx")]) == 0
        for flavour in ("trt", "portable"):
            paths[model, flavour] = folder / f"{model}.{flavour}.onnx"
            assert paths[model, flavour].is_file()
    return paths


def broken_copy(source, tmp_path, change) -> Path:
    model = onnx.load(str(source))
    change(model)
    path = tmp_path / f"broken.{source.name}"
    onnx.save(model, str(path))
    return path


def first(model, op_type, domain=""):
    return next(node for node in model.graph.node if node.op_type == op_type and node.domain == domain)


def set_attribute(node, name, value):
    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend([*kept, helper.make_attribute(name, value)])


def run_check(path, capsys):
    code = cli_main(["build", "--onnx", str(path), "--check"])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("model", ["solov2_edge", "maskrcnn_edge"])
@pytest.mark.parametrize("flavour", ["trt", "portable"])
def test_the_shipped_exports_are_buildable(exports, model, flavour, capsys):
    code, out, err = run_check(exports[model, flavour], capsys)
    assert code == 0, err
    assert "check passed" in out and "precision: fp32" in out
    trtexec = next(line.strip() for line in out.splitlines() if line.strip().startswith("trtexec "))
    assert f"--onnx={exports[model, flavour]}" in trtexec and "--stronglyTyped" in trtexec
    plugin_nodes = {"solov2_edge": "1 MatrixNMS", "maskrcnn_edge": "2 MultilevelRoIAlign"}[model]
    if flavour == "trt":
        assert plugin_nodes in out and "--dynamicPlugins=" in trtexec
    else:
        assert "plugin library: not needed" in out and "--dynamicPlugins" not in trtexec


def test_the_maskrcnn_export_holds_plain_nms_and_constant_topk_ks(exports):
    """DESIGN.md: no If around the NMS (torchvision's empty-input check) and no Shape-computed TopK K."""
    model = onnx.load(str(exports["maskrcnn_edge", "trt"]))
    op_types = [node.op_type for node in model.graph.node]
    assert "If" not in op_types and op_types.count("NonMaxSuppression") == 2
    constants = {i.name for i in model.graph.initializer} | {n.output[0] for n in model.graph.node
                                                               if n.op_type == "Constant"}
    assert all(n.input[1] in constants for n in model.graph.node if n.op_type == "TopK")
    checked = check_onnx(exports["maskrcnn_edge", "trt"])
    assert checked.plugin_nodes == {"MultilevelRoIAlign": 2} and checked.warnings == []


def assert_refused(path, capsys, *needles):
    code, out, err = run_check(path, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_an_op_the_parser_lacks_is_refused(exports, tmp_path, capsys):
    def change(model):
        node = first(model, "Relu")
        node.op_type, node.name = "BitShift", "shifty"  # a row marked N in onnx-tensorrt's table
    assert_refused(broken_copy(exports["solov2_edge", "portable"], tmp_path, change), capsys,
                   "BitShift node 'shifty'", "not supported by TensorRT's ONNX parser")


def test_a_foreign_domain_and_an_out_of_range_opset_are_refused(exports, tmp_path, capsys):
    def foreign(model):
        first(model, "Relu").domain = "com.microsoft"
    assert_refused(broken_copy(exports["solov2_edge", "portable"], tmp_path, foreign), capsys, "com.microsoft")

    def newer(model):
        next(o for o in model.opset_import if o.domain == "").version = 21
    assert_refused(broken_copy(exports["solov2_edge", "portable"], tmp_path, newer), capsys, "opset is 21")


@pytest.mark.parametrize("change, needles", [
    (lambda node: set_attribute(node, "kernel", "cubic"), ["MatrixNMS node", "kernel"]),
    (lambda node: set_attribute(node, "sigma", 2), ["attribute sigma is INT", "FLOAT"]),
    (lambda node: set_attribute(node, "colour", "red"), ["no attribute(s) colour"]),
    (lambda node: set_attribute(node, "plugin_version", "2"), ["plugin_version is '2'"]),
    (lambda node: set_attribute(node, "plugin_namespace", "acme"), ["plugin_namespace 'acme'"]),
    (lambda node: setattr(node, "op_type", "MatrixNMSv2"), ["unknown segtrt plugin 'MatrixNMSv2'"]),
])
def test_bad_plugin_nodes_are_refused_by_the_registry(exports, tmp_path, capsys, change, needles):
    path = broken_copy(exports["solov2_edge", "trt"], tmp_path,
                       lambda model: change(first(model, "MatrixNMS", "segtrt")))
    assert_refused(path, capsys, *needles)


def test_a_bad_multilevel_roi_align_attribute_is_refused(exports, tmp_path, capsys):
    path = broken_copy(exports["maskrcnn_edge", "trt"], tmp_path, lambda model: set_attribute(
        first(model, "MultilevelRoIAlign", "segtrt"), "feature_strides", [4, 8]))  # 2 strides, 4 feature maps
    assert_refused(path, capsys, "MultilevelRoIAlign node")


def topk_k_from(model, make_k):
    """Feed the first TopK's K from nodes make_k(model) adds; returns the TopK."""
    topk = first(model, "TopK")
    topk.input[1] = make_k(model)
    return topk


def test_topk_constraints(exports, tmp_path, capsys):
    source = exports["solov2_edge", "trt"]

    def data_dependent_k(model):
        model.graph.node.extend([
            helper.make_node("ReduceMax", [INPUT_NAME], ["k_max"], keepdims=0),
            helper.make_node("Cast", ["k_max"], ["k_int"], to=onnx.TensorProto.INT64),
            helper.make_node("Reshape", ["k_int", "k_shape"], ["k_data"]),
        ])
        model.graph.initializer.append(numpy_helper.from_array(np.array([1], np.int64), "k_shape"))
        return "k_data"
    assert_refused(broken_copy(source, tmp_path, lambda m: topk_k_from(m, data_dependent_k)), capsys,
                   "TopK node", "computed tensor 'k_data'")

    def large_k(model):
        model.graph.initializer.append(numpy_helper.from_array(np.array([TOPK_MAX_K], np.int64), "k_big"))
        return "k_big"
    assert_refused(broken_copy(source, tmp_path, lambda m: topk_k_from(m, large_k)), capsys, f"K={TOPK_MAX_K}")

    def shape_derived_k(model):  # K = 2 * (input channels = 3): known before the build, yet not a constant
        model.graph.node.extend([
            helper.make_node("Shape", [INPUT_NAME], ["k_dims"], start=1, end=2),
            helper.make_node("Mul", ["k_dims", "k_two"], ["k_shape_derived"]),
        ])
        model.graph.initializer.append(numpy_helper.from_array(np.array([2], np.int64), "k_two"))
        return "k_shape_derived"
    assert_refused(broken_copy(source, tmp_path, lambda m: topk_k_from(m, shape_derived_k)), capsys,
                   "computes K=6 from a tensor's shape")

    assert_refused(broken_copy(source, tmp_path, lambda m: set_attribute(first(m, "TopK"), "sorted", 0)),
                   capsys, "sorted=0")


def insert_qdq(model, zero_point, scale=0.5, zero_point_type=np.int8):
    """Q/DQ on the image input: the graph's consumers of `images` read the dequantized copy."""
    for node in model.graph.node:
        node.input[:] = ["images_dq" if name == INPUT_NAME else name for name in node.input]
    model.graph.initializer.extend([
        numpy_helper.from_array(np.array(scale, np.float32), "qdq_scale"),
        numpy_helper.from_array(np.array(zero_point, zero_point_type), "qdq_zero"),
    ])
    model.graph.node.insert(0, helper.make_node("QuantizeLinear", [INPUT_NAME, "qdq_scale", "qdq_zero"], ["images_q"],
                                                name="q_images"))
    model.graph.node.insert(1, helper.make_node("DequantizeLinear", ["images_q", "qdq_scale", "qdq_zero"],
                                                ["images_dq"], name="dq_images"))


def test_qdq_nodes_must_be_symmetric_int8_with_positive_scales(exports, tmp_path, capsys):
    source = exports["solov2_edge", "portable"]
    symmetric = check_onnx(broken_copy(source, tmp_path, lambda m: insert_qdq(m, 0)))
    assert symmetric.precision == "int8"
    assert_refused(broken_copy(source, tmp_path, lambda m: insert_qdq(m, 3)), capsys,
                   "QuantizeLinear node 'q_images'", "asymmetric")
    assert_refused(broken_copy(source, tmp_path, lambda m: insert_qdq(m, 0, scale=0.0)), capsys,
                   "not finite and positive")
    assert_refused(broken_copy(source, tmp_path, lambda m: insert_qdq(m, 0, zero_point_type=np.uint8)), capsys,
                   "quantizes to UINT8")


def if_model(then_shape, else_shape, same_name=False):
    def branch(name, shape):
        return helper.make_graph([helper.make_node("Constant", [], [name], value=numpy_helper.from_array(
            np.zeros(shape, np.float32)))], name, [], [helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, shape)])
    node = helper.make_node("If", ["cond"], ["y"], name="branchy", then_branch=branch("a", then_shape),
                            else_branch=branch("a" if same_name else "b", else_shape))
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("cond", onnx.TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("then_shape, else_shape, same_name, needle", [
    ([2], [2, 2], False, "rank 1 and 2"),
    ([2], [2], True, "both branches name their output 'a'"),
])
def test_if_branches_must_have_equal_ranks_and_distinct_names(exports, tmp_path, then_shape, else_shape, same_name,
                                                              needle):
    def change(model):  # a segtrt file whose graph also holds the bad If (its output unused)
        bad = if_model(then_shape, else_shape, same_name).graph
        model.graph.node.extend(bad.node)
        model.graph.input.extend(bad.input)
    with pytest.raises(SegtrtError, match=needle):
        check_onnx(broken_copy(exports["solov2_edge", "portable"], tmp_path, change))


def test_an_if_around_a_non_max_suppression_is_refused(exports, tmp_path, capsys):
    def change(model):  # the shipped NMS moved into both branches of an If, as torchvision's batched_nms exports
        nms = first(model, "NonMaxSuppression")
        outputs = [helper.make_tensor_value_info(nms.output[0] + suffix, onnx.TensorProto.INT64, [None, 3])
                   for suffix in ("_then", "_else")]
        branches = [helper.make_graph([helper.make_node("NonMaxSuppression", list(nms.input), [output.name])],
                                      f"branch{i}", [], [output]) for i, output in enumerate(outputs)]
        model.graph.initializer.append(numpy_helper.from_array(np.array(True), "no_boxes"))
        wrapper = helper.make_node("If", ["no_boxes"], list(nms.output), name="empty_check",
                                   then_branch=branches[0], else_branch=branches[1])
        index = list(model.graph.node).index(nms)
        model.graph.node.remove(nms)
        model.graph.node.insert(index, wrapper)
    assert_refused(broken_copy(exports["maskrcnn_edge", "trt"], tmp_path, change), capsys,
                   "If node 'empty_check' wraps a NonMaxSuppression")


def test_problems_are_counted_and_a_file_without_segtrt_metadata_is_refused(exports, tmp_path):
    def two_problems(model):
        for node in [n for n in model.graph.node if n.op_type == "Relu"][:2]:
            node.op_type = "BitShift"
    with pytest.raises(SegtrtError, match=r"\(and \d+ more problem"):
        check_onnx(broken_copy(exports["solov2_edge", "portable"], tmp_path, two_problems))
    with pytest.raises(SegtrtError, match="no segtrt metadata"):
        check_onnx(broken_copy(exports["solov2_edge", "portable"], tmp_path,
                               lambda model: model.ClearField("metadata_props")))
