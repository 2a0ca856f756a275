"""`segtrt triton-repo`: the repository's layout, versions and config.pbtxt fields, parsed with Triton's own
ModelConfig schema (tritonclient's model_config_pb2, in the Triton venv), and its refusals.

The ONNX files are small graphs with segtrt metadata and the engine is bytes with a real sidecar: the repository
reads only their metadata, batch dimension and sidecar (nothing of TensorRT or Triton is faked).
"""

import json
import subprocess
from pathlib import Path

import onnx
import pytest
from onnx import helper

from segtrt import SegtrtError
from segtrt.cli import main as cli_main
from segtrt.engine.plan import BuildOptions, BuildPlan
from segtrt.engine.profiles import profiles_for
from segtrt.engine.sidecar import Machine, for_plan, write_sidecar
from segtrt.files import file_sha256
from segtrt.runtime.model_info import ModelInfo, write_info
from segtrt.runtime.preprocess import Preprocess
from segtrt.serving.local import DEFAULT_VENV
from segtrt.serving.repository import RepositoryOptions, write_repository

from test_engine_plan import checked_model

CLASSES = ("circle", "rectangle", "triangle", "star", "ring")
TRITON_PYTHON = DEFAULT_VENV / "bin" / "python"
PARSE = """
import json, sys
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2
configs = {path: json_format.MessageToDict(text_format.Parse(open(path).read(), model_config_pb2.ModelConfig()))
           for path in sys.argv[1:]}
print(json.dumps(configs))
"""


def parse_configs(*paths):
    """config.pbtxt files as Triton reads them: its ModelConfig protobuf, as a dict (camelCase keys)."""
    if not TRITON_PYTHON.exists():
        pytest.skip(f"no Triton venv at {DEFAULT_VENV}: `make triton-venv` (make test makes it)")
    result = subprocess.run([str(TRITON_PYTHON), "-I", "-c", PARSE, *map(str, paths)], capture_output=True,
                            text=True, check=True)
    return [json.loads(result.stdout)[str(path)] for path in paths]


def small_onnx(path: Path, flavour: str, batch) -> Path:
    """A segtrt-labelled ONNX file (the repository reads only its metadata and its input's batch dimension)."""
    model = helper.make_model(helper.make_graph(
        [helper.make_node("Identity", ["images"], ["out"])], "g",
        [helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, [batch, 3, 192, 192])],
        [helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, [batch, 3, 192, 192])]))
    write_info(model, ModelInfo(kind="maskrcnn", flavour=flavour, class_names=CLASSES,
                                preprocess=Preprocess(input_size=(192, 192)), max_detections=100, mask_size=(28, 28),
                                mask_frame="box"))
    onnx.save(model, str(path))
    return path


@pytest.fixture
def exports(tmp_path):
    return {"trt": small_onnx(tmp_path / "m.trt.onnx", "trt", 1),
            "portable": small_onnx(tmp_path / "m.portable.onnx", "portable", 1),
            "dynamic": small_onnx(tmp_path / "m.dynamic.onnx", "portable", "batch")}


def tensors(config, kind):
    return {t["name"]: (t["dataType"], [int(d) for d in t["dims"]]) for t in config[kind]}


def test_the_onnx_repository_layout_and_configs(exports, tmp_path, capsys):
    repo = tmp_path / "repo"
    assert cli_main(["triton-repo", "--onnx", str(exports["portable"]), "--out", str(repo), "--instances", "2",
                     "--max-batch", "4", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert f"tritonserver --model-repository={repo.resolve()}" in out and "segtrt.serving.local" in out
    assert sorted(str(p.relative_to(repo)) for p in repo.rglob("*")) == [
        "segtrt", "segtrt/1", "segtrt/1/model.onnx", "segtrt/1/model.py", "segtrt/config.pbtxt",
        "segtrt_onnx", "segtrt_onnx/1", "segtrt_onnx/1/model.onnx", "segtrt_onnx/config.pbtxt"]
    assert file_sha256(repo / "segtrt_onnx" / "1" / "model.onnx") == file_sha256(exports["portable"])
    python, raw = parse_configs(repo / "segtrt" / "config.pbtxt", repo / "segtrt_onnx" / "config.pbtxt")

    assert python["backend"] == "python" and python["maxBatchSize"] == 4
    assert tensors(python, "input") == {"image": ("TYPE_STRING", [1])}
    assert tensors(python, "output") == {"num_detections": ("TYPE_INT32", [1]), "boxes": ("TYPE_FP32", [-1, 4]),
                                         "scores": ("TYPE_FP32", [-1]), "labels": ("TYPE_INT32", [-1]),
                                         "masks": ("TYPE_BOOL", [-1, -1, -1])}
    assert python["dynamicBatching"] == {"preferredBatchSize": [2, 4], "maxQueueDelayMicroseconds": "2000"}
    assert python["instanceGroup"] == [{"count": 2, "kind": "KIND_CPU"}]
    parameters = {key: value["stringValue"] for key, value in python["parameters"].items()}
    assert parameters == {"model_file": "model.onnx", "threads": "1", "class_names": json.dumps(list(CLASSES))}
    assert python["versionPolicy"] == {"latest": {"numVersions": 1}}

    # the export has a fixed batch of 1: part of the shape, and Triton does not batch the raw model
    assert raw["backend"] == "onnxruntime" and "maxBatchSize" not in raw and "dynamicBatching" not in raw
    assert tensors(raw, "input") == {"images": ("TYPE_FP32", [1, 3, 192, 192])}
    assert tensors(raw, "output") == {"num_detections": ("TYPE_INT32", [1]), "boxes": ("TYPE_FP32", [1, 100, 4]),
                                      "scores": ("TYPE_FP32", [1, 100]), "labels": ("TYPE_INT32", [1, 100]),
                                      "masks": ("TYPE_FP32", [1, 100, 28, 28])}
    assert (repo / "segtrt" / "1" / "model.py").read_text().startswith('"""Triton\'s Python-backend model')


def test_a_dynamic_batch_onnx_model_is_batched_by_triton(exports, tmp_path):
    repo = write_repository(tmp_path / "repo", RepositoryOptions(max_batch=6, queue_delay_us=500),
                            onnx=exports["dynamic"]).path
    (raw,) = parse_configs(repo / "segtrt_onnx" / "config.pbtxt")
    assert raw["maxBatchSize"] == 6
    assert raw["dynamicBatching"] == {"preferredBatchSize": [3, 6], "maxQueueDelayMicroseconds": "500"}
    assert tensors(raw, "input") == {"images": ("TYPE_FP32", [3, 192, 192])}
    assert tensors(raw, "output")["boxes"] == ("TYPE_FP32", [100, 4])
    assert raw["output"][0]["reshape"] == {}  # num_detections [B] in the model, [B, 1] in Triton


def test_the_trt_flavour_feeds_the_python_model_only_and_versions_add_up(exports, tmp_path, capsys):
    repo = tmp_path / "repo"
    options = RepositoryOptions(name="cams")
    assert write_repository(repo, options, onnx=exports["trt"]).models == ["cams"]  # ORT's backend lacks our ops
    with pytest.raises(SegtrtError, match="version 1 of cams is already in the repository; give --version 2"):
        write_repository(repo, options, onnx=exports["trt"])
    write_repository(repo, RepositoryOptions(name="cams", version=2), onnx=exports["trt"])
    assert sorted(p.name for p in (repo / "cams").iterdir()) == ["1", "2", "config.pbtxt"]  # no staging left
    (config,) = parse_configs(repo / "cams" / "config.pbtxt")
    assert config["name"] == "cams" and config["versionPolicy"] == {"latest": {"numVersions": 1}}


def fake_engine(folder: Path, shape, plugin_library: Path) -> Path:
    """Engine bytes (no engine: Triton's files only) with a sidecar recording a real plan's facts."""
    onnx, engine = folder / "m.trt.onnx", folder / "m.engine"
    onnx.write_bytes(b"onnx bytes")
    engine.write_bytes(b"engine bytes")
    model = checked_model(shape, path=onnx)
    dynamic = not isinstance(shape[0], int)
    plan = BuildPlan(model, profiles_for(model, max_batch=16 if dynamic else None),
                     BuildOptions(engine=engine, plugins=plugin_library))
    write_sidecar(engine, for_plan(plan, Machine("10.3.0", "Orin", "8.7"), file_sha256(engine)))
    return engine


@pytest.mark.parametrize("batch", [1, "batch"])
def test_an_engine_becomes_a_tensorrt_plan_with_its_plugin_library(tmp_path, capsys, batch):
    library = tmp_path / "libsegtrt_plugins.so"
    library.write_bytes(b"plugin library bytes")
    engine = fake_engine(tmp_path, (batch, 3, 256, 320), library)
    repo = tmp_path / "repo"
    assert cli_main(["triton-repo", "--engine", str(engine), "--plugins", str(library), "--out", str(repo)]) == 0
    out = capsys.readouterr().out
    copy = (repo / "segtrt_trt" / "libsegtrt_plugins.so").resolve()
    assert f"--backend-config=tensorrt,plugins={copy}" in out and f"LD_PRELOAD={copy}" in out
    assert copy.read_bytes() == library.read_bytes()
    assert sorted(p.name for p in (repo / "segtrt_trt" / "1").iterdir()) == ["model.plan", "model.plan.json"]
    assert sorted(p.name for p in (repo / "segtrt" / "1").iterdir()) == ["model.plan", "model.plan.json", "model.py"]
    plan, python = parse_configs(repo / "segtrt_trt" / "config.pbtxt", repo / "segtrt" / "config.pbtxt")
    assert plan["platform"] == "tensorrt_plan" and plan["instanceGroup"] == [{"count": 1, "kind": "KIND_GPU"}]
    rows = [100] if batch == "batch" else [1, 100]
    if batch == "batch":  # the profile's largest batch, and the batcher over it
        assert plan["maxBatchSize"] == 16 and "dynamicBatching" in plan
        assert tensors(plan, "input") == {"images": ("TYPE_FP32", [3, 256, 320])}
        assert plan["output"][0] == {"name": "num_detections", "dataType": "TYPE_INT32", "dims": ["1"],
                                     "reshape": {}}  # [B] in the engine: Triton's [B, 1] reshaped
    else:
        assert "maxBatchSize" not in plan and "dynamicBatching" not in plan
        assert tensors(plan, "input") == {"images": ("TYPE_FP32", [1, 3, 256, 320])}
    assert tensors(plan, "output")["masks"] == ("TYPE_FP32", [*rows, 64, 80])
    parameters = {key: value["stringValue"] for key, value in python["parameters"].items()}
    assert parameters["model_file"] == "model.plan" and parameters["plugin_library"] == "segtrt_trt/libsegtrt_plugins.so"
    assert python["instanceGroup"] == [{"count": 1, "kind": "KIND_GPU"}]


def test_refusals_are_one_line_and_write_nothing(exports, tmp_path, capsys):
    library = tmp_path / "libsegtrt_plugins.so"
    library.write_bytes(b"plugin library bytes")
    engine = fake_engine(tmp_path, (1, 3, 256, 320), library)
    other = tmp_path / "other.so"
    other.write_bytes(b"another build")
    repo = tmp_path / "repo"
    for arguments, needle in [
        ([], "give --onnx"),
        (["--onnx", str(tmp_path / "missing.onnx")], "does not exist"),
        (["--engine", str(engine), "--plugins", str(other)], "is not the plugin library"),
        (["--engine", str(engine), "--plugins", str(tmp_path / "none.so")], "not found"),
        (["--onnx", str(exports["portable"]), "--max-batch", "0"], "at least 1"),
    ]:
        assert cli_main(["triton-repo", "--out", str(repo), *arguments]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
        assert not repo.exists()


def test_the_serving_modules_import_without_torch_or_tensorrt():
    from test_engine_torch_free import run_blocked

    result = run_blocked('''
        import segtrt.serving.cli, segtrt.serving.client, segtrt.serving.local, segtrt.serving.repository
        print("imported")
    ''')
    assert result.returncode == 0 and "imported" in result.stdout, result.stderr
