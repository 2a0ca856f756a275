"""Optimisation profiles from the file and the batch options, the trtexec line, and the rebuild command that
reproduces a plan, on hand-made checked models (no export, no TensorRT)."""

import shlex
from pathlib import Path

import pytest

from segtrt import SegtrtError
from segtrt.cli import build_parser
from segtrt.engine.check import CheckedModel, TensorSpec
from segtrt.engine.cli import options_from_args
from segtrt.engine.plan import BuildOptions, BuildPlan
from segtrt.engine.profiles import profiles_for
from segtrt.runtime.model_info import ModelInfo
from segtrt.runtime.preprocess import Preprocess


def checked_model(shape, input_size=(256, 320), plugin_nodes=None, path=Path("model.trt.onnx")):
    info = ModelInfo(kind="solov2", flavour="trt", class_names=("cat", "dog"),
                     preprocess=Preprocess(input_size=input_size), max_detections=100, mask_size=(64, 80),
                     mask_frame="image")
    return CheckedModel(path=path, info=info, opset=17, inputs=(TensorSpec("images", "FLOAT", shape),),
                        precision="fp32", plugin_nodes={"MatrixNMS": 1} if plugin_nodes is None else plugin_nodes, nodes=10)


def test_a_fixed_batch_file_has_one_fixed_profile_and_refuses_other_batches():
    (profile,) = profiles_for(checked_model((2, 3, 256, 320)))
    assert (profile.min, profile.opt, profile.max) == ((2, 3, 256, 320),) * 3 and not profile.dynamic
    assert profiles_for(checked_model((2, 3, 256, 320)), max_batch=2)[0].max == (2, 3, 256, 320)
    with pytest.raises(SegtrtError, match="fixed batch of 2, so --max-batch 4"):
        profiles_for(checked_model((2, 3, 256, 320)), max_batch=4)


def test_a_dynamic_batch_needs_max_batch_and_ordered_sizes():
    model = checked_model(("batch", 3, 256, 320))
    with pytest.raises(SegtrtError, match="give --max-batch"):
        profiles_for(model)
    (profile,) = profiles_for(model, max_batch=8)
    assert (profile.min[0], profile.opt[0], profile.max[0]) == (1, 8, 8) and profile.dynamic
    (profile,) = profiles_for(model, min_batch=2, opt_batch=4, max_batch=8)
    assert (profile.min, profile.opt, profile.max) == ((2, 3, 256, 320), (4, 3, 256, 320), (8, 3, 256, 320))
    with pytest.raises(SegtrtError, match="min <= opt <= max"):
        profiles_for(model, min_batch=4, opt_batch=2, max_batch=8)


def test_the_image_size_comes_from_the_recorded_preprocessing():
    (profile,) = profiles_for(checked_model((1, 3, "h", "w"), input_size=(192, 224)))
    assert profile.max == (1, 3, 192, 224)
    with pytest.raises(SegtrtError, match="dimension 3 is 320 but the recorded pre-processing resizes to 256x256"):
        profiles_for(checked_model((1, 3, 256, 320), input_size=(256, 256)))


def full_plan(tmp_path, **overrides):
    options = dict(engine=tmp_path / "m.engine", plugins=tmp_path / "libsegtrt_plugins.so", workspace_mib=2048,
                   optimization_level=5, timing_cache=tmp_path / "timing.cache", dla_core=1)
    options.update(overrides)
    model = checked_model(("batch", 3, 256, 320), path=tmp_path / "m.trt.onnx")
    return BuildPlan(model, profiles_for(model, min_batch=1, opt_batch=2, max_batch=4), BuildOptions(**options))


def test_the_trtexec_line_carries_every_option(tmp_path):
    line = shlex.split(full_plan(tmp_path).trtexec_command())
    assert line[0] == "trtexec"
    assert set(line[1:]) == {
        f"--onnx={tmp_path / 'm.trt.onnx'}", f"--saveEngine={tmp_path / 'm.engine'}", "--stronglyTyped",
        f"--dynamicPlugins={tmp_path / 'libsegtrt_plugins.so'}", "--minShapes=images:1x3x256x320",
        "--optShapes=images:2x3x256x320", "--maxShapes=images:4x3x256x320", "--memPoolSize=workspace:2048M",
        "--builderOptimizationLevel=5", f"--timingCacheFile={tmp_path / 'timing.cache'}", "--useDLACore=1",
        "--allowGPUFallback",
    }
    legacy = shlex.split(full_plan(tmp_path, fp16=True, int8=True, calibration_cache=tmp_path / "calib.cache",
                                   hardware_compatible=True, version_compatible=True).trtexec_command())
    assert "--stronglyTyped" not in legacy
    assert {"--fp16", "--int8", f"--calib={tmp_path / 'calib.cache'}", "--hardwareCompatibilityLevel=ampere+",
            "--versionCompatible"} <= set(legacy)


@pytest.mark.parametrize("overrides", [{}, {"fp16": True, "int8": True, "calibration_cache": Path("c.cache"),
                                            "hardware_compatible": True, "version_compatible": True,
                                            "dla_core": None, "timing_cache": None}])
def test_the_rebuild_command_reproduces_the_plan(tmp_path, overrides):
    plan = full_plan(tmp_path, **overrides)
    command = shlex.split(plan.segtrt_command())
    assert command[:2] == ["segtrt", "build"]
    args = build_parser().parse_args(command[1:])
    assert options_from_args(args) == plan.options
    assert profiles_for(plan.model, args.min_batch, args.opt_batch, args.max_batch) == plan.profiles


def test_the_precision_is_the_files_unless_legacy_flags_are_given(tmp_path):
    assert full_plan(tmp_path).precision == "fp32"
    assert full_plan(tmp_path, fp16=True).precision == "fp16"
    assert full_plan(tmp_path, fp16=True, int8=True).precision == "fp16+int8"
    assert "legacy builder flags over the fp32 graph" in full_plan(tmp_path, int8=True).precision_note()
