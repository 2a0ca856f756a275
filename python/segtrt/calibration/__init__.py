"""`segtrt calibrate`: the precision variants of an exported ONNX file, each an ONNX file itself.

    fp16        strongly typed FP16 with FP32 islands (fp16.py)
    int8        TensorRT's explicit Q/DQ: symmetric INT8, per-channel weights, no bias quantization (int8.py)
    int8-cpu    u8 activations / s8 weights, the Q/DQ ONNX Runtime fuses into QLinear kernels (int8_cpu.py)
    int8-mixed  int8 with the most sensitive layers left unquantized until a mask-AP budget holds (mixed.py)

The calibration images (images.py) are pre-processed from the ONNX metadata; activation ranges come from ONNX
Runtime's calibrators run in a session that serves our plugin nodes (ranges.py); a TensorRT 10 calibration cache
can be written from the same ranges (trt_cache.py). Every variant keeps the source's ModelInfo with `precision`
and `calibration` set, and is written atomically (cli.py). No torch here.
"""
