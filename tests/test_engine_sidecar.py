"""The engine sidecar: written atomically beside the engine, read back whole, and refusing an engine from another
TensorRT version, GPU or plugin library with the reason and the rebuild command. Machines are hand-made: no GPU
or TensorRT is faked, only the facts the verifier compares."""

import dataclasses
import json
from pathlib import Path

import pytest

from segtrt import SegtrtError, __version__
from segtrt.engine.plan import BuildOptions, BuildPlan
from segtrt.engine.profiles import profiles_for
from segtrt.engine.sidecar import Machine, for_plan, read_sidecar, sidecar_path, verify, write_sidecar
from segtrt.files import file_sha256

from test_engine_plan import checked_model

ORIN = Machine("10.3.0", "Orin", "8.7")


@pytest.fixture
def built(tmp_path):
    """An 'engine' file (bytes, not an engine: only its hash matters here), its plugin library and its plan."""
    (tmp_path / "m.trt.onnx").write_bytes(b"onnx bytes")
    (tmp_path / "libsegtrt_plugins.so").write_bytes(b"plugin library bytes")
    (tmp_path / "m.engine").write_bytes(b"engine bytes")
    model = checked_model((1, 3, 256, 320), path=tmp_path / "m.trt.onnx")
    plan = BuildPlan(model, profiles_for(model), BuildOptions(engine=tmp_path / "m.engine",
                                                            plugins=tmp_path / "libsegtrt_plugins.so"))
    sidecar = for_plan(plan, ORIN, file_sha256(tmp_path / "m.engine"))
    return tmp_path, plan, sidecar


def test_the_sidecar_records_the_build_and_reads_back_whole(built):
    folder, plan, sidecar = built
    path = write_sidecar(folder / "m.engine", sidecar)
    assert path == sidecar_path(folder / "m.engine") == folder / "m.engine.json"
    assert sorted(p.name for p in folder.iterdir()) == ["libsegtrt_plugins.so", "m.engine", "m.engine.json",
                                                        "m.trt.onnx"]  # no temporary file left behind
    values = json.loads(path.read_text())
    assert values["source_onnx"] == {"path": str(folder / "m.trt.onnx"), "sha256": file_sha256(folder / "m.trt.onnx")}
    assert values["plugin_library"]["sha256"] == file_sha256(folder / "libsegtrt_plugins.so")
    assert values["tensorrt_version"] == "10.3.0" and values["gpu"] == {"name": "Orin", "compute_capability": "8.7"}
    assert values["profiles"] == [{"input": "images", "min": [1, 3, 256, 320], "opt": [1, 3, 256, 320],
                                   "max": [1, 3, 256, 320]}]
    assert values["class_names"] == ["cat", "dog"] and values["preprocess"]["input_size"] == [256, 320]
    assert values["precision"] == "fp32" and values["segtrt_version"] == __version__
    assert values["rebuild_command"] == plan.segtrt_command()
    assert read_sidecar(folder / "m.engine") == sidecar
    verify(folder / "m.engine", sidecar, ORIN, folder / "libsegtrt_plugins.so")  # the build machine may run it


def refusal(built, machine=ORIN, library_bytes=None, engine_bytes=None, library_name="libsegtrt_plugins.so", **flags):
    folder, plan, sidecar = built
    if flags:
        sidecar = dataclasses.replace(sidecar, **flags)
    if library_bytes is not None:
        (folder / library_name).write_bytes(library_bytes)
    if engine_bytes is not None:
        (folder / "m.engine").write_bytes(engine_bytes)
    with pytest.raises(SegtrtError) as error:
        verify(folder / "m.engine", sidecar, machine, folder / library_name)
    message = str(error.value)
    assert message.endswith(f"rebuild it on this machine: {plan.segtrt_command()}") and "\n" not in message
    return message


def test_another_tensorrt_version_is_refused(built):
    assert "built with TensorRT 10.3.0 and this machine has 10.13.0" in refusal(built, Machine("10.13.0", "Orin", "8.7"))


def test_another_gpu_is_refused(built):
    message = refusal(built, Machine("10.3.0", "NVIDIA GeForce RTX 4090", "8.9"))
    assert "built for Orin (compute capability 8.7) and this GPU is NVIDIA GeForce RTX 4090 (8.9)" in message


def test_another_or_missing_plugin_library_is_refused(built):
    assert "differs" in refusal(built, library_bytes=b"a rebuilt plugin library")
    assert "none was found" in refusal(built, library_name="missing.so")


def test_an_engine_file_that_is_not_the_recorded_one_is_refused(built):
    assert "is not the" in refusal(built, engine_bytes=b"another engine")


def test_compatibility_levels_widen_what_may_run(built):
    folder, _, sidecar = built
    library = folder / "libsegtrt_plugins.so"
    wide = dataclasses.replace(sidecar, version_compatible=True, hardware_compatible=True)
    verify(folder / "m.engine", wide, Machine("10.8.0", "NVIDIA A100", "8.0"), library)
    assert "runs on later 10.x versions only" in refusal(built, Machine("10.2.0", "Orin", "8.7"), version_compatible=True)
    assert "runs on later 10.x versions only" in refusal(built, Machine("11.0.0", "Orin", "8.7"), version_compatible=True)
    assert "compute capability 7.5" in refusal(built, Machine("10.3.0", "Tesla T4", "7.5"), hardware_compatible=True)


def test_a_missing_or_foreign_sidecar_is_one_sentence(tmp_path):
    with pytest.raises(SegtrtError, match="has no sidecar"):
        read_sidecar(tmp_path / "m.engine")
    Path(f"{tmp_path / 'm.engine'}.json").write_text(json.dumps({"format": "other/1"}))
    with pytest.raises(SegtrtError, match="not a segtrt engine sidecar"):
        read_sidecar(tmp_path / "m.engine")
    Path(f"{tmp_path / 'm.engine'}.json").write_text(json.dumps({"format": "segtrt-engine/1"}))
    with pytest.raises(SegtrtError, match="lacks the field"):
        read_sidecar(tmp_path / "m.engine")
