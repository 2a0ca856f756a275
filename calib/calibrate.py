#!/usr/bin/env python3
"""FP16 and INT8 variants of an exported ONNX file: the same as `segtrt calibrate` (see README "Calibration")."""

import sys

from segtrt.cli import main

if __name__ == "__main__":
    sys.exit(main(["calibrate", *sys.argv[1:]]))
