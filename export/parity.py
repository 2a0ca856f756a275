#!/usr/bin/env python3
"""Parity: PyTorch vs ONNX Runtime (portable flavour) vs ONNX Runtime (trt flavour, plugin nodes on the CPU
twins): the same as `segtrt parity` (see export/README.md).

    python export/parity.py --checkpoint python/segtrt/weights/maskrcnn_edge.pt --data data/val
    python export/parity.py --checkpoint python/segtrt/weights/solov2_edge.pt --images photos/
    segtrt synth --out data/val_fullsize --num-images 3 --seed 1000 --size 800 1344
    python export/parity.py --model solov2 --full-size --data data/val_fullsize --images-limit 2
"""

import sys

from segtrt.cli import main

if __name__ == "__main__":
    sys.exit(main(["parity", *sys.argv[1:]]))
