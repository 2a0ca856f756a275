"""Serving segtrt models from a Triton Inference Server: many cameras, one GPU server.

repository: `segtrt triton-repo` writes a model repository (the engine as `tensorrt_plan`, the portable
    ONNX for the `onnxruntime` backend, and a Python-backend model that runs segtrt's own runtime).
triton_model: that Python-backend model (copied into the repository as model.py; it runs inside Triton).
client: a KServe v2 HTTP client over urllib (binary tensors), images in, detections out.
local: a tritonserver on 127.0.0.1 from the nvidia-pytriton wheel in its own venv (tests, benchmark).

No torch here, and nothing needs Triton installed except local and triton_model at run time.
"""
