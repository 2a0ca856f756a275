"""Building and running engines where TensorRT is missing (every machine here): one sentence naming what is
missing and the CPU path, exit status 2, no traceback; and the CUDA error unpacking the backend relies on."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
from onnx import helper

from segtrt import SegtrtError
from segtrt.runtime.model_info import ModelInfo, write_info
from segtrt.runtime.preprocess import Preprocess

from test_engine_torch_free import BLOCK


@pytest.fixture
def tiny_onnx(tmp_path):
    """A minimal file with segtrt metadata: images [1, 3, 32, 32] -> Relu (enough for the check and the plan)."""
    graph = helper.make_graph([helper.make_node("Relu", ["images"], ["out"])], "tiny",
                              [helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, [1, 3, 32, 32])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    write_info(model, ModelInfo(kind="solov2", flavour="portable", class_names=("a",),
                                preprocess=Preprocess(input_size=(32, 32)), max_detections=10, mask_size=(8, 8),
                                mask_frame="image"))
    path = tmp_path / "tiny.onnx"
    onnx.save(model, str(path))
    return path


def run(code: str, prelude: str = BLOCK, path_entry: str | None = None) -> subprocess.CompletedProcess:
    setup = f"import sys; sys.path.insert(0, {path_entry!r})\n" if path_entry else ""
    return subprocess.run([sys.executable, "-c", setup + prelude + textwrap.dedent(code)], capture_output=True,
                          text=True)


def assert_one_sentence(result, *needles):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_building_without_tensorrt_names_what_is_missing_and_the_cpu_path(tiny_onnx, tmp_path):
    result = run(f'''
        import sys
        from segtrt.cli import main
        sys.exit(main(["build", "--onnx", {str(tiny_onnx)!r}, "--out", {str(tmp_path / "tiny.engine")!r}]))
    ''')
    assert_one_sentence(result, "needs TensorRT's Python package", "segtrt build --onnx FILE --check",
                        "ONNX Runtime")
    assert "trtexec --onnx=" in result.stdout  # the plan is still printed: the user can build elsewhere
    assert not (tmp_path / "tiny.engine").exists()


def test_tensorrt_type_stubs_alone_are_not_taken_for_tensorrt(tiny_onnx, tmp_path):
    """tensorrt-stubs installs a `tensorrt` folder holding only .pyi files, which imports as an empty package."""
    (tmp_path / "stubs" / "tensorrt").mkdir(parents=True)
    (tmp_path / "stubs" / "tensorrt" / "__init__.pyi").write_text("class Builder: ...\n")
    result = run(f'''
        import sys
        from segtrt.cli import main
        sys.exit(main(["build", "--onnx", {str(tiny_onnx)!r}]))
    ''', prelude="", path_entry=str(tmp_path / "stubs"))
    assert_one_sentence(result, "only type stubs")


def test_opening_an_engine_checks_its_sidecar_then_needs_tensorrt(tmp_path):
    import cv2

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not built here")
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "image.png"), np.zeros((32, 32, 3), np.uint8))
    code = f'''
        import sys
        from segtrt.cli import main
        sys.exit(main(["predict", "--model", {str(engine)!r}, "--source", {str(tmp_path / "images")!r},
                       "--out", {str(tmp_path / "out")!r}]))
    '''
    assert_one_sentence(run(code), "has no sidecar")
    (tmp_path / "m.engine.json").write_text(json.dumps({"format": "segtrt-engine/0"}))
    assert_one_sentence(run(code), "not a segtrt engine sidecar")


def test_an_engine_with_a_good_sidecar_gets_as_far_as_needing_tensorrt(built_sidecar):
    result = run(f'''
        from segtrt import SegtrtError
        from segtrt.runtime.backends import open_backend
        try:
            open_backend({str(built_sidecar)!r})
        except SegtrtError as error:
            print(error)
    ''')
    assert result.returncode == 0, result.stderr
    assert "needs TensorRT's Python package" in result.stdout


@pytest.fixture
def built_sidecar(tmp_path):
    """An engine path with a well-formed sidecar (from the sidecar tests' plan): all but TensorRT is in place."""
    from segtrt.engine.plan import BuildOptions, BuildPlan
    from segtrt.engine.profiles import profiles_for
    from segtrt.engine.sidecar import Machine, for_plan, write_sidecar
    from test_engine_plan import checked_model

    (tmp_path / "m.engine").write_bytes(b"engine bytes")
    (tmp_path / "m.onnx").write_bytes(b"onnx bytes")
    model = checked_model((1, 3, 256, 320), plugin_nodes={}, path=tmp_path / "m.onnx")
    plan = BuildPlan(model, profiles_for(model), BuildOptions(engine=tmp_path / "m.engine", plugins=tmp_path / "x.so"))
    write_sidecar(tmp_path / "m.engine", for_plan(plan, Machine("10.3.0", "Orin", "8.7"), "0" * 64))
    return tmp_path / "m.engine"


def test_cuda_errors_become_one_sentence():
    from cuda.bindings import runtime as cudart

    from segtrt.engine.machine import cuda_check

    assert cuda_check((cudart.cudaError_t.cudaSuccess, 7)) == 7
    assert cuda_check((cudart.cudaError_t.cudaSuccess, 1, 2)) == (1, 2)
    assert cuda_check((cudart.cudaError_t.cudaSuccess,)) is None
    with pytest.raises(SegtrtError, match="cudaErrorInvalidValue"):
        cuda_check((cudart.cudaError_t.cudaErrorInvalidValue, None))


@pytest.mark.parametrize("op_type", ["MatrixNMS", "MultilevelRoIAlign"])
def test_the_creator_field_check_accepts_our_cpp_creators_and_names_a_mismatch(op_type):
    """The fields the C++ creators declare (read from plugins/*/…Plugin.cpp) pass the builder's check; a
    library whose creator lacks a field or types one differently is named."""
    from segtrt.engine.build import creator_field_problem
    from test_plugin_registry import creator_fields

    declared = creator_fields(op_type)
    assert creator_field_problem(op_type, declared) is None
    name = next(iter(declared))
    assert creator_field_problem(op_type, {k: v for k, v in declared.items() if k != name}) == (
        f"declares field {name} as missing, the node gives {declared[name]}")
    other = "FLOAT32" if declared[name] != "FLOAT32" else "INT32"
    assert f"declares field {name} as {other}" in creator_field_problem(op_type, {**declared, name: other})
