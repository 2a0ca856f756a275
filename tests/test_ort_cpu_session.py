"""The CPU session's graph rewrites: 0/1 mask overlaps and areas counted in integers, same numbers."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper

from segtrt.runtime.backends.integer_counts import count_overlaps_in_integers, count_pixels_in_integers


def _overlap_graph(input_type: int) -> onnx.ModelProto:
    """masks [B, K, N] of `input_type` -> Greater(0.5) (if float) -> Cast float -> X @ X^T [B, K, K]."""
    nodes = []
    binary = "masks"
    if input_type == TensorProto.FLOAT:  # a float 0/1 input is no bool: the rewrite must leave it alone
        nodes.append(helper.make_node("Identity", ["masks"], ["binary"]))
        binary = "binary"
    nodes += [
        helper.make_node("Cast", [binary], ["as_float"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["as_float"], ["transposed"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["as_float", "transposed"], ["overlaps"], name="overlaps"),
        helper.make_node("ReduceMax", ["overlaps"], ["largest"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "overlaps", [helper.make_tensor_value_info("masks", input_type, [2, 7, 300])],
        [helper.make_tensor_value_info("overlaps", TensorProto.FLOAT, [2, 7, 7]),
         helper.make_tensor_value_info("largest", TensorProto.FLOAT, [])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, masks: np.ndarray) -> list[np.ndarray]:
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"masks": masks})


def test_binary_mask_overlaps_become_an_integer_matmul_with_the_same_counts():
    masks = np.random.default_rng(0).random((2, 7, 300)) > 0.6
    model = _overlap_graph(TensorProto.BOOL)
    expected = _run(model, masks)
    assert count_overlaps_in_integers(model) == 1
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node].count("MatMulInteger") == 1
    assert not any(n.op_type == "MatMul" for n in model.graph.node)
    rewritten = _run(model, masks)
    for want, got in zip(expected, rewritten):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(rewritten[0][0], masks[0].astype(np.int64) @ masks[0].T.astype(np.int64))


@pytest.mark.parametrize("perm", [None, [0, 1, 2]])
def test_products_that_are_not_binary_self_overlaps_stay_float(perm):
    model = _overlap_graph(TensorProto.FLOAT)
    assert count_overlaps_in_integers(model) == 0  # float input, not a bool mask
    model = _overlap_graph(TensorProto.BOOL)
    transpose = next(n for n in model.graph.node if n.op_type == "Transpose")
    del transpose.attribute[:]
    if perm:
        transpose.attribute.append(helper.make_attribute("perm", perm))
    assert count_overlaps_in_integers(model) == 0  # not a transpose of the last two axes
    assert any(n.op_type == "MatMul" for n in model.graph.node)


def _area_graph(axes: list[int], masks_shape, keepdims: int = 0) -> onnx.ModelProto:
    """probs [...] -> Greater(0.5) -> Cast float -> ReduceSum(axes): mask areas, height dynamic."""
    nodes = [
        helper.make_node("Greater", ["probs", "half"], ["binary"]),
        helper.make_node("Cast", ["binary"], ["as_float"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["as_float", "axes"], ["areas"], keepdims=keepdims),
    ]
    dims = ["height" if i == len(masks_shape) - 2 else size for i, size in enumerate(masks_shape)]
    graph = helper.make_graph(
        nodes, "areas", [helper.make_tensor_value_info("probs", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("areas", TensorProto.FLOAT, [None] * (len(dims) - (0 if keepdims else len(axes))))],
        [helper.make_tensor("half", TensorProto.FLOAT, [], [0.5]), helper.make_tensor("axes", TensorProto.INT64, [len(axes)], axes)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("axes", [[2, 3], [-1], [-2, -1]])
def test_mask_areas_become_an_integer_matmul_with_the_same_counts_at_any_size(axes):
    model = _area_graph(axes, [2, 5, 12, 9])  # height is dynamic: the column of ones follows the input
    assert count_pixels_in_integers(model) == 1
    onnx.checker.check_model(model)
    ops = [n.op_type for n in model.graph.node]
    assert "MatMulInteger" in ops and "ReduceSum" not in ops
    assert "Cast" in ops and not any(n.output[0] == "as_float" for n in model.graph.node)  # the float copy is gone
    reference = _area_graph(axes, [2, 5, 12, 9])
    for height in (12, 7):
        probs = np.random.default_rng(height).random((2, 5, height, 9), dtype=np.float32)
        want = _run_probs(reference, probs)
        got = _run_probs(model, probs)
        assert got.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got, (probs > 0.5).sum(tuple(axes)))


@pytest.mark.parametrize("axes, keepdims", [([1, 2], 0), ([2, 3], 1)])
def test_sums_over_leading_axes_or_with_kept_dims_stay_float(axes, keepdims):
    model = _area_graph(axes, [2, 5, 12, 9], keepdims)
    assert count_pixels_in_integers(model) == 0
    assert any(n.op_type == "ReduceSum" for n in model.graph.node)


def _run_probs(model: onnx.ModelProto, probs: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"probs": probs})[0]
