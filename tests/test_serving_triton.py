"""A real tritonserver (2.51, from the nvidia-pytriton wheel in .venv-triton) on 127.0.0.1 serves the Python-backend
model of `segtrt triton-repo`: detections over HTTP equal local ONNX Runtime's for the same images, Triton's dynamic
batcher batches concurrent requests, a corrupt image is one error response and the server goes on serving.

The model's code runs in Triton's own interpreter (numpy 1.26, no torch), the reference in this one (numpy 2).
"""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from segtrt import SegtrtError
from segtrt.cli import main as cli_main
from segtrt.runtime.backends.onnxruntime import OnnxRuntimeBackend
from segtrt.runtime.inference import predict_images
from segtrt.runtime.sources import read_image
from segtrt.serving.client import infer, statistics
from segtrt.serving.local import DEFAULT_VENV, LocalTriton

WEIGHTS = Path(__file__).parents[1] / "python" / "segtrt" / "weights"

pytestmark = pytest.mark.skipif(not (DEFAULT_VENV / "bin" / "python").exists(),
                                reason=f"no Triton venv at {DEFAULT_VENV}: `make triton-venv` (make test makes it)")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(server, image files, {model name: the ONNX file it runs}): the Python model over each flavour of the shipped
    Mask R-CNN, `segtrt` (portable) and `plugins` (trt: plugin nodes on their CPU twins through
    onnxruntime-extensions, inside Triton), served from one fresh repository."""
    from segtrt.data.synth import write_dataset

    folder = tmp_path_factory.mktemp("triton")
    write_dataset(folder / "square", 4, seed=1000, size=(192, 192), progress=False)
    write_dataset(folder / "wide", 2, seed=1001, size=(144, 256), progress=False)  # letterboxed, pasted back
    files = sorted((folder / "square" / "images").iterdir()) + sorted((folder / "wide" / "images").iterdir())
    assert cli_main(["export", "--checkpoint", str(WEIGHTS / "maskrcnn_edge.pt"), "--flavour", "both",
                     "--out", str(folder / "maskrcnn_edge.onnx")]) == 0
    models = {"segtrt": folder / "maskrcnn_edge.portable.onnx", "plugins": folder / "maskrcnn_edge.trt.onnx"}
    for name, onnx in models.items():
        assert cli_main(["triton-repo", "--onnx", str(onnx), "--out", str(folder / "repo"), "--name", name,
                         "--max-batch", "4", "--queue-delay-us", "20000", "--threads", "1"]) == 0
    with LocalTriton(folder / "repo", list(models), ready_seconds=120) as server:
        yield server, files, models


@pytest.mark.parametrize("model", ["segtrt", "plugins"])
def test_detections_over_http_equal_local_onnx_runtime(served, model):
    server, files, models = served
    with ThreadPoolExecutor(3) as clients:  # concurrent requests: the batcher puts several in one execution
        remote = list(clients.map(lambda path: infer(server.url, model, path.read_bytes()), files))
    local = list(predict_images(OnnxRuntimeBackend(models[model], threads=1), [(p, read_image(p)) for p in files]))
    assert sum(int(r["num_detections"][0]) for r in remote) > 0
    for path, served_detections, reference in zip(files, remote, local):
        expected = reference.instances
        count = len(expected["labels"])
        assert int(served_detections["num_detections"][0]) == count, path.name
        np.testing.assert_array_equal(served_detections["labels"], expected["labels"])
        np.testing.assert_allclose(served_detections["boxes"], expected["boxes"], atol=1e-3)
        np.testing.assert_allclose(served_detections["scores"], expected["scores"], atol=1e-5)
        assert served_detections["masks"].shape == (count, *reference.image_hw)
        differing = np.count_nonzero(served_detections["masks"] != expected["masks"])
        assert differing <= 1e-4 * max(expected["masks"].size, 1), (path.name, differing)
    stats = statistics(server.url, model)
    assert int(stats["inference_count"]) >= len(files)
    assert int(stats["execution_count"]) < int(stats["inference_count"])  # some executions served a batch
    assert max(int(b["batch_size"]) for b in stats["batch_stats"]) > 1


def test_a_corrupt_image_is_one_error_and_the_server_goes_on(served):
    server, files, _ = served
    with pytest.raises(SegtrtError, match="cannot decode the request's image"):
        infer(server.url, "segtrt", b"\x89PNG but not really")
    assert infer(server.url, "segtrt", files[0].read_bytes())["masks"].dtype == np.bool_
