#!/usr/bin/env python3
"""Export a segtrt checkpoint to ONNX: the same as `segtrt export` (see export/README.md)."""

import sys

from segtrt.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
