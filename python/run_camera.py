#!/usr/bin/env python3
"""Live segmentation of cameras, streams, video files and image folders: the same as `segtrt run`.

    python python/run_camera.py --model model.onnx --source 0 --source rtsp://cam/stream --out runs/cam

Needs no PyTorch with an .onnx model (see README.md, "segtrt run").
"""

import sys

from segtrt.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
