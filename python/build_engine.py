#!/usr/bin/env python3
"""Build a TensorRT engine from an exported segtrt ONNX file: the same as `segtrt build` (see README.md).

    python python/build_engine.py --onnx model.trt.onnx --check          # no TensorRT needed
    python python/build_engine.py --onnx model.trt.onnx --out model.engine --timing-cache timing.cache
"""

import sys

from segtrt.cli import main

if __name__ == "__main__":
    sys.exit(main(["build", *sys.argv[1:]]))
