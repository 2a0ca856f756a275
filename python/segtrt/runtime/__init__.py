"""Everything a deployed model needs, and no torch: a Jetson deploys without PyTorch.

- model_info: the output contract and the metadata an exported model carries (ModelInfo)
- preprocess / postprocess: the one letterbox every stage shares; mask pasting at the original size
- backends: one interface (ModelInfo in, contract outputs out as NumPy) for ONNX Runtime, TensorRT and PyTorch
- inference: the one loop that runs any backend over images (batching, pre/post-processing, progress)
- sources, predict, draw: images from files, `segtrt predict`, annotated pictures
- camera: `segtrt run` (python/run_camera.py), the pipelined live runtime

tests/test_runtime_torch_free.py imports every module here with torch made unimportable.
"""
