"""`segtrt calibrate` on a shipped model (solov2_edge, trt flavour) and 8 calibration images: every variant's
types, Q/DQ and metadata, that each runs in ONNX Runtime with our CPU custom ops, the TensorRT cache format, the
Q/DQ checker's refusals, and bad input as one line with nothing written."""

import shutil
import struct
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from segtrt import SegtrtError
from segtrt.cli import main as cli_main
from segtrt.engine.check import check_model, check_onnx
from segtrt.runtime.backends.onnxruntime import OnnxRuntimeBackend
from segtrt.runtime.model_info import PLUGIN_DOMAIN, ModelInfo, read_info, write_info
from segtrt.runtime.preprocess import Preprocess

WEIGHTS = Path(__file__).parents[1] / "python" / "segtrt" / "weights"
COUNT = 8


@pytest.fixture(scope="module")
def calib_set(tmp_path_factory):
    """A COCO set of 24 images: 8 to calibrate with, the rest held out for int8-mixed's AP."""
    folder = tmp_path_factory.mktemp("calib")
    assert cli_main(["synth", "--out", str(folder / "set"), "--num-images", "24", "--seed", "0"]) == 0
    return folder / "set"


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    path = folder / "solov2_edge.trt.onnx"
    assert cli_main(["export", "--checkpoint", str(WEIGHTS / "solov2_edge.pt"), "--flavour", "trt",
                     "--out", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def variants(export, calib_set, tmp_path_factory):
    """{precision: path} of every variant, made once through the CLI (int8 with a TensorRT cache)."""
    folder = tmp_path_factory.mktemp("variants")
    paths = {}
    for precision, options in (("fp16", []), ("int8", ["--method", "max", "--cache", str(folder / "int8.cache")]),
                               ("int8-cpu", []),
                               ("int8-mixed", ["--method", "max", "--val-count", "3", "--max-ap-drop", "1"])):
        paths[precision] = folder / f"{precision}.onnx"
        assert cli_main(["calibrate", "--onnx", str(export), "--data", str(calib_set), "--precision", precision,
                         "--out", str(paths[precision]), "--count", str(COUNT)] + options) == 0
    paths["cache"] = folder / "int8.cache"
    return paths


def run_once(path, calib_set):
    from segtrt.calibration.images import CalibrationImages

    backend = OnnxRuntimeBackend(path)
    batch = next(CalibrationImages.sample(calib_set, 1).model_inputs(backend.info.preprocess))
    return backend(batch)


@pytest.mark.parametrize("precision", ["int8", "int8-cpu", "int8-mixed"])
def test_every_int8_variant_runs_in_onnx_runtime_and_records_how_it_was_made(variants, calib_set, precision):
    model = onnx.load(str(variants[precision]))
    info = read_info(model)
    assert info.precision == precision and info.kind == "solov2"
    assert info.calibration["images"] == COUNT and info.calibration["seed"] == 0
    assert info.calibration["method"] == "max"
    assert sum(n.op_type == "QuantizeLinear" for n in model.graph.node) > 50
    outputs = run_once(variants[precision], calib_set)
    assert outputs["masks"].shape[1:] == (info.max_detections, *info.mask_size)
    assert 0 < int(outputs["num_detections"][0]) <= info.max_detections


@pytest.mark.parametrize("precision", ["int8", "int8-mixed"])
def test_tensorrt_int8_variants_pass_the_checker_with_no_quantized_plugin_input(variants, precision):
    checked = check_onnx(variants[precision])
    assert checked.precision == "int8" and checked.plugin_nodes == {"MatrixNMS": 1}
    model = onnx.load(str(variants[precision]))
    producers = {o: n for n in model.graph.node for o in n.output}
    quantized_consumers = {n.op_type for n in model.graph.node for i in n.input
                           if i in producers and producers[i].op_type == "DequantizeLinear"}
    assert quantized_consumers <= {"Conv", "ConvTranspose", "Gemm", "MatMul"}  # Q/DQ only where TensorRT fuses
    zero_points = [numpy_helper.to_array(i) for i in model.graph.initializer if i.name.endswith("zero_point")]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)


def test_int8_cpu_is_u8_activations_s8_weights_which_tensorrt_refuses(variants):
    model = onnx.load(str(variants["int8-cpu"]))
    zero_points = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer if i.name.endswith("zero_point")}
    activations = [z for name, z in zero_points.items() if "_output_" in name]  # weights' end in _zero_point only
    assert activations and all(z.dtype == np.uint8 for z in activations)
    assert any(z.dtype == np.uint8 and z.any() for z in activations)  # asymmetric: what makes u8 fast on CPU
    assert {z.dtype for z in zero_points.values()} >= {np.dtype(np.uint8), np.dtype(np.int8)}  # s8 weights
    with pytest.raises(SegtrtError, match="asymmetric quantization|quantizes to UINT8"):
        check_onnx(variants["int8-cpu"])


def test_int8_mixed_records_the_sensitivity_of_every_layer(variants, export):
    from segtrt.calibration.layers import layers

    info = read_info(variants["int8-mixed"])
    sensitivity = info.calibration["sensitivity"]
    assert {entry["layer"] for entry in sensitivity} == {n.name for n in layers(onnx.load(str(export)))}
    errors = [entry["proxy_error"] for entry in sensitivity]
    assert errors == sorted(errors, reverse=True) and errors[-1] >= 0 and errors[0] > 0
    # a budget of 1 AP holds for the all-INT8 model: nothing falls back, no step ends on a layer
    assert not any(entry["fallback"] for entry in sensitivity)
    assert all(entry["ap_drop"] is None for entry in sensitivity)
    assert info.calibration["max_ap_drop"] == 1 and info.calibration["val_images"] == 3


def test_fallback_steps_end_with_every_layer_in_float():
    from segtrt.calibration.mixed import _fallback_counts

    assert _fallback_counts(5) == [0, 1, 2, 4, 5]
    assert _fallback_counts(1) == [0, 1]


def test_fp16_keeps_float32_io_fp16_weights_and_fp32_islands(variants, export, calib_set):
    model = onnx.load(str(variants["fp16"]))
    assert read_info(model).precision == "fp16"
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [TensorProto.FLOAT]
    assert {o.type.tensor_type.elem_type for o in model.graph.output} <= {TensorProto.FLOAT, TensorProto.INT32}
    weights = {i.name: i.data_type for i in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv" and n.input[1] in weights]
    assert convs and all(weights[n.input[1]] == TensorProto.FLOAT16 for n in convs)
    casts = {n.output[0]: n for n in model.graph.node if n.op_type == "Cast"}

    def fed_float32(name):  # a float32 tensor: a Cast to FLOAT, or never cast to FP16 on the way
        return name not in casts or casts[name].attribute[0].i == TensorProto.FLOAT

    norms = [n for n in model.graph.node if n.op_type == "InstanceNormalization"]
    assert norms and all(fed_float32(n.input[0]) and n.input[0] in casts for n in norms)
    types = {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}
    nms = next(n for n in model.graph.node if n.domain == PLUGIN_DOMAIN)
    assert [types[name] for name in nms.input] == [TensorProto.FLOAT16, TensorProto.FLOAT, TensorProto.INT32]
    assert check_onnx(variants["fp16"]).precision == "fp16"
    half, full = run_once(variants["fp16"], calib_set), run_once(export, calib_set)
    n = min(int(half["num_detections"][0]), int(full["num_detections"][0]))
    assert n > 0 and np.allclose(half["scores"][0, :5], full["scores"][0, :5], atol=0.02)
    assert not np.array_equal(half["scores"][0, :n], full["scores"][0, :n])  # FP16 rounding is really emulated


def test_tensorrt_cache_is_the_entropy_calibration2_text_format(variants):
    from segtrt.calibration.trt_cache import parse_cache

    text = variants["cache"].read_text()
    lines = text.splitlines()
    assert lines[0] == "TRT-100300-EntropyCalibration2" and len(lines) > 50
    name, _, value = lines[1].rpartition(": ")
    assert len(value) == 8 and int(value, 16) >= 0 and name
    version, scales = parse_cache(text)
    assert version == 100300 and all(np.isfinite(s) and s > 0 for s in scales.values())
    model = onnx.load(str(variants["int8"]))
    tensors = {o for n in model.graph.node for o in n.output} | {i.name for i in model.graph.input}
    assert set(scales) <= tensors  # TensorRT finds the tensors by their ONNX names


def test_cache_scale_is_amax_over_127_as_big_endian_float32():
    from segtrt.calibration.trt_cache import cache_text, version_number

    text = cache_text({"images": 127.0, "x": 0.0}, "10.13.2")
    assert text.splitlines() == ["TRT-101302-EntropyCalibration2", f"images: {struct.pack('>f', 1.0).hex()}",
                                 f"x: {struct.pack('>f', 1e-8 / 127).hex()}"]
    assert struct.pack(">f", 1.0).hex() == "3f800000"
    with pytest.raises(SegtrtError, match="TensorRT 10.x"):
        version_number("11.0")


# --- the Q/DQ checker on tiny graphs --------------------------------------------------------------------------

INFO = ModelInfo(kind="solov2", flavour="trt", class_names=("a",), preprocess=Preprocess(input_size=(32, 32)),
                 max_detections=4, mask_size=(8, 8), mask_frame="image")


def qdq_model(zero_point: np.ndarray, into_plugin: bool = False):
    """images -> Q -> DQ -> Conv (or -> MatrixNMS's masks input), with the segtrt metadata."""
    initializers = [numpy_helper.from_array(np.array(0.1, np.float32), "scale"),
                    numpy_helper.from_array(zero_point, "zero_point"),
                    numpy_helper.from_array(np.ones((1, 3, 1, 1), np.float32), "weight")]
    nodes = [helper.make_node("QuantizeLinear", ["images", "scale", "zero_point"], ["q"], name="q"),
             helper.make_node("DequantizeLinear", ["q", "scale", "zero_point"], ["dq"], name="dq")]
    if into_plugin:
        nodes.append(helper.make_node("MatrixNMS", ["dq", "scores", "labels"], ["count", "keep", "kept", "lab"],
                                      name="nms", domain=PLUGIN_DOMAIN, plugin_version="1"))
        inputs = [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 3]),
                  helper.make_tensor_value_info("labels", TensorProto.INT32, [1, 3])]
        outputs = [helper.make_tensor_value_info("count", TensorProto.INT32, None)]
    else:
        nodes.append(helper.make_node("Conv", ["dq", "weight"], ["y"], name="conv"))
        inputs, outputs = [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                                                         [1, 3, 32, 32]), *inputs],
                              outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(PLUGIN_DOMAIN, 1)])
    write_info(model, INFO)
    return model


def test_checker_takes_symmetric_int8_qdq():
    assert check_model(qdq_model(np.array(0, np.int8)), "ok.onnx").precision == "int8"


@pytest.mark.parametrize("zero_point, into_plugin, message", [
    (np.array(3, np.int8), False, "not 0 \\(asymmetric"),
    (np.array(0, np.uint8), False, "quantizes to UINT8"),
    (np.array(0, np.int8), True, "MatrixNMS node 'nms': input 'dq' is quantized"),
])
def test_checker_refuses_asymmetric_non_int8_and_quantized_plugin_inputs(zero_point, into_plugin, message):
    with pytest.raises(SegtrtError, match=message):
        check_model(qdq_model(zero_point, into_plugin), "bad.onnx")


# --- bad input: one line, exit 2, nothing written -------------------------------------------------------------

def calibrate(capsys, *args):
    code = cli_main(["calibrate", *args])
    return code, capsys.readouterr().err


def test_bad_calibration_sets_are_one_line_and_write_nothing(export, calib_set, tmp_path, capsys):
    out = tmp_path / "out" / "x.onnx"
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"not a png")
    no_metadata = tmp_path / "plain.onnx"
    plain = onnx.load(str(export))
    del plain.metadata_props[:]
    onnx.save(plain, str(no_metadata))
    cases = [
        ([str(export), str(empty), "--count", "1"], "holds no images"),
        ([str(export), str(broken), "--count", "1"], "cannot decode image"),
        ([str(export), str(calib_set), "--count", "25"], "holds 24 image(s), fewer than --count 25"),
        ([str(no_metadata), str(calib_set), "--count", "1"], "has no segtrt metadata"),
    ]
    for (onnx_path, data, *rest), message in cases:
        code, err = calibrate(capsys, "--onnx", onnx_path, "--data", data, "--precision", "int8", "--out",
                              str(out), *rest)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_a_full_disk_mid_write_leaves_no_partial_file(export, calib_set, tmp_path, capsys, monkeypatch):
    import errno

    import segtrt.files

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(segtrt.files.os, "fsync", full_disk)
    code, err = calibrate(capsys, "--onnx", str(export), "--data", str(calib_set), "--precision", "fp16",
                          "--out", str(tmp_path / "x.onnx"), "--count", "1")
    assert code == 2 and "No space left on device" in err and "nothing was written" in err
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_calibration_leaves_no_output(export, calib_set, tmp_path, capsys, monkeypatch):
    import segtrt.calibration.ranges

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(segtrt.calibration.ranges, "calibrate_ranges", interrupted)
    code, err = calibrate(capsys, "--onnx", str(export), "--data", str(calib_set), "--precision", "int8",
                          "--out", str(tmp_path / "x.onnx"), "--count", "1", "--cache", str(tmp_path / "x.cache"))
    assert code == 130 and "interrupted" in err
    assert list(tmp_path.iterdir()) == []


def test_int8_mixed_needs_annotated_images(export, calib_set, tmp_path, capsys):
    images_only = tmp_path / "images"
    shutil.copytree(calib_set / "images", images_only)
    code, err = calibrate(capsys, "--onnx", str(export), "--data", str(images_only), "--precision", "int8-mixed",
                          "--out", str(tmp_path / "x.onnx"), "--count", "2")
    assert code == 2 and "needs annotated images" in err


def test_percentile_and_entropy_clip_inside_the_observed_range(export, calib_set):
    from segtrt.calibration.images import CalibrationImages
    from segtrt.calibration.ranges import amax, calibrate_ranges

    images = CalibrationImages.sample(calib_set, 2)
    # SOLOv2's dynamic-convolution MatMul: three tensors, so the histogram methods stay fast
    found = {method: calibrate_ranges(export, images, method, op_types=("MatMul",))
             for method in ("max", "percentile", "entropy")}
    assert set(found["max"].data) == set(found["entropy"].data) and len(found["max"].data) == 3
    for name in found["max"].data:
        for method in ("percentile", "entropy"):
            assert 0 < amax(found[method][name]) <= amax(found["max"][name]) * (1 + 1e-6)
    # a KL search that has more than one candidate clips somewhere (ONNX Runtime's 128 default bins had one)
    assert any(amax(found["entropy"][n]) < 0.99 * amax(found["max"][n]) for n in found["max"].data)


# --- int8-cpu: upsampling ConvTranspose as a 1x1 Conv and a DepthToSpace ----------------------------------------

def upsampling_model(kernel: int, tail: str):
    """x [2, 8, 5, 5] -> ConvTranspose(8 -> 4, kernel, stride 2) -> Relu -> Conv (4 -> 3; tail: "1x1" or "3x3") -> y
    [2, 3, 10, 10] (a kernel of 3 overlaps: 11x11, which the checker does not look at)."""
    rng = np.random.default_rng(0)
    size = 1 if tail == "1x1" else 3
    initializers = [numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name) for name, shape in (
        ("up_w", (8, 4, kernel, kernel)), ("up_b", (4,)), ("conv_w", (3, 4, size, size)), ("conv_b", (3,)))]
    nodes = [helper.make_node("ConvTranspose", ["x", "up_w", "up_b"], ["up"], name="up", strides=[2, 2],
                              kernel_shape=[kernel, kernel]),
             helper.make_node("Relu", ["up"], ["relu"], name="relu"),
             helper.make_node("Conv", ["relu", "conv_w", "conv_b"], ["y"], name="conv", kernel_shape=[size, size],
                              pads=[size // 2] * 4)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8, 5, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 10, 10])], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run_float(model, x):
    import onnxruntime

    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"x": x})[0])


@pytest.mark.parametrize("tail, ops", [
    ("1x1", ["Conv", "Relu", "Conv", "DepthToSpace"]),  # a 1x1 Conv runs per sub-pixel: the shuffle moves past it
    ("3x3", ["Conv", "Relu", "DepthToSpace", "Conv"]),  # a 3x3 one mixes neighbours: the shuffle stops before it
])
def test_a_stride_sized_conv_transpose_becomes_a_1x1_conv_and_a_later_depth_to_space(tail, ops):
    from segtrt.calibration.int8_cpu import convolve_upsampling_as_subpixels

    model = upsampling_model(2, tail)
    x = np.random.default_rng(1).normal(size=(2, 8, 5, 5)).astype(np.float32)
    expected = run_float(model, x)
    assert convolve_upsampling_as_subpixels(model) == 1
    onnx.checker.check_model(model, full_check=True)
    assert [n.op_type for n in model.graph.node] == ops
    shuffle = next(n for n in model.graph.node if n.op_type == "DepthToSpace")
    assert {a.name: helper.get_attribute_value(a) for a in shuffle.attribute} == {"blocksize": 2, "mode": b"DCR"}
    groups = [helper.get_attribute_value(a) for n in model.graph.node for a in n.attribute if a.name == "group"]
    assert groups == ([4] if tail == "1x1" else [])
    assert {i.name for i in model.graph.initializer}.isdisjoint({"up_w", "up_b"})  # the ConvTranspose's are gone
    np.testing.assert_allclose(run_float(model, x), expected, rtol=1e-5, atol=1e-5)


def test_a_conv_transpose_whose_kernel_overlaps_its_neighbours_stays():
    from segtrt.calibration.int8_cpu import convolve_upsampling_as_subpixels

    model = upsampling_model(3, "1x1")
    before = model.SerializeToString()
    assert convolve_upsampling_as_subpixels(model) == 0 and model.SerializeToString() == before


def test_int8_cpu_mask_rcnn_runs_its_mask_upsampling_as_a_u8_conv(calib_set, tmp_path):
    """The shipped Mask R-CNN's conv5_mask: ONNX Runtime fuses it into a QLinearConv, no float ConvTranspose or
    large DepthToSpace is left (README "CPU speed, one thread": its float ConvTranspose cost 15.8 ms of 118)."""
    from segtrt.runtime.backends.onnxruntime import _session_options, create_session

    export, out = tmp_path / "maskrcnn_edge.portable.onnx", tmp_path / "maskrcnn_edge.int8-cpu.onnx"
    assert cli_main(["export", "--checkpoint", str(WEIGHTS / "maskrcnn_edge.pt"), "--flavour", "portable",
                     "--out", str(export)]) == 0
    assert cli_main(["calibrate", "--onnx", str(export), "--data", str(calib_set), "--precision", "int8-cpu",
                     "--out", str(out), "--count", "4"]) == 0
    options = _session_options(1)
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    create_session(out, "cpu", 1, options)
    optimized = onnx.load(options.optimized_model_filepath)
    ops = {n.name: n.op_type for n in optimized.graph.node}
    assert "ConvTranspose" not in ops.values()
    assert any(op == "QLinearConv" and "conv5_mask" in name for name, op in ops.items())
    shuffle = next(n for n in optimized.graph.node if n.op_type == "DepthToSpace")
    producers = {o: n for n in optimized.graph.node for o in n.output}
    assert producers[shuffle.input[0]].op_type == "DequantizeLinear"  # it interleaves the dequantized logits
    outputs = run_once(out, calib_set)
    info = read_info(out)
    assert outputs["masks"].shape[1:] == (info.max_detections, *info.mask_size)
    assert 0 < int(outputs["num_detections"][0]) <= info.max_detections
