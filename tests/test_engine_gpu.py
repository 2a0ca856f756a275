"""On a machine with TensorRT, an NVIDIA GPU and the plugin library (`make native` with TENSORRT_ROOT): the
shipped SOLOv2 and Mask R-CNN trt exports build into engines whose sidecars name this machine, and the TensorRT
backend's detections agree with ONNX Runtime's on the same images. Skipped, with the reason, everywhere else.

Run on a GPU machine: `pytest -m gpu tests/test_engine_gpu.py`."""

from pathlib import Path

import numpy as np
import pytest

from segtrt.ops.registry import default_plugin_library

WEIGHTS = Path(__file__).parents[1] / "python" / "segtrt" / "weights"


def _missing() -> str | None:
    """Why this machine cannot build engines, or None."""
    try:
        import tensorrt
    except ImportError as error:
        return f"needs TensorRT ({error})"
    if not hasattr(tensorrt, "Builder"):
        return "needs TensorRT (only its type stubs are installed)"
    from cuda.bindings import runtime as cudart

    error, _ = cudart.cudaGetDevice()
    if error != cudart.cudaError_t.cudaSuccess:
        return f"needs an NVIDIA GPU and driver ({error.name})"
    if not default_plugin_library().is_file():
        return f"needs segtrt's plugin library at {default_plugin_library()} (make native with TENSORRT_ROOT)"
    return None


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_missing() is not None, reason=str(_missing()))]


@pytest.mark.parametrize("model", ["solov2_edge", "maskrcnn_edge"])
def test_an_engine_builds_and_agrees_with_onnx_runtime(model, tmp_path):
    from segtrt.cli import main
    from segtrt.data.synth import write_dataset
    from segtrt.engine.backend import TensorRTBackend
    from segtrt.engine.machine import current_machine
    from segtrt.engine.sidecar import read_sidecar
    from segtrt.runtime.backends.onnxruntime import OnnxRuntimeBackend
    from segtrt.runtime.preprocess import to_model_input
    import cv2

    onnx_path, engine = tmp_path / f"{model}.trt.onnx", tmp_path / f"{model}.engine"
    assert main(["export", "--checkpoint", str(WEIGHTS / f"{model}.pt"), "--flavour", "trt",
                 "--out", str(onnx_path)]) == 0
    assert main(["build", "--onnx", str(onnx_path), "--out", str(engine)]) == 0
    assert read_sidecar(engine).machine == current_machine()

    reference, backend = OnnxRuntimeBackend(onnx_path), TensorRTBackend(engine)
    write_dataset(tmp_path / "data", 4, seed=1000, size=(192, 192), progress=False)
    images = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
              for p in sorted((tmp_path / "data" / "images").iterdir())]
    detections = 0
    for image in images:
        batch, _ = to_model_input([image], reference.info.preprocess)
        expected, got = reference(batch), backend(batch)
        count = int(expected["num_detections"][0])
        assert int(got["num_detections"][0]) == count
        detections += count
        np.testing.assert_allclose(got["boxes"][0, :count], expected["boxes"][0, :count], atol=1.0)
        np.testing.assert_allclose(got["scores"][0, :count], expected["scores"][0, :count], atol=2e-3)
        np.testing.assert_array_equal(got["labels"][0, :count], expected["labels"][0, :count])
    assert detections > 0
    backend.close()
