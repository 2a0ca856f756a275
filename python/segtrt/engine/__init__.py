"""TensorRT engines: checking an ONNX file for TensorRT's parser, planning and building the engine, its
JSON sidecar, and the TensorRT backend.

Only build.py, backend.py and machine.py touch TensorRT or CUDA, and only inside their functions: every
module here imports on a machine without them (tests/test_engine_torch_free.py), so `segtrt build --check`
and the sidecar checks run anywhere.
"""
