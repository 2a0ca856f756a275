"""Triton's Python-backend model that runs segtrt's own runtime: images in, detections out.

`segtrt triton-repo` copies this file into the repository as NAME/<version>/model.py, beside the model
file it runs (model.onnx: ONNX Runtime, either flavour; model.plan + model.plan.json: the TensorRT
backend). It runs inside Triton's Python-backend stub, so it imports only the torch-free runtime:
segtrt's python/ folder, numpy, onnxruntime (and onnxruntime-extensions for the trt flavour, TensorRT
and cuda-python for an engine) must be importable there (PYTHONPATH of tritonserver; README "Serving
with Triton").

Per request: input `image` BYTES [1, 1], one encoded image (PNG, JPEG, ... as cv2 decodes files);
outputs [1, ...] of that image's n detections at its original size: num_detections INT32 [1, 1],
boxes FP32 [1, n, 4] (x1 y1 x2 y2), scores FP32 [1, n], labels INT32 [1, n] (0-based class index;
the config's class_names parameter names them), masks BOOL [1, n, h, w]. Triton's dynamic batcher hands
execute() several requests at once: their images go through the model as one batch (segtrt's
letterbox, batching and mask pasting: segtrt.runtime.inference.predict_images). A request whose
image does not decode gets an error response of one sentence; the others in its batch are served.
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils  # provided by Triton's Python-backend stub

try:
    from segtrt import SegtrtError
    from segtrt.runtime.backends import open_backend
    from segtrt.runtime.inference import predict_images
    from segtrt.runtime.sources import decode_image
except ImportError as error:  # Triton prints this when the model fails to load
    raise ImportError(f"segtrt's runtime does not import in Triton's Python backend ({error}): put segtrt's "
                      "python/ folder and its runtime packages on tritonserver's PYTHONPATH") from None

IMAGE_INPUT = "image"  # segtrt.serving.repository.IMAGE_INPUT (this file runs without that module)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        version_dir = Path(args["model_repository"]) / args["model_version"]
        path = version_dir / parameters["model_file"]
        threads = int(parameters["threads"]) if "threads" in parameters else None
        if path.suffix == ".plan":
            from segtrt.engine.backend import TensorRTBackend
            from segtrt.engine.machine import cuda_check, cuda_runtime

            if args.get("model_instance_kind") == "GPU":
                cuda_check(cuda_runtime().cudaSetDevice(int(args["model_instance_device_id"])))
            library = parameters.get("plugin_library")
            repository = Path(args["model_repository"]).parent
            self.backend = TensorRTBackend(path, repository / library if library else None)
        else:
            self.backend = open_backend(path, threads=threads)
        self.batch_size = max(int(config.get("max_batch_size", 0)), 1)

    def execute(self, requests):
        responses = [None] * len(requests)
        images = []
        for index, request in enumerate(requests):
            data = pb_utils.get_input_tensor_by_name(request, IMAGE_INPUT).as_numpy()
            if data.size != 1:
                responses[index] = _error(f"send one image per request, not {data.size} (input {IMAGE_INPUT} "
                                          f"shape {list(data.shape)})")
                continue
            try:
                images.append((index, decode_image(bytes(data.reshape(-1)[0]), "the request's image")))
            except SegtrtError as error:
                responses[index] = _error(str(error))
        for prediction in predict_images(self.backend, images, batch_size=self.batch_size):
            instances = prediction.instances
            outputs = {
                "num_detections": np.array([[len(instances["labels"])]], np.int32),
                "boxes": instances["boxes"].astype(np.float32)[None],
                "scores": instances["scores"].astype(np.float32)[None],
                "labels": instances["labels"].astype(np.int32)[None],
                "masks": instances["masks"].astype(bool)[None],
            }
            responses[prediction.key] = pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor(name, value) for name, value in outputs.items()])
        return responses

    def finalize(self):
        close = getattr(self.backend, "close", None)
        if close is not None:
            close()


def _error(message: str):
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message))
